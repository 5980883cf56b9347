//! The HTTP surface: webhook intake, health, readiness, metrics and artifact links,
//! behind body limits, a timeout and request tracing.

mod github;
mod ops;
mod slack;

use crate::pipeline::Pipeline;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub pipeline: Arc<Pipeline>,
    pub github_secrets: Arc<Vec<SecretString>>,
    pub github_bot_login: Option<String>,
    pub github_policy: Arc<crate::config::GithubPolicy>,
    pub slack_secrets: Arc<Vec<SecretString>>,
}

/// The service's router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/github/webhook", post(github::webhook))
        .route("/slack/commands", post(slack::commands))
        .route("/slack/events", post(slack::events))
        .route("/slack/interactions", post(slack::interactions))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/artifacts/{uid}", get(ops::artifact))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(8),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
