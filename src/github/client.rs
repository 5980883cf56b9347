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

/// A comment as GitHub lists it (conversation or review comments).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedComment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    /// Nullable in GitHub's schema (a deleted account).
    #[serde(default)]
    pub user: Option<ListedUser>,
    /// For a review comment: the comment of its thread it answers.
    #[serde(default)]
    pub in_reply_to_id: Option<u64>,
}

/// A comment's author as GitHub lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedUser {
    pub login: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A successful answer: its value (`None` for a 304) and its headers.
struct Answer<T> {
    value: Option<T>,
    headers: header::HeaderMap,
}

/// Where a comment goes or is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentPlace {
    /// The conversation of an issue or pull request.
    Conversation,
    /// A review thread of a pull request's diff, answered through its first comment.
    ReviewThread { root: u64 },
}

/// What a reaction goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reacted {
    IssueComment(u64),
    ReviewComment(u64),
    /// The issue or pull request itself (by number).
    Issue(u64),
}

/// A repository file as the contents API gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFileFetch {
    /// Unchanged since the `ETag` given.
    NotModified,
    /// Not there (or not visible to the App).
    Missing,
    Found {
        /// The blob's sha.
        sha: String,
        text: String,
        etag: Option<String>,
    },
}

/// The page number of the `Link` header's `rel` link (`next`, `last`). Only the number
/// is used: pages are asked for under the configured API base, never at the link's URL.
fn link_page(headers: &header::HeaderMap, rel: &str) -> Option<u32> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let wanted = params
            .split(';')
            .any(|p| p.trim() == format!("rel=\"{rel}\""));
        if !wanted {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("page="))
            .and_then(|n| n.parse().ok())
    })
}

#[derive(Deserialize)]
struct PermissionBody {
    #[serde(default)]
    permission: String,
    #[serde(default)]
    role_name: Option<String>,
}

/// An issue or a pull request as GitHub reads it now (`GET …/issues/{n}` or
/// `GET …/pulls/{n}`): the fields a prompt uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadThread {
    #[serde(default)]
    pub title: String,
    /// Nullable in GitHub's schema (no description).
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub labels: Vec<ReadLabel>,
    /// A pull request's branches; `None` for an issue.
    #[serde(default)]
    pub head: Option<RefBody>,
    #[serde(default)]
    pub base: Option<RefBody>,
}

/// A label as GitHub lists it on an issue.
#[derive(Debug, Clone, Deserialize)]
pub struct ReadLabel {
    #[serde(default)]
    pub name: String,
}

/// A branch a pull request names.
#[derive(Debug, Clone, Deserialize)]
pub struct RefBody {
    #[serde(rename = "ref")]
    pub name: String,
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

    /// Adds a reaction (idempotent on GitHub).
    pub async fn add_reaction(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        on: Reacted,
        content: &str,
    ) -> Result<(), GithubError> {
        let path = match on {
            Reacted::IssueComment(id) => format!("/repos/{repo}/issues/comments/{id}/reactions"),
            Reacted::ReviewComment(id) => format!("/repos/{repo}/pulls/comments/{id}/reactions"),
            Reacted::Issue(number) => format!("/repos/{repo}/issues/{number}/reactions"),
        };
        let body = serde_json::json!({ "content": content });
        self.send::<serde_json::Value>(Method::POST, &path, installation, Some(&body))
            .await?;
        Ok(())
    }

    /// Creates a comment in the conversation of issue or pull request `number`, or as a
    /// reply in one of its review threads. Sent once; never retried here.
    pub async fn create_comment(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        place: CommentPlace,
        body: &str,
    ) -> Result<CommentRef, GithubError> {
        let path = match place {
            CommentPlace::Conversation => format!("/repos/{repo}/issues/{number}/comments"),
            CommentPlace::ReviewThread { root } => {
                format!("/repos/{repo}/pulls/{number}/comments/{root}/replies")
            }
        };
        self.send(
            Method::POST,
            &path,
            installation,
            Some(&serde_json::json!({ "body": body })),
        )
        .await
    }

    /// Replaces the body of a comment (of the conversation, or a review comment).
    pub async fn update_comment(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        place: CommentPlace,
        comment_id: u64,
        body: &str,
    ) -> Result<(), GithubError> {
        let kind = match place {
            CommentPlace::Conversation => "issues",
            CommentPlace::ReviewThread { .. } => "pulls",
        };
        let path = format!("/repos/{repo}/{kind}/comments/{comment_id}");
        self.send::<serde_json::Value>(
            Method::PATCH,
            &path,
            installation,
            Some(&serde_json::json!({ "body": body })),
        )
        .await?;
        Ok(())
    }

    /// Finds a comment whose body contains `marker`, in the conversation or among the
    /// pull request's review comments (both listings page forward from `since`).
    pub async fn find_comment_with_marker(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        place: CommentPlace,
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
        let kind = match place {
            CommentPlace::Conversation => "issues",
            CommentPlace::ReviewThread { .. } => "pulls",
        };
        for page in 1..=50 {
            let path =
                format!("/repos/{repo}/{kind}/{number}/comments?per_page=100&page={page}{since}");
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

    /// The last `want` comments of an issue's or pull request's conversation, oldest
    /// first: the last page (found from the `Link` header) and the one before it when
    /// the last is short.
    pub async fn latest_comments(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        want: usize,
    ) -> Result<Vec<ListedComment>, GithubError> {
        let page_path =
            |page: u32| format!("/repos/{repo}/issues/{number}/comments?per_page=100&page={page}");
        let first: Answer<Vec<ListedComment>> =
            self.send_answer(&page_path(1), installation, None).await?;
        let last = link_page(&first.headers, "last").unwrap_or(1);
        let mut comments = first.value.unwrap_or_default();
        if last > 1 {
            let tail: Vec<ListedComment> = self
                .send(Method::GET, &page_path(last), installation, None::<&()>)
                .await?;
            if tail.len() < want && last > 2 {
                let before: Vec<ListedComment> = self
                    .send(Method::GET, &page_path(last - 1), installation, None::<&()>)
                    .await?;
                comments = before;
            } else if tail.len() >= want {
                comments.clear();
            }
            comments.extend(tail);
        }
        let skip = comments.len().saturating_sub(want);
        Ok(comments.split_off(skip))
    }

    /// The review comments of a pull request that belong to the thread started by
    /// `root`, oldest first (following `next` pages, at most ten).
    pub async fn review_thread(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        root: u64,
    ) -> Result<Vec<ListedComment>, GithubError> {
        let mut thread = Vec::new();
        let mut page = 1;
        for _ in 0..10 {
            let path = format!("/repos/{repo}/pulls/{number}/comments?per_page=100&page={page}");
            let answer: Answer<Vec<ListedComment>> =
                self.send_answer(&path, installation, None).await?;
            thread.extend(
                answer
                    .value
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.id == root || c.in_reply_to_id == Some(root)),
            );
            match link_page(&answer.headers, "next") {
                Some(next) if next > page => page = next,
                _ => break,
            }
        }
        Ok(thread)
    }

    /// The names of a pull request's first 100 changed files, and whether more changed.
    pub async fn pull_files(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
    ) -> Result<(Vec<String>, bool), GithubError> {
        #[derive(Deserialize)]
        struct File {
            filename: String,
        }
        let path = format!("/repos/{repo}/pulls/{number}/files?per_page=100&page=1");
        let answer: Answer<Vec<File>> = self.send_answer(&path, installation, None).await?;
        let more = link_page(&answer.headers, "next").is_some();
        let names = answer
            .value
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.filename)
            .collect();
        Ok((names, more))
    }

    /// A file of the repository's default branch, read with the contents API;
    /// conditional on `etag` (the last answer's), so an unchanged file costs no rate
    /// limit.
    pub async fn repo_file(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        path: &str,
        etag: Option<&str>,
    ) -> Result<RepoFileFetch, GithubError> {
        #[derive(Deserialize)]
        struct Contents {
            sha: String,
            #[serde(default)]
            content: String,
            #[serde(default)]
            encoding: String,
        }
        let api_path = format!("/repos/{repo}/contents/{path}");
        let answer: Answer<Contents> = match self.send_answer(&api_path, installation, etag).await {
            Ok(answer) => answer,
            Err(GithubError::Status { status: 404, .. }) => return Ok(RepoFileFetch::Missing),
            Err(error) => return Err(error),
        };
        let Some(contents) = answer.value else {
            return Ok(RepoFileFetch::NotModified);
        };
        if contents.encoding != "base64" {
            return Err(GithubError::Decode(format!(
                "{path} came as {:?}, not base64 (larger than 1 MB?)",
                contents.encoding
            )));
        }
        use base64::Engine;
        let cleaned: String = contents
            .content
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cleaned)
            .map_err(|e| GithubError::Decode(e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| GithubError::Decode(format!("{path} is not UTF-8 text")))?;
        let etag = answer
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(RepoFileFetch::Found {
            sha: contents.sha,
            text,
            etag,
        })
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

    /// The issue or pull request `number` as it reads now; a pull request is read from
    /// its own endpoint, which also names its branches.
    pub async fn thread(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        number: u64,
        is_pull_request: bool,
    ) -> Result<ReadThread, GithubError> {
        let kind = if is_pull_request { "pulls" } else { "issues" };
        let path = format!("/repos/{repo}/{kind}/{number}");
        self.send(Method::GET, &path, installation, None::<&()>)
            .await
    }

    /// The App's installation on `repo` (`GET /repos/{o}/{r}/installation`, with the
    /// App's JWT); `None` with a token, which needs none.
    pub async fn installation_of(&self, repo: &RepoFullName) -> Result<Option<u64>, GithubError> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let Auth::App(app) = &*self.auth else {
            return Ok(None);
        };
        let jwt = app.jwt().map_err(|e| GithubError::Auth(e.to_string()))?;
        let path = format!("/repos/{repo}/installation");
        let found: Installation = self
            .send_with(Method::GET, &path, &jwt, None::<&()>)
            .await?;
        Ok(Some(found.id))
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
        let answer = self.send_full(method, path, bearer, body, None).await?;
        answer
            .value
            .ok_or_else(|| GithubError::Decode("304 without a condition".into()))
    }

    /// A call through the breaker, with the answer's headers; `if_none_match` makes it
    /// conditional (a 304 then has no value).
    async fn send_full<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
        if_none_match: Option<&str>,
    ) -> Result<Answer<T>, GithubError> {
        if let Err(retry_after) = self.breaker.admit() {
            return Err(GithubError::Paused { retry_after });
        }
        let result = self
            .send_once(method, path, bearer, body, if_none_match)
            .await;
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

    /// [`Self::send`] with the answer's headers and an optional `If-None-Match`.
    async fn send_answer<T: DeserializeOwned>(
        &self,
        path: &str,
        installation: Option<u64>,
        if_none_match: Option<&str>,
    ) -> Result<Answer<T>, GithubError> {
        let token = self.token(installation).await?;
        self.send_full(
            Method::GET,
            path,
            token.expose_secret(),
            None::<&()>,
            if_none_match,
        )
        .await
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
        if_none_match: Option<&str>,
    ) -> Result<Answer<T>, GithubError> {
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
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = request.send().await.map_err(|e| {
            crate::telemetry::outbound("github", "error", started.elapsed());
            GithubError::from_reqwest(e)
        })?;
        let status = response.status();
        crate::telemetry::outbound("github", status.as_str(), started.elapsed());
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(GithubError::from_reqwest)?;
        if status == StatusCode::NOT_MODIFIED && if_none_match.is_some() {
            return Ok(Answer {
                value: None,
                headers,
            });
        }
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            let value =
                serde_json::from_slice(bytes).map_err(|e| GithubError::Decode(e.to_string()))?;
            return Ok(Answer {
                value: Some(value),
                headers,
            });
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
    fn link_headers_give_page_numbers() {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            header::LINK,
            "<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel=\"next\", \
             <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=7>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        assert_eq!(link_page(&headers, "next"), Some(2));
        assert_eq!(link_page(&headers, "last"), Some(7));
        assert_eq!(link_page(&headers, "prev"), None);
        assert_eq!(link_page(&header::HeaderMap::new(), "last"), None);
    }

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
