//! The HTTP surface: webhook intake, health, readiness, metrics and artifact links,
//! behind body limits, a timeout and request tracing.

mod github;
mod ops;
mod serve;
mod slack;

pub use serve::serve;

use crate::pipeline::Pipeline;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

/// Counts a platform request as in flight until it is answered (the pipeline's workers
/// step aside while many are).
async fn count_in_flight(
    axum::extract::State(state): axum::extract::State<Arc<HttpState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let _in_flight = state.pipeline.intake.enter();
    next.run(request).await
}

/// Records each answer's time by route (the route's pattern, so ids never become
/// labels), method and status.
async fn time_answer(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    crate::telemetry::http_answer(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
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
    Router::new()
        .route("/metrics", get(ops::metrics))
        .layer(axum::middleware::from_fn(time_answer))
}

/// The service's router.
pub fn router(state: HttpState, metrics: MetricsRoute) -> Router {
    // Shared, not copied: every request takes the state (twice, with its count).
    let state = Arc::new(state);
    let intake = Router::new()
        .route("/github/webhook", post(github::webhook))
        .route("/slack/commands", post(slack::commands))
        .route("/slack/events", post(slack::events))
        .route("/slack/interactions", post(slack::interactions))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_in_flight,
        ));
    let mut main = Router::new()
        .merge(intake)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    if metrics == MetricsRoute::OnMain {
        main = main.route("/metrics", get(ops::metrics));
    }
    main.route("/artifacts/{uid}", get(ops::artifact))
        .layer(axum::middleware::from_fn(time_answer))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(state.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(8),
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
