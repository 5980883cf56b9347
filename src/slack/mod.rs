//! Everything Slack: request intake, the Web API client, Block Kit rendering, the app
//! manifest, and the surface the pipeline talks to.

mod client;
pub mod intake;
pub mod manifest;
pub mod policy;
pub mod render;
mod surface;

pub use client::{SlackClient, SlackError, ThreadMessage};
pub use surface::{SlackSurface, SlackSurfaceSettings};
