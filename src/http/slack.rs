//! `POST /slack/commands`, `/slack/events` and `/slack/interactions`: verify, decide,
//! store, answer well within Slack's 3 seconds. The only I/O is one inbox insert.

use super::HttpState;
use crate::slack::intake::{
    SlackIntake, form, parse_event, parse_interaction, parse_slash, verify,
};
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

/// Verifies the request; `Some(refusal)` when it must be refused.
fn refuse(state: &HttpState, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let result = verify(
        &state.slack_secrets,
        header(headers, "x-slack-request-timestamp"),
        header(headers, "x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    );
    result.err().map(|error| {
        crate::telemetry::webhook("slack", "unauthorized");
        tracing::info!(%error, "refused a Slack request");
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response()
    })
}

/// Stores a command; `Ok(Some(true))` when new, `Ok(Some(false))` for a duplicate.
async fn store(state: &HttpState, intake: SlackIntake) -> Result<Option<bool>, Response> {
    let SlackIntake::Command {
        dedupe_key,
        command,
    } = intake
    else {
        return Ok(None);
    };
    Ok(Some(
        state
            .accept("slack", &dedupe_key, &command)
            .await?
            .is_some(),
    ))
}

fn bad_payload(error: impl std::fmt::Display) -> Response {
    crate::telemetry::webhook("slack", "bad_payload");
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error.to_string() })),
    )
        .into_response()
}

/// The `/oz` slash command.
pub async fn commands(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Slack's SSL check is unsigned: answer it and read nothing else from the request.
    if form(&body)
        .iter()
        .any(|(k, v)| k == "ssl_check" && v == "1")
    {
        return StatusCode::OK.into_response();
    }
    if let Some(refusal) = refuse(&state, &headers, &body) {
        return refusal;
    }
    let intake = match parse_slash(&body) {
        Ok(intake) => intake,
        Err(error) => return bad_payload(error),
    };
    let text = match &intake {
        SlackIntake::Command { command, .. } => command
            .typed_line()
            .map(|line| line.args.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    match store(&state, intake).await {
        Ok(_) => {
            let ack = if text.trim().is_empty() || text.split_whitespace().count() == 1 {
                "On it.".to_owned()
            } else {
                format!(
                    "On it: starting an Oz agent for “{}”. Updates will follow in this channel.",
                    crate::slack::render::escape(&crate::text::truncate(&text, 200))
                )
            };
            Json(json!({ "response_type": "ephemeral", "text": ack })).into_response()
        }
        Err(response) => response,
    }
}

/// Events API callbacks.
pub async fn events(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse(&state, &headers, &body) {
        return refusal;
    }
    match parse_event(&body) {
        Ok(SlackIntake::Challenge(challenge)) => {
            Json(json!({ "challenge": challenge })).into_response()
        }
        Ok(SlackIntake::Ignored(reason)) => {
            crate::telemetry::webhook("slack", "ignored");
            (StatusCode::OK, Json(json!({ "ignored": reason }))).into_response()
        }
        Ok(intake) => match store(&state, intake).await {
            Ok(new) => (
                StatusCode::OK,
                Json(json!({ "duplicate": new == Some(false) })),
            )
                .into_response(),
            Err(response) => response,
        },
        Err(error) => bad_payload(error),
    }
}

/// Button presses.
pub async fn interactions(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = refuse(&state, &headers, &body) {
        return refusal;
    }
    match parse_interaction(&body) {
        Ok(intake) => match store(&state, intake).await {
            Ok(_) => StatusCode::OK.into_response(),
            Err(response) => response,
        },
        Err(error) => bad_payload(error),
    }
}
