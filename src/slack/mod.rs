//! Everything Slack: the Web API client, Block Kit rendering, the app manifest, and an
//! in-process fake Slack for the demo and the tests.

mod client;
pub mod fake;
pub mod manifest;
pub mod render;

pub use client::{SlackClient, SlackError, ThreadMessage};
