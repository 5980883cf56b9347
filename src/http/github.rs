//! `POST /github/webhook`: verify, decide, store, answer. Nothing slow happens before
//! the answer: the only I/O is one inbox insert.

use super::HttpState;
use crate::github::intake::{GithubIntake, IntakeRules, parse_event};
use crate::intake::signature::verify_hex_hmac;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Handles one GitHub delivery.
pub async fn webhook(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = header(&headers, "x-hub-signature-256");
    if let Err(error) = verify_hex_hmac(&state.github_secrets, signature, "sha256=", &[&body]) {
        crate::telemetry::webhook("github", "unauthorized");
        tracing::info!(%error, "refused a GitHub delivery");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response();
    }
    let event = header(&headers, "x-github-event").unwrap_or_default();
    let delivery = header(&headers, "x-github-delivery")
        .unwrap_or_default()
        .to_owned();
    let rules = IntakeRules {
        trigger: &state.pipeline.settings.trigger,
        policy: &state.github_policy,
        bot_login: state.github_bot_login.as_deref(),
        repos: &state.github_repos,
        delivery: &delivery,
    };
    // A hook set up with the form content type delivers `payload=<JSON>`; the signature
    // covers the form as sent (checked above), the JSON is its `payload` field.
    let form = header(&headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let json = if form {
        match url::form_urlencoded::parse(&body).find(|(key, _)| key == "payload") {
            Some((_, payload)) => Bytes::from(payload.into_owned()),
            None => {
                crate::telemetry::webhook("github", "bad_payload");
                let body = Json(json!({ "error": "a form delivery without its payload field" }));
                return (StatusCode::BAD_REQUEST, body).into_response();
            }
        }
    } else {
        body
    };
    match parse_event(event, &json, &rules) {
        Ok(GithubIntake::Ping) => {
            crate::telemetry::webhook("github", "ping");
            (StatusCode::OK, Json(json!({ "ok": true }))).into_response()
        }
        Ok(GithubIntake::Ignored(reason)) => {
            crate::telemetry::webhook("github", "ignored");
            tracing::debug!(%delivery, event, reason, "ignored a GitHub delivery");
            (StatusCode::ACCEPTED, Json(json!({ "ignored": reason }))).into_response()
        }
        Ok(GithubIntake::Command {
            dedupe_key,
            command,
        }) => match state.accept("github", &dedupe_key, &command).await {
            Ok(Some(id)) => (StatusCode::ACCEPTED, Json(json!({ "accepted": id }))).into_response(),
            Ok(None) => (StatusCode::OK, Json(json!({ "duplicate": true }))).into_response(),
            // A 5xx marks the delivery failed, so it can be redelivered.
            Err(response) => response,
        },
        Err(error) => {
            crate::telemetry::webhook("github", "bad_payload");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": error.to_string() })),
            )
                .into_response()
        }
    }
}
