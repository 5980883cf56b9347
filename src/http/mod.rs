//! The HTTP surface: webhook intake, health, readiness, metrics and artifact links,
//! behind the edge every request passes ([`edge`]: body cap, deadlines, answer times,
//! tracing).

mod edge;
mod github;
mod ops;
mod serve;
mod slack;

pub use serve::serve;

use crate::pipeline::Pipeline;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use edge::{EdgeLayer, EdgeLimits};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Time a request may take in all, from the end of its headers to its answer.
const ANSWER_TIME: Duration = Duration::from_secs(8);

/// What the handlers share.
pub struct HttpState {
    pub pipeline: Arc<Pipeline>,
    pub github_secrets: Arc<Vec<SecretString>>,
    pub github_bot_login: Option<String>,
    pub github_policy: Arc<crate::config::GithubPolicy>,
    /// Repository settings (which labels may start runs where).
    pub github_repos: Arc<crate::config::GithubRepos>,
    pub slack_secrets: Arc<Vec<SecretString>>,
    /// Time a client has to send its request body.
    pub body_timeout: Duration,
}

impl HttpState {
    /// Stores a verified command before the request is answered: `Ok(Some(id))` when new,
    /// `Ok(None)` for a duplicate, `Err` with a 503 answer (the sender may retry) when
    /// the database is unavailable.
    async fn accept(
        &self,
        source: &'static str,
        dedupe_key: &str,
        command: &crate::domain::InboxCommand,
    ) -> Result<Option<crate::ids::CommandId>, axum::response::Response> {
        use axum::response::IntoResponse;
        match self.pipeline.accept(dedupe_key, command).await {
            Ok(Some(id)) => {
                crate::telemetry::webhook(source, "accepted");
                tracing::info!(source, command = %id, thread = %command.origin.thread_key(), "command accepted");
                Ok(Some(id))
            }
            Ok(None) => {
                crate::telemetry::webhook(source, "duplicate");
                Ok(None)
            }
            Err(error) => {
                crate::telemetry::webhook(source, "error");
                tracing::error!(source, %error, "could not store a command");
                let body = axum::Json(serde_json::json!({ "error": "storage unavailable" }));
                Err((axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response())
            }
        }
    }
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsRoute {
    /// Beside the webhooks, on the service's listener.
    OnMain,
    /// Only on a listener of its own ([`metrics_router`]).
    Apart,
}

/// `/metrics` alone, for a listener of its own.
pub fn metrics_router() -> Router {
    let limits = EdgeLimits {
        max_body_bytes: MAX_BODY_BYTES,
        body_time: ANSWER_TIME,
        answer_time: ANSWER_TIME,
    };
    Router::new()
        .route("/metrics", get(ops::metrics))
        .layer(EdgeLayer::new(limits, None))
}

/// The service's router.
pub fn router(state: HttpState, metrics: MetricsRoute) -> Router {
    // Shared, not copied: every request takes the state.
    let state = Arc::new(state);
    let limits = EdgeLimits {
        max_body_bytes: MAX_BODY_BYTES,
        body_time: state.body_timeout,
        answer_time: ANSWER_TIME,
    };
    let intake = Router::new()
        .route("/github/webhook", post(github::webhook))
        .route("/slack/commands", post(slack::commands))
        .route("/slack/events", post(slack::events))
        .route("/slack/interactions", post(slack::interactions))
        .layer(EdgeLayer::new(limits, Some(state.pipeline.intake.clone())));
    let mut ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/artifacts/{uid}", get(ops::artifact));
    if metrics == MetricsRoute::OnMain {
        ops = ops.route("/metrics", get(ops::metrics));
    }
    ops.layer(EdgeLayer::new(limits, None))
        .merge(intake)
        // The edge holds bodies to their cap; axum's own default would box them again.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
