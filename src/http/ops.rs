//! Operational endpoints: liveness, readiness, Prometheus metrics, artifact links.

use super::HttpState;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if state.pipeline.store.ping().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    match crate::telemetry::render_metrics() {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

/// `GET /artifacts/{uid}`: redirects to a fresh download URL of a screenshot or file of
/// one of ozbridge's runs (Oz's URLs expire, so status posts link here instead). Other
/// artifacts of the API key's account are not served.
pub async fn artifact(State(state): State<Arc<HttpState>>, Path(uid): Path<String>) -> Response {
    if uid.len() > 200
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return (StatusCode::BAD_REQUEST, "not an artifact id").into_response();
    }
    match state.pipeline.store.artifact_known(&uid).await {
        Ok(true) => {}
        Ok(false) => return (StatusCode::NOT_FOUND, "no such artifact").into_response(),
        Err(error) => {
            tracing::warn!(%error, "artifact check failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    }
    match state.pipeline.oz.get_artifact(&uid).await {
        Ok(artifact) => match artifact.download_url() {
            Some(url) => Redirect::temporary(url).into_response(),
            None => (StatusCode::NOT_FOUND, "this artifact has no download").into_response(),
        },
        Err(error) if error.status() == Some(404) => {
            (StatusCode::NOT_FOUND, "no such artifact").into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "artifact lookup failed");
            (StatusCode::BAD_GATEWAY, "Oz did not answer").into_response()
        }
    }
}
