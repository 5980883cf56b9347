//! Stand-ins for the platforms, kept apart from the service: a fake GitHub, a fake Slack
//! and the Oz simulator serve `ozbridge demo`, `ozbridge sim-oz`, the tests and the
//! benchmarks, with seeded faults (`chaos`). Built with the default-on `demo` feature; the
//! service's own modules never use them (`--no-default-features` builds without them).

pub mod chaos;
pub mod commands;
pub mod github;
pub mod oz;
pub mod payloads;
pub mod slack;
pub mod views;
