//! An in-process fake of the Slack Web API for the demo and the tests: channels with
//! membership, threads, reactions, ephemeral messages and `response_url` posts, with
//! Slack's `ok:false` error bodies, HTTP 429 with `Retry-After`, and token checks.
//! The requests Slack sends to ozbridge are built in [`super::payloads::slack`].

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

pub use super::payloads::slack::{BOT_USER, TEAM};

/// A message in the fake Slack.
#[derive(Debug, Clone)]
pub struct FakeMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub text: String,
    pub blocks: Value,
    pub metadata: Value,
    /// Every (text, blocks) it had, oldest first.
    pub revisions: Vec<String>,
}

impl FakeMessage {
    /// What the message shows now, as a person reads it.
    pub fn shown(&self) -> &str {
        self.revisions
            .last()
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Something the bot did, as a user would see it.
#[derive(Debug, Clone)]
pub enum SlackEvent {
    Posted(FakeMessage),
    Updated(FakeMessage),
    Reaction {
        channel: String,
        ts: String,
        name: String,
    },
    Ephemeral {
        channel: String,
        user: String,
        text: String,
    },
    Responded {
        text: String,
    },
}

#[derive(Default)]
struct State_ {
    channels: HashMap<String, (bool, bool)>, // (bot is a member, archived)
    messages: Vec<FakeMessage>,
    reactions: Vec<(String, String, String)>,
    ephemerals: Vec<(String, String, String)>,
    responses: Vec<String>,
    clock: u64,
    rate_limited: HashMap<String, (u32, u64)>,
    calls: HashMap<String, u64>,
    /// JSON posts that did not say their charset.
    missing_charset: u64,
    /// Files shared in the workspace: id → (type, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Where the fake is served, once it is.
    base: Option<String>,
}

/// The fake. Clones share state.
#[derive(Clone)]
pub struct FakeSlack {
    state: Arc<Mutex<State_>>,
    events: broadcast::Sender<SlackEvent>,
    token: String,
    /// Random faults, off until enabled.
    pub chaos: crate::testkit::chaos::Chaos,
}

fn lock(state: &Mutex<State_>) -> MutexGuard<'_, State_> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeSlack {
    /// A workspace where the bot accepts `token`.
    pub fn new(token: &str) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            state: Arc::new(Mutex::new(State_::default())),
            events,
            token: token.into(),
            chaos: crate::testkit::chaos::Chaos::default(),
        }
    }

    /// The router: Web API under `/api/`, response URLs under `/hooks/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/{method}", post(web_api).get(web_api_get))
            .route("/hooks/{*rest}", post(respond))
            .route("/files/{id}/{name}", get(file))
            .layer(axum::middleware::from_fn_with_state(
                self.chaos.clone(),
                crate::testkit::chaos::gate,
            ))
            .with_state(self.clone())
    }

    /// Serves the fake; returns `(api base ending in /, response URL prefix)`.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<(String, String)> {
        let base = format!("http://{}", listener.local_addr()?);
        lock(&self.state).base = Some(base.clone());
        let router = self.router();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "fake Slack stopped");
            }
        });
        Ok((format!("{base}/api/"), format!("{base}/hooks/")))
    }

    /// A feed of what the bot does.
    pub fn subscribe(&self) -> broadcast::Receiver<SlackEvent> {
        self.events.subscribe()
    }

    /// Adds a channel; `bot_member` false makes posts fail with `not_in_channel`.
    pub fn add_channel(&self, id: &str, bot_member: bool) {
        lock(&self.state)
            .channels
            .insert(id.into(), (bot_member, false));
    }

    /// Archives a channel (posts fail with `is_archived`).
    pub fn archive(&self, id: &str) {
        if let Some(channel) = lock(&self.state).channels.get_mut(id) {
            channel.1 = true;
        }
    }

    /// A person's message; returns its ts.
    pub fn add_user_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        user: &str,
        text: &str,
    ) -> String {
        let mut state = lock(&self.state);
        let ts = next_ts(&mut state);
        state.messages.push(FakeMessage {
            channel: channel.into(),
            ts: ts.clone(),
            thread_ts: thread_ts.map(str::to_owned),
            user: user.into(),
            text: text.into(),
            blocks: Value::Null,
            metadata: Value::Null,
            revisions: vec![text.into()],
        });
        ts
    }

    /// Answers the next `count` calls of `method` with 429 and `Retry-After`.
    pub fn rate_limit(&self, method: &str, count: u32, retry_after_secs: u64) {
        lock(&self.state)
            .rate_limited
            .insert(method.into(), (count, retry_after_secs));
    }

    /// Messages posted by the bot in a channel (roots and replies), oldest first.
    pub fn bot_messages(&self, channel: &str) -> Vec<FakeMessage> {
        lock(&self.state)
            .messages
            .iter()
            .filter(|m| m.channel == channel && m.user == BOT_USER)
            .cloned()
            .collect()
    }

    /// Replies in a thread, oldest first (the root excluded).
    pub fn thread(&self, channel: &str, ts: &str) -> Vec<FakeMessage> {
        lock(&self.state)
            .messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts) && m.ts != ts)
            .cloned()
            .collect()
    }

    /// Web API calls answered so far, all methods together.
    pub fn total_calls(&self) -> u64 {
        lock(&self.state).calls.values().sum()
    }

    /// Reactions on a message.
    pub fn reactions(&self, channel: &str, ts: &str) -> Vec<String> {
        lock(&self.state)
            .reactions
            .iter()
            .filter(|(c, t, _)| c == channel && t == ts)
            .map(|(_, _, n)| n.clone())
            .collect()
    }

    /// Ephemeral messages shown to a user.
    pub fn ephemerals(&self, user: &str) -> Vec<String> {
        lock(&self.state)
            .ephemerals
            .iter()
            .filter(|(_, u, _)| u == user)
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    /// Texts posted to response URLs.
    pub fn responses(&self) -> Vec<String> {
        lock(&self.state).responses.clone()
    }

    /// Shares a file; returns its `url_private_download` (served to the bot token only).
    pub fn add_file(&self, name: &str, mime_type: &str, bytes: Vec<u8>) -> String {
        let mut state = lock(&self.state);
        let id = format!("F{:08}", state.files.len() + 1);
        state
            .files
            .insert(id.clone(), (mime_type.to_owned(), bytes));
        let base = state.base.clone().unwrap_or_default();
        format!("{base}/files/{id}/{name}")
    }

    /// JSON posts (Web API and `response_url`) that did not say they are UTF-8.
    pub fn posts_without_charset(&self) -> u64 {
        lock(&self.state).missing_charset
    }

    /// Calls received per Web API method.
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.state).calls.get(method).copied().unwrap_or(0)
    }
}

/// Message timestamps as Slack makes them: wall-clock seconds with microseconds, unique.
fn next_ts(state: &mut State_) -> String {
    let now = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or_default();
    state.clock = now.max(state.clock + 1);
    format!("{}.{:06}", state.clock / 1_000_000, state.clock % 1_000_000)
}

fn slack_error(code: &str) -> Response {
    Json(json!({ "ok": false, "error": code })).into_response()
}

async fn web_api_get(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let body = serde_json::to_value(query).unwrap_or_default();
    dispatch(fake, method, headers, body).await
}

async fn web_api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !has_json_charset(&headers) {
        lock(&fake.state).missing_charset += 1;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    dispatch(fake, method, headers, body).await
}

/// Whether a POST says its JSON is UTF-8, as Slack asks (it answers a POST without the
/// charset with a `missing_charset` warning).
fn has_json_charset(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase().replace(' ', "") == "application/json;charset=utf-8"
        })
}

async fn dispatch(fake: FakeSlack, method: String, headers: HeaderMap, body: Value) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut state = lock(&fake.state);
    *state.calls.entry(method.clone()).or_default() += 1;
    if let Some((count, retry_after)) = state.rate_limited.get_mut(&method)
        && *count > 0
    {
        *count -= 1;
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "").into_response();
        if let Ok(value) = retry_after.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if token != Some(fake.token.as_str()) {
        return slack_error(if token.is_none() {
            "not_authed"
        } else {
            "invalid_auth"
        });
    }
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match method.as_str() {
        "auth.test" => {
            Json(json!({ "ok": true, "team": "Acme", "team_id": TEAM, "user_id": BOT_USER }))
                .into_response()
        }
        "chat.postMessage" => {
            let channel = text("channel");
            match state.channels.get(&channel) {
                None => return slack_error("channel_not_found"),
                Some((_, true)) => return slack_error("is_archived"),
                Some((false, _)) => return slack_error("not_in_channel"),
                Some((true, false)) => {}
            }
            if text("text").is_empty() && body.get("blocks").is_none() {
                return slack_error("no_text");
            }
            if body
                .get("blocks")
                .and_then(Value::as_array)
                .is_some_and(|b| b.len() > 50)
            {
                return slack_error("invalid_blocks");
            }
            let ts = next_ts(&mut state);
            let thread_ts = body
                .get("thread_ts")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let message = FakeMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                user: BOT_USER.into(),
                text: text("text"),
                blocks: body.get("blocks").cloned().unwrap_or(Value::Null),
                metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
                revisions: vec![render(&body)],
            };
            state.messages.push(message.clone());
            let _ = fake.events.send(SlackEvent::Posted(message));
            Json(json!({ "ok": true, "channel": channel, "ts": ts })).into_response()
        }
        "chat.update" => {
            let (channel, ts) = (text("channel"), text("ts"));
            let Some(message) = state
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return slack_error("message_not_found");
            };
            if message.user != BOT_USER {
                return slack_error("cant_update_message");
            }
            message.text = text("text");
            if let Some(blocks) = body.get("blocks") {
                message.blocks = blocks.clone();
            }
            message.revisions.push(render(&body));
            let _ = fake.events.send(SlackEvent::Updated(message.clone()));
            Json(json!({ "ok": true, "channel": channel, "ts": ts })).into_response()
        }
        "chat.postEphemeral" => {
            let (channel, user) = (text("channel"), text("user"));
            if !state.channels.contains_key(&channel) {
                return slack_error("channel_not_found");
            }
            state
                .ephemerals
                .push((channel.clone(), user.clone(), text("text")));
            let _ = fake.events.send(SlackEvent::Ephemeral {
                channel,
                user,
                text: text("text"),
            });
            Json(json!({ "ok": true, "message_ts": "1.0" })).into_response()
        }
        "reactions.add" => {
            let (channel, ts, name) = (text("channel"), text("timestamp"), text("name"));
            if !state
                .messages
                .iter()
                .any(|m| m.channel == channel && m.ts == ts)
            {
                return slack_error("message_not_found");
            }
            if state
                .reactions
                .iter()
                .any(|(c, t, n)| *c == channel && *t == ts && *n == name)
            {
                return slack_error("already_reacted");
            }
            state
                .reactions
                .push((channel.clone(), ts.clone(), name.clone()));
            let _ = fake.events.send(SlackEvent::Reaction { channel, ts, name });
            Json(json!({ "ok": true })).into_response()
        }
        "conversations.replies" => {
            let (channel, ts) = (text("channel"), text("ts"));
            let found: Vec<Value> = state
                .messages
                .iter()
                .filter(|m| {
                    m.channel == channel
                        && (m.ts == ts || m.thread_ts.as_deref() == Some(ts.as_str()))
                })
                .map(listed)
                .collect();
            if found.is_empty() {
                return slack_error("thread_not_found");
            }
            Json(page(found, &text("limit"), &text("cursor"))).into_response()
        }
        "conversations.history" => {
            let channel = text("channel");
            let oldest = text("oldest").parse::<f64>().unwrap_or(0.0);
            let mut found: Vec<Value> = state
                .messages
                .iter()
                .filter(|m| {
                    m.channel == channel
                        && m.thread_ts.is_none()
                        && m.ts.parse::<f64>().unwrap_or(0.0) >= oldest
                })
                .map(listed)
                .collect();
            found.reverse();
            Json(page(found, &text("limit"), &text("cursor"))).into_response()
        }
        _ => slack_error("unknown_method"),
    }
}

/// One page of a listing as Slack gives it: at most `limit` (100 when not given) from
/// `cursor` on, and the cursor of the next page in `response_metadata` while more remain.
fn page(all: Vec<Value>, limit: &str, cursor: &str) -> Value {
    let limit = limit.parse::<usize>().unwrap_or(100).clamp(1, 999);
    let start = cursor
        .strip_prefix("next:")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let end = (start + limit).min(all.len());
    let more = end < all.len();
    let messages = all
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let next = if more {
        format!("next:{end}")
    } else {
        String::new()
    };
    json!({ "ok": true, "messages": messages, "has_more": more,
            "response_metadata": { "next_cursor": next } })
}

fn listed(m: &FakeMessage) -> Value {
    let mut value = json!({ "type": "message", "user": m.user, "text": m.text, "ts": m.ts });
    if m.user == BOT_USER {
        value["bot_id"] = json!("BOZ");
    }
    if let Some(thread) = &m.thread_ts {
        value["thread_ts"] = json!(thread);
    }
    if !m.metadata.is_null() {
        value["metadata"] = m.metadata.clone();
    }
    value
}

/// A revision as a person reads it: the section texts of the blocks, else the text.
fn render(body: &Value) -> String {
    let sections: Vec<String> = body
        .get("blocks")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| {
                    b.pointer("/text/text")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| {
                            b.get("elements").and_then(Value::as_array).map(|els| {
                                els.iter()
                                    .filter_map(|e| {
                                        e.pointer("/text/text")
                                            .or_else(|| e.get("text"))
                                            .and_then(Value::as_str)
                                    })
                                    .map(|t| format!("[{t}]"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    if sections.is_empty() {
        body.get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        sections.join("\n")
    }
}

#[derive(Deserialize)]
struct ResponseBody {
    #[serde(default)]
    text: String,
}

/// `GET /files/{id}/{name}`: a shared file, to the bot token only (as `files:read`).
async fn file(
    State(fake): State<FakeSlack>,
    Path((id, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(fake.token.as_str()) {
        return (StatusCode::FORBIDDEN, "").into_response();
    }
    match lock(&fake.state).files.get(&id) {
        Some((mime, bytes)) => {
            ([(header::CONTENT_TYPE, mime.clone())], bytes.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

async fn respond(
    State(fake): State<FakeSlack>,
    headers: HeaderMap,
    Json(body): Json<ResponseBody>,
) -> Response {
    let mut state = lock(&fake.state);
    if !has_json_charset(&headers) {
        state.missing_charset += 1;
    }
    state.responses.push(body.text.clone());
    drop(state);
    let _ = fake.events.send(SlackEvent::Responded { text: body.text });
    (StatusCode::OK, "ok").into_response()
}
