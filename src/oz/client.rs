//! Typed client for the 12 operations of the Oz API: bearer auth, a timeout on every
//! call, RFC 7807 errors, and retries with backoff for idempotent calls only.

use super::types::*;
use crate::ids::{ConversationId, OzRunId};
use crate::retry::{Backoff, Breaker, parse_retry_after};
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A failed Oz call.
#[derive(Debug, thiserror::Error)]
pub enum OzError {
    /// The API answered with an error status (problem body parsed when present).
    #[error("Oz API answered {status}: {} ({})", problem.title, problem.error)]
    Api {
        status: u16,
        problem: Box<Problem>,
        retry_after: Option<Duration>,
    },
    /// No answer within the call's timeout.
    #[error("the Oz API did not answer in time")]
    Timeout,
    /// The connection failed after the request may have been sent.
    #[error("could not reach the Oz API: {0}")]
    Transport(String),
    /// No connection could be made: nothing was sent.
    #[error("could not connect to the Oz API: {0}")]
    Unreachable(String),
    /// Not sent: the API failed repeatedly and calls are paused for a while.
    #[error("the Oz API is failing; calls are paused for {} s", retry_after.as_secs())]
    Paused { retry_after: Duration },
    /// The answer was not what the spec says.
    #[error("unexpected answer from the Oz API: {0}")]
    Decode(String),
}

impl crate::retry::CallFailure for OzError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Api {
                status, problem, ..
            } => {
                problem.retryable.unwrap_or(false) || *status == 429 || (500..600).contains(status)
            }
            Self::Timeout | Self::Transport(_) | Self::Unreachable(_) | Self::Paused { .. } => true,
            Self::Decode(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            Self::Paused { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    fn in_doubt(&self) -> bool {
        match self {
            Self::Timeout | Self::Transport(_) => true,
            Self::Api { status, .. } => crate::retry::gateway_in_doubt(*status),
            Self::Unreachable(_) | Self::Paused { .. } | Self::Decode(_) => false,
        }
    }
}

impl OzError {
    /// True when a later identical request may succeed.
    pub fn is_retryable(&self) -> bool {
        crate::retry::CallFailure::is_retryable(self)
    }

    /// How long the server (or the breaker) asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        crate::retry::CallFailure::retry_after(self)
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem body of an API error.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_connect() {
            Self::Unreachable(error.without_url().to_string())
        } else if error.is_decode() {
            Self::Decode(error.without_url().to_string())
        } else {
            Self::Transport(error.without_url().to_string())
        }
    }
}

/// Filters and paging of `GET /agent/runs`; `None` fields are not sent.
#[derive(Debug, Clone, Default)]
pub struct ListRunsQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub states: Vec<RunState>,
    pub name: Option<String>,
    pub model_id: Option<String>,
    pub creator: Option<String>,
    pub source: Option<RunSourceType>,
    pub execution_location: Option<RunExecutionLocation>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub updated_after: Option<DateTime<Utc>>,
    pub environment_id: Option<String>,
    pub skill: Option<String>,
    pub skill_spec: Option<String>,
    pub schedule_id: Option<String>,
    pub ancestor_run_id: Option<String>,
    pub artifact_type: Option<ArtifactType>,
    pub q: Option<String>,
}

impl ListRunsQuery {
    /// The query string pairs, `state` repeated once per state.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let mut push = |key: &'static str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key, value));
            }
        };
        let time = |t: &Option<DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        };
        push("limit", self.limit.map(|l| l.to_string()));
        push("cursor", self.cursor.clone());
        push("sort_by", self.sort_by.clone());
        push("sort_order", self.sort_order.clone());
        push("name", self.name.clone());
        push("model_id", self.model_id.clone());
        push("creator", self.creator.clone());
        push("source", self.source.as_ref().map(|s| s.to_string()));
        push(
            "execution_location",
            self.execution_location.as_ref().map(|s| s.to_string()),
        );
        push("created_after", time(&self.created_after));
        push("created_before", time(&self.created_before));
        push("updated_after", time(&self.updated_after));
        push("environment_id", self.environment_id.clone());
        push("skill", self.skill.clone());
        push("skill_spec", self.skill_spec.clone());
        push("schedule_id", self.schedule_id.clone());
        push("ancestor_run_id", self.ancestor_run_id.clone());
        push(
            "artifact_type",
            self.artifact_type.as_ref().map(|s| s.to_string()),
        );
        push("q", self.q.clone());
        for state in &self.states {
            pairs.push(("state", state.to_string()));
        }
        pairs
    }
}

/// Options of `GET /agent`.
#[derive(Debug, Clone, Default)]
pub struct ListAgentsQuery {
    pub repo: Option<String>,
    pub refresh: Option<bool>,
    pub sort_by: Option<String>,
    pub include_malformed_skills: Option<bool>,
}

fn oz_breaker(clock: crate::clock::Clock) -> std::sync::Arc<Breaker> {
    std::sync::Arc::new(Breaker::new("oz", crate::retry::upstream_backoff(), clock))
}

/// The Oz API client. Cheap to clone.
#[derive(Clone)]
pub struct OzClient {
    http: reqwest::Client,
    base: String,
    api_key: SecretString,
    backoff: Backoff,
    breaker: std::sync::Arc<Breaker>,
    clock: crate::clock::Clock,
}

impl std::fmt::Debug for OzClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OzClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl OzClient {
    /// A client for `base_url` (without trailing slash) with a per-call timeout.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
        backoff: Backoff,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // The transcript endpoint answers with a redirect that callers want to see.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ozbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key,
            backoff,
            breaker: oz_breaker(crate::clock::Clock::system()),
            clock: crate::clock::Clock::system(),
        })
    }

    /// The same client, whose breaker and retry waits go by `clock`.
    pub fn with_clock(self, clock: crate::clock::Clock) -> Self {
        Self {
            breaker: oz_breaker(clock.clone()),
            clock,
            ..self
        }
    }

    /// The breaker that spaces out calls while the API fails.
    pub fn breaker(&self) -> &std::sync::Arc<Breaker> {
        &self.breaker
    }

    /// `POST /agent/runs`. Never retried: the API has no idempotency key.
    pub async fn create_run(&self, request: &RunAgentRequest) -> Result<RunAgentResponse, OzError> {
        self.call(Method::POST, "/agent/runs", &[], Some(request), false)
            .await
    }

    /// `POST /agent/run`, the older alias of [`Self::create_run`].
    pub async fn run_agent(&self, request: &RunAgentRequest) -> Result<RunAgentResponse, OzError> {
        self.call(Method::POST, "/agent/run", &[], Some(request), false)
            .await
    }

    /// `GET /agent/runs`, one page.
    pub async fn list_runs(&self, query: &ListRunsQuery) -> Result<ListRunsResponse, OzError> {
        self.call::<(), _>(Method::GET, "/agent/runs", &query.to_pairs(), None, true)
            .await
    }

    /// `GET /agent/runs/{runId}`.
    pub async fn get_run(&self, run_id: &OzRunId) -> Result<RunItem, OzError> {
        let path = format!("/agent/runs/{}", segment(run_id.as_str()));
        self.call::<(), _>(Method::GET, &path, &[], None, true)
            .await
    }

    /// `POST /agent/runs/{runId}/cancel`; returns the cancelled run's id.
    pub async fn cancel_run(&self, run_id: &OzRunId) -> Result<String, OzError> {
        let path = format!("/agent/runs/{}/cancel", segment(run_id.as_str()));
        self.call::<(), _>(Method::POST, &path, &[], None, false)
            .await
    }

    /// `GET /agent/runs/{runId}/conversation`.
    pub async fn get_run_conversation(
        &self,
        run_id: &OzRunId,
    ) -> Result<ConversationResponse, OzError> {
        let path = format!("/agent/runs/{}/conversation", segment(run_id.as_str()));
        self.call::<(), _>(Method::GET, &path, &[], None, true)
            .await
    }

    /// `GET /agent/conversations/{conversation_id}`.
    pub async fn get_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<ConversationResponse, OzError> {
        let path = format!("/agent/conversations/{}", segment(id.as_str()));
        self.call::<(), _>(Method::GET, &path, &[], None, true)
            .await
    }

    /// `GET /agent/runs/{runId}/transcript`: the download URL it redirects to (not followed).
    pub async fn get_transcript_url(&self, run_id: &OzRunId) -> Result<String, OzError> {
        let path = format!("/agent/runs/{}/transcript", segment(run_id.as_str()));
        let response = self
            .send_with_retries::<()>(Method::GET, &path, &[], None, true)
            .await?;
        if response.status().is_redirection() {
            return response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| OzError::Decode("redirect without a Location header".into()));
        }
        Err(OzError::Decode(format!(
            "expected a redirect, got {}",
            response.status()
        )))
    }

    /// `GET /agent/models`.
    pub async fn list_models(&self) -> Result<ListModelsResponse, OzError> {
        self.call::<(), _>(Method::GET, "/agent/models", &[], None, true)
            .await
    }

    /// `GET /agent`.
    pub async fn list_agents(
        &self,
        query: &ListAgentsQuery,
    ) -> Result<ListAgentsResponse, OzError> {
        let mut pairs = Vec::new();
        if let Some(repo) = &query.repo {
            pairs.push(("repo", repo.clone()));
        }
        if let Some(refresh) = query.refresh {
            pairs.push(("refresh", refresh.to_string()));
        }
        if let Some(sort_by) = &query.sort_by {
            pairs.push(("sort_by", sort_by.clone()));
        }
        if let Some(include) = query.include_malformed_skills {
            pairs.push(("include_malformed_skills", include.to_string()));
        }
        self.call::<(), _>(Method::GET, "/agent", &pairs, None, true)
            .await
    }

    /// `GET /agent/artifacts/{artifactUid}`.
    pub async fn get_artifact(&self, artifact_uid: &str) -> Result<ArtifactResponse, OzError> {
        let path = format!("/agent/artifacts/{}", segment(artifact_uid));
        self.call::<(), _>(Method::GET, &path, &[], None, true)
            .await
    }

    /// `GET /agent/sessions/{sessionUuid}/redirect`.
    pub async fn get_session_redirect(&self, session: &str) -> Result<SessionRedirect, OzError> {
        let path = format!("/agent/sessions/{}/redirect", segment(session));
        self.call::<(), _>(Method::GET, &path, &[], None, true)
            .await
    }

    async fn call<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<T, OzError> {
        let response = self
            .send_with_retries(method, path, query, body, idempotent)
            .await?;
        let bytes = response.bytes().await.map_err(OzError::from_reqwest)?;
        serde_json::from_slice(&bytes).map_err(|e| OzError::Decode(e.to_string()))
    }

    async fn send_with_retries<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
        idempotent: bool,
    ) -> Result<reqwest::Response, OzError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Err(retry_after) = self.breaker.admit() {
                return Err(OzError::Paused { retry_after });
            }
            let started = std::time::Instant::now();
            let result = self.send_once(method.clone(), path, query, body).await;
            let outcome = match &result {
                Ok(_) => "ok".to_owned(),
                Err(OzError::Api { status, .. }) => status.to_string(),
                Err(OzError::Timeout) => "timeout".to_owned(),
                Err(_) => "error".to_owned(),
            };
            crate::telemetry::outbound("oz", &outcome, started.elapsed());
            match &result {
                Ok(_) | Err(OzError::Decode(_)) => self.breaker.answered(),
                Err(OzError::Api {
                    status,
                    retry_after,
                    ..
                }) if *status == 429 => self.breaker.failed(*retry_after),
                Err(OzError::Api { status, .. }) if *status < 500 => self.breaker.answered(),
                Err(_) => self.breaker.failed(None),
            }
            match result {
                // A server that asks for a long pause is better served by the caller's
                // persisted schedule than by a sleeping task.
                Err(error)
                    if idempotent
                        && error.is_retryable()
                        && attempt < self.backoff.attempts
                        && error
                            .retry_after()
                            .is_none_or(|wait| wait <= self.backoff.max) =>
                {
                    let wait = self.backoff.delay(attempt, error.retry_after());
                    tracing::debug!(path, attempt, ?wait, %error, "retrying Oz call");
                    self.clock.sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<reqwest::Response, OzError> {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(self.api_key.expose_secret())
            .header(header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(OzError::from_reqwest)?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            return Ok(response);
        }
        let retry_after = parse_retry_after(response.headers());
        let bytes = response.bytes().await.unwrap_or_default();
        let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem {
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            error: if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limited".into()
            } else {
                "unknown".into()
            },
            ..Problem::default()
        });
        Err(OzError::Api {
            status: status.as_u16(),
            problem: Box::new(problem),
            retry_after,
        })
    }
}

/// Percent-encodes one path segment.
fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
