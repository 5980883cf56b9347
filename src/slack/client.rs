//! A small typed Slack Web API client over reqwest.
//!
//! Written here rather than with slack-morphism, whose client would do the calls (its
//! API base is configurable and its throttling is opt-in, so neither is the reason):
//! - creates are sent exactly once: a `chat.postMessage` whose answer is lost is looked
//!   up (`conversations.history`/`replies`) before it is ever sent again, and the
//!   `Retry-After` of a refused call goes back to the caller, which reschedules the
//!   work durably in the database rather than sleep in memory;
//! - the per-channel pace (one post a second) is taken from the shared clock, so the
//!   deterministic tests drive it;
//! - one HTTP/TLS stack in the binary: slack-morphism brings hyper's client and its own
//!   rustls connector beside reqwest, for seven methods;
//! - several signing secrets during a rotation are checked by the intake
//!   (`src/intake/signature.rs`), which slack-morphism's verifier takes one at a time.

use crate::retry::parse_retry_after;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slack's pace for `chat.postMessage` in one channel.
const POST_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a worker waits for a channel's turn while holding its claim.
const MAX_TURN_WAIT: Duration = Duration::from_secs(1);
/// Pages of 200 messages a lookup of a posted message reads at most (4,000 messages:
/// far more than a channel holds in the minute a lookup covers).
const MAX_LOOKUP_PAGES: usize = 20;

/// A JSON body as Slack asks for it: with its charset (without one, Slack answers with a
/// `missing_charset` warning and may read the text in another encoding).
trait JsonBody {
    fn with_json(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn with_json(self, body: &Value) -> Self {
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body.to_string())
    }
}

/// A failed Slack call.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack rate limit reached; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// `ok: false` with Slack's error code.
    #[error("Slack refused the call: {0}")]
    Api(String),
    #[error("Slack answered HTTP {0}")]
    Status(u16),
    #[error("Slack did not answer in time")]
    Timeout,
    /// The connection failed after the request may have been sent.
    #[error("could not reach Slack: {0}")]
    Transport(String),
    /// No connection could be made: nothing was sent.
    #[error("could not connect to Slack: {0}")]
    Unreachable(String),
    /// Not sent: Slack failed repeatedly (or limited the rate) and calls are paused.
    #[error("Slack is failing; calls are paused for {} s", retry_after.as_secs())]
    Paused { retry_after: Duration },
    #[error("unexpected answer from Slack: {0}")]
    Decode(String),
    /// A `response_url` outside the allowed prefix; nothing was sent.
    #[error("refused to post to a response URL outside the allowed prefix")]
    ForbiddenUrl,
}

impl crate::retry::CallFailure for SlackError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Timeout
            | Self::Transport(_)
            | Self::Unreachable(_)
            | Self::Paused { .. } => true,
            Self::Status(status) => *status >= 500,
            Self::Api(code) => matches!(
                code.as_str(),
                "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout"
                    | "ratelimited"
            ),
            Self::Decode(_) | Self::ForbiddenUrl => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Paused { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    fn in_doubt(&self) -> bool {
        match self {
            Self::Timeout | Self::Transport(_) => true,
            Self::Status(status) => crate::retry::gateway_in_doubt(*status),
            Self::Api(code) => code == "request_timeout",
            _ => false,
        }
    }
}

impl SlackError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Unreachable(error.without_url().to_string())
        } else {
            Self::Transport(error.without_url().to_string())
        }
    }
}

/// A message of a thread.
#[derive(Debug, Clone, Deserialize)]
pub struct ThreadMessage {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub text: String,
    pub ts: String,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// The Slack client. Cheap to clone.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    api: String,
    token: SecretString,
    response_prefix: String,
    /// When each channel's next turn to post comes.
    next_post: std::sync::Arc<Mutex<HashMap<String, crate::clock::Millis>>>,
    breaker: std::sync::Arc<crate::retry::Breaker>,
    clock: crate::clock::Clock,
}

fn breaker(clock: crate::clock::Clock) -> std::sync::Arc<crate::retry::Breaker> {
    std::sync::Arc::new(crate::retry::Breaker::new(
        "slack",
        crate::retry::upstream_backoff(),
        clock,
    ))
}

/// The metadata event type ozbridge stamps on its messages, to find them again.
pub const METADATA_EVENT: &str = "ozbridge_post";

impl SlackClient {
    /// A client for `api_url` (ending in `/`).
    pub fn new(
        api_url: &str,
        token: SecretString,
        response_prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("ozbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            api: api_url.to_owned(),
            token,
            response_prefix: response_prefix.to_owned(),
            next_post: Default::default(),
            breaker: breaker(crate::clock::Clock::system()),
            clock: crate::clock::Clock::system(),
        })
    }

    /// The same client, whose breaker and pacing go by `clock`.
    pub fn with_clock(self, clock: crate::clock::Clock) -> Self {
        Self {
            breaker: breaker(clock.clone()),
            clock,
            ..self
        }
    }

    /// The clock its pacing goes by (a near turn is waited for on it).
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.clock
    }

    /// The breaker that spaces out Web API calls while Slack fails.
    pub fn breaker(&self) -> &std::sync::Arc<crate::retry::Breaker> {
        &self.breaker
    }

    /// `chat.postMessage` (take the channel's turn first, [`Self::take_turn`]); returns
    /// the message `ts`.
    /// `key` is stamped in the message metadata so a lost answer can be looked up.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: Option<&Value>,
        key: &str,
    ) -> Result<String, SlackError> {
        let mut body = json!({
            "channel": channel,
            "text": text,
            "unfurl_links": false,
            "metadata": { "event_type": METADATA_EVENT, "event_payload": { "key": key } },
        });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.clone();
        }
        let answer = self.call("chat.postMessage", &body).await?;
        answer
            .get("ts")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Decode("no ts".into()))
    }

    /// `chat.update`.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(), SlackError> {
        let mut body = json!({ "channel": channel, "ts": ts, "text": text });
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.clone();
        }
        self.call("chat.update", &body).await.map(drop)
    }

    /// `chat.postEphemeral`: a message only `user` sees.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.postEphemeral",
            &json!({ "channel": channel, "user": user, "text": text }),
        )
        .await
        .map(drop)
    }

    /// `reactions.add`; a reaction already there counts as added.
    pub async fn add_reaction(
        &self,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> Result<(), SlackError> {
        match self
            .call(
                "reactions.add",
                &json!({ "channel": channel, "timestamp": ts, "name": name }),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(SlackError::Api(code)) if code == "already_reacted" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `conversations.replies`: up to `limit` messages of a thread, oldest first.
    pub async fn replies(
        &self,
        channel: &str,
        thread_ts: &str,
        limit: u32,
    ) -> Result<Vec<ThreadMessage>, SlackError> {
        let query = [
            ("channel", channel.to_owned()),
            ("ts", thread_ts.to_owned()),
            ("limit", limit.to_string()),
            ("include_all_metadata", "true".into()),
        ];
        let answer = self.get("conversations.replies", &query).await?;
        messages(&answer)
    }

    /// Finds a message ozbridge posted with `key`, in a thread or in the channel's recent
    /// history (since `oldest`), following the listing's pages: a busy channel or a long
    /// thread can hold more than one page before the message.
    pub async fn find_posted(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        key: &str,
        oldest: &str,
    ) -> Result<Option<String>, SlackError> {
        let (method, mut query) = match thread_ts {
            Some(ts) => ("conversations.replies", vec![("ts", ts.to_owned())]),
            None => ("conversations.history", vec![("oldest", oldest.to_owned())]),
        };
        query.extend([
            ("channel", channel.to_owned()),
            ("limit", "200".to_owned()),
            ("include_all_metadata", "true".to_owned()),
        ]);
        for _ in 0..MAX_LOOKUP_PAGES {
            let answer = self.get(method, &query).await?;
            let found = messages(&answer)?.into_iter().find(|m| {
                m.metadata
                    .as_ref()
                    .and_then(|md| md.pointer("/event_payload/key"))
                    .and_then(Value::as_str)
                    == Some(key)
            });
            if let Some(message) = found {
                return Ok(Some(message.ts));
            }
            let Some(cursor) = answer
                .pointer("/response_metadata/next_cursor")
                .and_then(Value::as_str)
                .filter(|cursor| !cursor.is_empty())
            else {
                return Ok(None);
            };
            query.retain(|(name, _)| *name != "cursor");
            query.push(("cursor", cursor.to_owned()));
        }
        Ok(None)
    }

    /// `auth.test`: the workspace and the bot's user id.
    pub async fn auth_test(&self) -> Result<(String, String), SlackError> {
        let answer = self.call("auth.test", &json!({})).await?;
        let field = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok((field("team"), field("user_id")))
    }

    /// Posts a private (ephemeral) answer to a `response_url`, only under the allowed prefix.
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), SlackError> {
        if !response_url.starts_with(&self.response_prefix) {
            return Err(SlackError::ForbiddenUrl);
        }
        let started = Instant::now();
        let response = self
            .http
            .post(response_url)
            .with_json(
                &json!({ "response_type": "ephemeral", "replace_original": false, "text": text }),
            )
            .send()
            .await
            .map_err(SlackError::from_reqwest)?;
        crate::telemetry::outbound("slack", response.status().as_str(), started.elapsed());
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::TOO_MANY_REQUESTS => Err(SlackError::RateLimited {
                retry_after: parse_retry_after(response.headers())
                    .unwrap_or(Duration::from_secs(30)),
            }),
            // An expired or used-up response_url (30 min, 5 uses): nothing more to do.
            status => Err(SlackError::Status(status.as_u16())),
        }
    }

    /// Takes the channel's next turn to post (Slack allows about one message a second in
    /// a channel): `Ok(wait)` when it comes within a second (the caller waits, then
    /// posts), `Err(wait)` when it is further off (nothing is reserved; the caller gives
    /// its work back for that long rather than hold a claim while it waits).
    pub fn take_turn(&self, channel: &str) -> Result<Duration, Duration> {
        let mut next = self.next_post.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let slot = next
            .get(channel)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let wait = self.clock.until(slot).unwrap_or_default();
        if wait > MAX_TURN_WAIT {
            return Err(wait);
        }
        next.insert(channel.to_owned(), slot + crate::clock::ms(POST_INTERVAL));
        Ok(wait)
    }

    /// Downloads a file shared in Slack with the bot token (`files:read`): only from
    /// Slack's file host, or the configured API's server (the fake Slack), so the token
    /// never goes anywhere else.
    pub async fn download_file(
        &self,
        url: &str,
        limit: u64,
    ) -> Result<Vec<u8>, crate::attachments::Skipped> {
        use crate::attachments::{Skipped, download, server_of};
        let allowed = url.starts_with("https://files.slack.com/")
            || server_of(&self.api).is_some_and(|server| {
                server != "https://slack.com" && url.starts_with(&format!("{server}/"))
            });
        if !allowed {
            return Err(Skipped::ForeignHost);
        }
        download(&self.http, url, self.token.expose_secret(), limit).await
    }

    async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self
            .http
            .post(format!("{}{method}", self.api))
            .with_json(body);
        self.finish(method, request).await
    }

    async fn get(&self, method: &str, query: &[(&str, String)]) -> Result<Value, SlackError> {
        let request = self.http.get(format!("{}{method}", self.api)).query(query);
        self.finish(method, request).await
    }

    async fn finish(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        if let Err(retry_after) = self.breaker.admit() {
            return Err(SlackError::Paused { retry_after });
        }
        let result = self.finish_once(method, request).await;
        match &result {
            Err(SlackError::RateLimited { retry_after }) => self.breaker.failed(Some(*retry_after)),
            Err(SlackError::Status(status)) if *status >= 500 => self.breaker.failed(None),
            Err(SlackError::Timeout | SlackError::Transport(_) | SlackError::Unreachable(_)) => {
                self.breaker.failed(None)
            }
            Err(error @ SlackError::Api(_)) if crate::retry::CallFailure::is_retryable(error) => {
                self.breaker.failed(None)
            }
            _ => self.breaker.answered(),
        }
        result
    }

    async fn finish_once(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let started = Instant::now();
        let response = request
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(SlackError::from_reqwest)?;
        let status = response.status();
        crate::telemetry::outbound("slack", status.as_str(), started.elapsed());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after =
                parse_retry_after(response.headers()).unwrap_or(Duration::from_secs(30));
            return Err(SlackError::RateLimited { retry_after });
        }
        if !status.is_success() {
            return Err(SlackError::Status(status.as_u16()));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|e| SlackError::Decode(e.without_url().to_string()))?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(answer)
        } else {
            let code = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown_error")
                .to_owned();
            tracing::debug!(method, code, "Slack refused a call");
            Err(SlackError::Api(code))
        }
    }
}

fn messages(answer: &Value) -> Result<Vec<ThreadMessage>, SlackError> {
    let list = answer
        .get("messages")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    serde_json::from_value(list).map_err(|e| SlackError::Decode(e.to_string()))
}
