//! A small typed GitHub REST client over reqwest.
//!
//! Written here rather than with octocrab (whose errors do carry the response headers
//! since 0.54, so rate limits are not the reason):
//! - creates are sent exactly once: a comment or reply whose answer is lost is looked up
//!   before it is sent again, where octocrab's retry layer would send a POST again;
//! - installation tokens are minted single-flight (`auth.rs`): concurrent workers wait
//!   for one token rather than each buying their own;
//! - GitHub Enterprise with App auth: every call, each page of a listing included, goes
//!   to the configured API base (`https://HOST/api/v3`) with the token of the
//!   repository's installation, minted through that same base; pages are asked for by
//!   number under that base, never by following a `Link` URL to another host or prefix;
//! - one HTTP/TLS stack in the binary (reqwest, shared with the Oz and Slack clients);
//! - several webhook secrets during a rotation are checked by the intake
//!   (`src/intake/signature.rs`), which octocrab does not cover.

use super::auth::{AppAuth, InstallationToken};
use crate::config::GithubAuthSettings;
use crate::ids::RepoFullName;
use crate::retry::parse_retry_after;
use reqwest::{Method, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// A failed GitHub call.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// Primary or secondary rate limit: wait before any further write.
    #[error("GitHub rate limit reached; retry in {} s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Any other error status.
    #[error("GitHub answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("GitHub did not answer in time")]
    Timeout,
    /// The connection failed after the request may have been sent.
    #[error("could not reach GitHub: {0}")]
    Transport(String),
    /// No connection could be made: nothing was sent.
    #[error("could not connect to GitHub: {0}")]
    Unreachable(String),
    /// Not sent: GitHub failed repeatedly (or limited the rate) and calls are paused.
    #[error("GitHub is failing; calls are paused for {} s", retry_after.as_secs())]
    Paused { retry_after: Duration },
    #[error("unexpected answer from GitHub: {0}")]
    Decode(String),
    #[error("GitHub authentication failed: {0}")]
    Auth(String),
}

impl crate::retry::CallFailure for GithubError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Timeout
            | Self::Transport(_)
            | Self::Unreachable(_)
            | Self::Paused { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Decode(_) | Self::Auth(_) => false,
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
            Self::Status { status, .. } => crate::retry::gateway_in_doubt(*status),
            _ => false,
        }
    }
}

impl GithubError {
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

/// A comment GitHub created.
#[derive(Debug, Clone, Deserialize)]
pub struct CommentRef {
    pub id: u64,
    #[serde(default)]
    pub html_url: String,
}

/// A user's permission on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    None,
}

impl Permission {
    /// Admin, maintain and write may start runs.
    pub fn can_write(self) -> bool {
        matches!(self, Self::Admin | Self::Maintain | Self::Write)
    }
    fn parse(value: &str) -> Self {
        match value {
            "admin" => Self::Admin,
            "maintain" => Self::Maintain,
            "write" => Self::Write,
            "triage" => Self::Triage,
            "read" => Self::Read,
            _ => Self::None,
        }
    }
}

enum Auth {
    Token(SecretString),
    App(AppAuth),
}

/// The GitHub client. Cheap to clone.
#[derive(Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api: String,
    auth: std::sync::Arc<Auth>,
    breaker: std::sync::Arc<crate::retry::Breaker>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ListedComment {
    id: u64,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct PermissionBody {
    #[serde(default)]
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

#[derive(Deserialize)]
struct PullBody {
    head: RefBody,
    base: RefBody,
}

#[derive(Deserialize)]
struct RefBody {
    #[serde(rename = "ref")]
    name: String,
}

fn breaker(clock: crate::clock::Clock) -> std::sync::Arc<crate::retry::Breaker> {
    std::sync::Arc::new(crate::retry::Breaker::new(
        "github",
        crate::retry::upstream_backoff(),
        clock,
    ))
}

impl GithubClient {
    /// A client for `api_url` with the configured authentication.
    pub fn new(
        api_url: &str,
        auth: &GithubAuthSettings,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let auth = match auth {
            GithubAuthSettings::Token(token) => Auth::Token(token.clone()),
            GithubAuthSettings::App {
                app_id,
                private_key_pem,
            } => Auth::App(AppAuth::new(*app_id, private_key_pem)?),
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("ozbridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            api: api_url.trim_end_matches('/').to_owned(),
            auth: std::sync::Arc::new(auth),
            breaker: breaker(crate::clock::Clock::system()),
        })
    }

    /// The same client, whose breaker goes by `clock`.
    pub fn with_clock(self, clock: crate::clock::Clock) -> Self {
        Self {
            breaker: breaker(clock),
            ..self
        }
    }

    /// Adds a reaction to an issue comment or a review comment (idempotent on GitHub).
    pub async fn add_reaction(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        comment_id: u64,
        review_comment: bool,
        content: &str,
    ) -> Result<(), GithubError> {
        let kind = if review_comment { "pulls" } else { "issues" };
        let path = format!("/repos/{repo}/{kind}/comments/{comment_id}/reactions");
        let body = serde_json::json!({ "content": content });
        self.send::<serde_json::Value>(Method::POST, &path, installation, Some(&body))
            .await?;
        Ok(())
    }

    /// Creates a comment on an issue or pull request. Sent once; never retried here.
    pub async fn create_comment(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        body: &str,
    ) -> Result<CommentRef, GithubError> {
        let path = format!("/repos/{repo}/issues/{number}/comments");
        self.send(
            Method::POST,
            &path,
            installation,
            Some(&serde_json::json!({ "body": body })),
        )
        .await
    }

    /// Replaces the body of a comment.
    pub async fn update_comment(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        comment_id: u64,
        body: &str,
    ) -> Result<(), GithubError> {
        let path = format!("/repos/{repo}/issues/comments/{comment_id}");
        self.send::<serde_json::Value>(
            Method::PATCH,
            &path,
            installation,
            Some(&serde_json::json!({ "body": body })),
        )
        .await?;
        Ok(())
    }

    /// Finds a comment of the thread whose body contains `marker` (the newest pages first
    /// are not available from this endpoint, so it pages forward from `since`).
    pub async fn find_comment_with_marker(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        marker: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<u64>, GithubError> {
        let since = since
            .map(|t| {
                format!(
                    "&since={}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .unwrap_or_default();
        for page in 1..=50 {
            let path =
                format!("/repos/{repo}/issues/{number}/comments?per_page=100&page={page}{since}");
            let comments: Vec<ListedComment> = self
                .send::<Vec<ListedComment>>(Method::GET, &path, installation, None::<&()>)
                .await?;
            if let Some(found) = comments.iter().find(|c| c.body.contains(marker)) {
                return Ok(Some(found.id));
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(None)
    }

    /// A user's permission on a repository.
    pub async fn permission(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        login: &str,
    ) -> Result<Permission, GithubError> {
        let path = format!("/repos/{repo}/collaborators/{login}/permission");
        match self
            .send::<PermissionBody>(Method::GET, &path, installation, None::<&()>)
            .await
        {
            Ok(body) => Ok(Permission::parse(
                body.role_name.as_deref().unwrap_or(&body.permission),
            )),
            // GitHub answers 404 for a user who is not a collaborator at all.
            Err(GithubError::Status { status: 404, .. }) => Ok(Permission::None),
            Err(error) => Err(error),
        }
    }

    /// Head and base branch names of a pull request.
    pub async fn pull_branches(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
    ) -> Result<(String, String), GithubError> {
        let path = format!("/repos/{repo}/pulls/{number}");
        let pull: PullBody = self
            .send(Method::GET, &path, installation, None::<&()>)
            .await?;
        Ok((pull.head.name, pull.base.name))
    }

    /// Checks the credentials: `GET /app` for an App, `GET /rate_limit` for a token.
    pub async fn check_credentials(&self) -> Result<String, GithubError> {
        match &*self.auth {
            Auth::App(app) => {
                let jwt = app.jwt().map_err(|e| GithubError::Auth(e.to_string()))?;
                let value: serde_json::Value = self
                    .send_with(Method::GET, "/app", &jwt, None::<&()>)
                    .await?;
                Ok(format!(
                    "GitHub App `{}`",
                    value.get("slug").and_then(|s| s.as_str()).unwrap_or("?")
                ))
            }
            Auth::Token(_) => {
                let value: serde_json::Value = self
                    .send(Method::GET, "/rate_limit", None, None::<&()>)
                    .await?;
                let remaining = value
                    .pointer("/resources/core/remaining")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(-1);
                Ok(format!(
                    "token accepted, {remaining} core requests left this hour"
                ))
            }
        }
    }

    async fn token(&self, installation: Option<u64>) -> Result<SecretString, GithubError> {
        match (&*self.auth, installation) {
            (Auth::Token(token), _) => Ok(token.clone()),
            (Auth::App(_), None) => Err(GithubError::Auth(
                "the webhook carried no installation id".into(),
            )),
            (Auth::App(app), Some(id)) => {
                if let Some(token) = app.cached(id) {
                    return Ok(token);
                }
                let _minting = app.minting.lock().await;
                if let Some(token) = app.cached(id) {
                    return Ok(token);
                }
                let jwt = app.jwt().map_err(|e| GithubError::Auth(e.to_string()))?;
                let path = format!("/app/installations/{id}/access_tokens");
                let minted: InstallationToken = self
                    .send_with(Method::POST, &path, &jwt, None::<&()>)
                    .await?;
                Ok(app.store(id, minted))
            }
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        installation: Option<u64>,
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> Result<T, GithubError> {
        let token = self.token(installation).await?;
        self.send_with(method, path, token.expose_secret(), body)
            .await
    }

    async fn send_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> Result<T, GithubError> {
        if let Err(retry_after) = self.breaker.admit() {
            return Err(GithubError::Paused { retry_after });
        }
        let result = self.send_once(method, path, bearer, body).await;
        match &result {
            Err(GithubError::RateLimited { retry_after }) => {
                self.breaker.failed(Some(*retry_after))
            }
            Err(GithubError::Status { status, .. }) if *status >= 500 => self.breaker.failed(None),
            Err(GithubError::Timeout | GithubError::Transport(_) | GithubError::Unreachable(_)) => {
                self.breaker.failed(None)
            }
            _ => self.breaker.answered(),
        }
        result
    }

    /// Downloads an image attached to a comment, with the installation's token: only
    /// from GitHub's attachment hosts (`github.com/user-attachments`,
    /// `*.githubusercontent.com`) or the `/user-attachments/` of the configured server
    /// (GitHub Enterprise), so the token never goes anywhere else.
    pub async fn download_attachment(
        &self,
        url: &str,
        installation: Option<u64>,
        limit: u64,
    ) -> Result<Vec<u8>, crate::attachments::Skipped> {
        use crate::attachments::{Skipped, download, server_of};
        let allowed = url.starts_with("https://github.com/user-attachments/")
            || url.starts_with("https://user-images.githubusercontent.com/")
            || url.starts_with("https://private-user-images.githubusercontent.com/")
            || server_of(&self.api)
                .is_some_and(|server| url.starts_with(&format!("{server}/user-attachments/")));
        if !allowed {
            return Err(Skipped::ForeignHost);
        }
        let token = self
            .token(installation)
            .await
            .map_err(|_| Skipped::Unreadable)?;
        download(&self.http, url, token.expose_secret(), limit).await
    }

    /// The breaker that spaces out calls while GitHub fails.
    pub fn breaker(&self) -> &std::sync::Arc<crate::retry::Breaker> {
        &self.breaker
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> Result<T, GithubError> {
        let started = std::time::Instant::now();
        let mut request = self
            .http
            .request(method, format!("{}{}", self.api, path))
            .bearer_auth(bearer)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            crate::telemetry::outbound("github", "error", started.elapsed());
            GithubError::from_reqwest(e)
        })?;
        let status = response.status();
        crate::telemetry::outbound("github", status.as_str(), started.elapsed());
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(GithubError::from_reqwest)?;
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(bytes).map_err(|e| GithubError::Decode(e.to_string()));
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.message)
            .unwrap_or_default();
        if let Some(retry_after) = rate_limit_wait(status, &headers, &message) {
            return Err(GithubError::RateLimited { retry_after });
        }
        Err(GithubError::Status {
            status: status.as_u16(),
            message,
        })
    }
}

/// How long to wait when a 403 or 429 is a rate limit: `retry-after`, else the reset
/// time when no requests remain, else one minute for a secondary limit.
fn rate_limit_wait(
    status: StatusCode,
    headers: &header::HeaderMap,
    message: &str,
) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(wait) = parse_retry_after(headers) {
        return Some(wait);
    }
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    if number("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = number("x-ratelimit-reset")
    {
        let wait = reset - chrono::Utc::now().timestamp();
        return Some(Duration::from_secs(
            u64::try_from(wait.max(1)).unwrap_or(60),
        ));
    }
    let lower = message.to_ascii_lowercase();
    (status == StatusCode::TOO_MANY_REQUESTS || lower.contains("rate limit"))
        .then_some(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_recognised_in_each_form() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &headers, "Resource not accessible"),
            None
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &headers,
                "You have exceeded a secondary rate limit"
            ),
            Some(Duration::from_secs(60))
        );
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &headers, ""),
            Some(Duration::from_secs(7))
        );
        let mut headers = header::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let reset = chrono::Utc::now().timestamp() + 30;
        headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let wait = rate_limit_wait(StatusCode::FORBIDDEN, &headers, "").unwrap();
        assert!((28..=31).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(rate_limit_wait(StatusCode::NOT_FOUND, &headers, ""), None);
    }
}
