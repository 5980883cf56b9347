//! ozbridge: start and follow Warp Oz cloud agents from GitHub (and Slack) threads.

pub mod admin;
pub mod app;
pub mod attachments;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod github;
pub mod http;
pub mod ids;
pub mod intake;
pub mod oz;
pub mod pipeline;
pub mod retry;
pub mod setup;
pub mod slack;
pub mod store;
pub mod surface;
pub mod telemetry;
#[cfg(any(test, feature = "demo"))]
pub mod testkit;
pub mod text;

/// Installs the process-wide rustls crypto provider (two are linked; one must be chosen
/// before any TLS client is built). Safe to call more than once.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
