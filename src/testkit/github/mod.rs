//! An in-process fake of the GitHub REST API for the demo and the tests: issues,
//! comments, reactions, permissions, pull requests and installation tokens in memory, with
//! GitHub's status codes, error bodies, size limit and secondary rate limits; and the
//! App manifest flow (`apps.rs`).

mod apps;

pub use apps::{AppKeys, Registration};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// Something the bot did on the fake GitHub, as a user would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GithubEvent {
    Reaction {
        comment_id: u64,
        content: String,
    },
    CommentCreated {
        id: u64,
        repo: String,
        number: u64,
        body: String,
    },
    CommentEdited {
        id: u64,
        body: String,
    },
}

/// A stored comment.
#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub repo: String,
    pub number: u64,
    pub author: String,
    pub body: String,
    /// Every body it had, oldest first.
    pub revisions: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// A review comment on the pull request's diff (`None`: a conversation comment).
    pub review: Option<ReviewThreadPlace>,
}

/// Where a review comment sits: the comment its thread starts with, when it answers one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewThreadPlace {
    pub in_reply_to: Option<u64>,
}

/// An issue's or pull request's title, description and labels.
#[derive(Debug, Clone, Default)]
struct FakeThread {
    title: String,
    body: Option<String>,
    labels: Vec<String>,
}

/// A file of a repository's default branch.
#[derive(Debug, Clone)]
struct FakeFile {
    text: String,
    sha: String,
}

#[derive(Default)]
struct FakeState {
    next_id: u64,
    comments: Vec<FakeComment>,
    reactions: Vec<(u64, String)>,
    permissions: HashMap<(String, String), String>,
    pulls: HashMap<(String, u64), (String, String)>,
    /// Issues and pull requests (their titles, descriptions and labels).
    threads: HashMap<(String, u64), FakeThread>,
    /// Content-creating calls (POST comment) refused with a secondary rate limit.
    rate_limit_creates: u32,
    rate_limit_retry_after: u64,
    /// Requests refused with 502 before anything happens.
    fail_next: u32,
    /// Comment creations that land but whose answer is lost (502).
    lose_create_answers: u32,
    /// Comment creations answered only after this pause, landing even when the client
    /// has given up waiting (a request stuck behind GitHub's own queue).
    late_creates: u32,
    /// Comment edits carried out late, like [`Self::late_creates`].
    late_edits: u32,
    late_create_pause: std::time::Duration,
    /// Late creations not carried out yet.
    late_in_flight: u32,
    requests: Vec<String>,
    tokens_minted: u32,
    /// When set, app JWTs must verify against this key and installation tokens are
    /// required on repository calls.
    app: Option<(u64, jsonwebtoken::DecodingKey)>,
    issued_tokens: Vec<String>,
    /// Apps registered through the manifest flow.
    apps: apps::AppsState,
    /// Images attached to comments: id → (type, bytes).
    attachments: HashMap<String, (String, Vec<u8>)>,
    /// Where the fake is served, once it is.
    base: Option<String>,
    /// Reactions on issues and pull requests themselves: ((repo, number), content).
    issue_reactions: Vec<((String, u64), String)>,
    /// Changed files of pull requests.
    pull_files: HashMap<(String, u64), Vec<String>>,
    /// Files of repositories' default branches: (repo, path) → file.
    files: HashMap<(String, String), FakeFile>,
    /// Reads whose path contains the text are answered with the status.
    refused_paths: Vec<(String, u16)>,
    /// 304 answers given to conditional reads.
    not_modified: u32,
}

/// The fake. Clones share state.
#[derive(Clone)]
pub struct FakeGithub {
    state: Arc<Mutex<FakeState>>,
    events: broadcast::Sender<GithubEvent>,
    bot_login: String,
    /// Random faults, off until enabled.
    pub chaos: crate::testkit::chaos::Chaos,
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for FakeGithub {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeGithub {
    /// An empty fake GitHub.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(16_384);
        Self {
            state: Arc::new(Mutex::new(FakeState {
                next_id: 1000,
                ..FakeState::default()
            })),
            events,
            bot_login: "ozbridge[bot]".into(),
            chaos: crate::testkit::chaos::Chaos::default(),
        }
    }

    /// The router serving the fake REST API at its root.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/app", get(app))
            .route("/rate_limit", get(rate_limit))
            .route("/app/installations/{id}/access_tokens", post(mint_token))
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                post(create_comment).get(list_comments),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                post(edit_comment).patch(edit_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
                post(react),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/comments/{id}/reactions",
                post(react),
            )
            .route(
                "/repos/{owner}/{repo}/collaborators/{user}/permission",
                get(permission),
            )
            .route("/repos/{owner}/{repo}/issues/{number}", get(issue))
            .route("/repos/{owner}/{repo}/pulls/{number}", get(pull))
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/comments",
                get(list_review_comments),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/comments/{id}/replies",
                post(reply_to_review_comment),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/comments/{id}",
                axum::routing::patch(edit_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/reactions",
                post(react_on_issue),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/files",
                get(list_pull_files),
            )
            .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
            .route(
                "/repos/{owner}/{repo}/installation",
                get(|| async { Json(json!({ "id": 1 })) }),
            )
            .route("/user-attachments/assets/{id}", get(attachment))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate))
            .layer(axum::middleware::from_fn_with_state(
                self.chaos.clone(),
                crate::testkit::chaos::gate,
            ))
            .with_state(self.clone())
            .merge(apps::router(self.clone()))
    }

    /// Serves the fake on `listener`; returns its base URL.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> anyhow::Result<String> {
        let base = format!("http://{}", listener.local_addr()?);
        lock(&self.state).base = Some(base.clone());
        let router = self.router();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "fake GitHub stopped");
            }
        });
        Ok(base)
    }

    /// Acts as GitHub for an App: `POST /app/installations/{id}/access_tokens` demands an
    /// RS256 JWT signed by the App's key, and repository calls demand a minted token.
    pub fn require_app(&self, app_id: u64, public_key_pem: &[u8]) -> anyhow::Result<()> {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem)?;
        lock(&self.state).app = Some((app_id, key));
        Ok(())
    }

    /// Attaches an image as GitHub does when one is pasted into a comment; returns its
    /// URL (served to a token only, as for a private repository).
    pub fn add_attachment(&self, mime_type: &str, bytes: Vec<u8>) -> String {
        let mut state = lock(&self.state);
        let id = format!("{:08x}-attachment", state.attachments.len() + 1);
        state
            .attachments
            .insert(id.clone(), (mime_type.to_owned(), bytes));
        let base = state.base.clone().unwrap_or_default();
        format!("{base}/user-attachments/assets/{id}")
    }

    /// A feed of what the bot does.
    pub fn subscribe(&self) -> broadcast::Receiver<GithubEvent> {
        self.events.subscribe()
    }

    /// Sets a user's permission (`admin`, `maintain`, `write`, `triage`, `read`).
    pub fn set_permission(&self, repo: &str, login: &str, permission: &str) {
        lock(&self.state).permissions.insert(
            (repo.to_ascii_lowercase(), login.to_ascii_lowercase()),
            permission.into(),
        );
    }

    /// Registers a pull request's branches.
    pub fn add_pull(&self, repo: &str, number: u64, head: &str, base: &str) {
        lock(&self.state).pulls.insert(
            (repo.to_ascii_lowercase(), number),
            (head.into(), base.into()),
        );
    }

    /// Registers an issue (or, with [`Self::add_pull`], a pull request): its title,
    /// description (`None`: none written) and labels.
    pub fn add_issue(
        &self,
        repo: &str,
        number: u64,
        title: &str,
        body: Option<&str>,
        labels: &[&str],
    ) {
        lock(&self.state).threads.insert(
            (repo.to_ascii_lowercase(), number),
            FakeThread {
                title: title.into(),
                body: body.map(str::to_owned),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            },
        );
    }

    /// Adds a comment written by a person; returns its id.
    pub fn add_user_comment(&self, repo: &str, number: u64, author: &str, body: &str) -> u64 {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.comments.push(FakeComment {
            id,
            repo: repo.to_ascii_lowercase(),
            number,
            author: author.into(),
            body: body.into(),
            revisions: vec![body.into()],
            created_at: chrono::Utc::now(),
            review: None,
        });
        id
    }

    /// Adds a review comment written by a person on pull request `number`'s diff
    /// (answering `in_reply_to` when given); returns its id.
    pub fn add_review_comment(
        &self,
        repo: &str,
        number: u64,
        author: &str,
        body: &str,
        in_reply_to: Option<u64>,
    ) -> u64 {
        let id = self.add_user_comment(repo, number, author, body);
        let mut state = lock(&self.state);
        if let Some(comment) = state.comments.iter_mut().find(|c| c.id == id) {
            comment.review = Some(ReviewThreadPlace { in_reply_to });
        }
        id
    }

    /// Sets the changed files of a pull request.
    pub fn set_pull_files(&self, repo: &str, number: u64, files: &[&str]) {
        lock(&self.state).pull_files.insert(
            (repo.to_ascii_lowercase(), number),
            files.iter().map(|f| (*f).to_owned()).collect(),
        );
    }

    /// Writes (or, with `None`, deletes) a file on a repository's default branch.
    pub fn set_file(&self, repo: &str, path: &str, text: Option<&str>) {
        use sha2::Digest;
        let key = (repo.to_ascii_lowercase(), path.to_owned());
        let mut state = lock(&self.state);
        match text {
            Some(text) => {
                let sha = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                state.files.insert(
                    key,
                    FakeFile {
                        text: text.into(),
                        sha,
                    },
                );
            }
            None => {
                state.files.remove(&key);
            }
        }
    }

    /// Answers every later read (`GET`) whose path contains `part` with `status` (an
    /// outage of one listing).
    pub fn refuse_reads_containing(&self, part: &str, status: u16) {
        lock(&self.state)
            .refused_paths
            .push((part.to_owned(), status));
    }

    /// Ends every outage set by [`Self::refuse_reads_containing`].
    pub fn answer_reads_again(&self) {
        lock(&self.state).refused_paths.clear();
    }

    /// How many conditional reads were answered 304 Not Modified.
    pub fn not_modified_answers(&self) -> u32 {
        lock(&self.state).not_modified
    }

    /// Reactions on issue or pull request `number` itself.
    pub fn issue_reactions(&self, repo: &str, number: u64) -> Vec<String> {
        let key = (repo.to_ascii_lowercase(), number);
        lock(&self.state)
            .issue_reactions
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// All comments of a thread (people's and the bot's), oldest first.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<FakeComment> {
        let repo = repo.to_ascii_lowercase();
        lock(&self.state)
            .comments
            .iter()
            .filter(|c| c.repo == repo && c.number == number)
            .cloned()
            .collect()
    }

    /// Refuses the next `count` comment creations with a secondary rate limit.
    pub fn rate_limit_next_creates(&self, count: u32, retry_after_secs: u64) {
        let mut state = lock(&self.state);
        state.rate_limit_creates = count;
        state.rate_limit_retry_after = retry_after_secs;
    }

    /// Creates the next `count` comments but answers 502, as if the answer was lost.
    pub fn lose_next_create_answers(&self, count: u32) {
        lock(&self.state).lose_create_answers = count;
    }

    /// Carries out the next `count` comment creations only after `pause`, even when the
    /// client stopped waiting before (the request was in GitHub's queue).
    pub fn land_next_creates_late(&self, count: u32, pause: std::time::Duration) {
        let mut state = lock(&self.state);
        state.late_creates = count;
        state.late_create_pause = pause;
    }

    /// Carries out the next `count` comment edits only after `pause`, answering then
    /// (as [`Self::land_next_creates_late`] does for creations): a client that gave up
    /// sees the edit land after the ones it sent next.
    pub fn land_next_edits_late(&self, count: u32, pause: std::time::Duration) {
        let mut state = lock(&self.state);
        state.late_edits = count;
        state.late_create_pause = pause;
    }

    /// Late creations and edits not carried out yet.
    pub fn late_creates_in_flight(&self) -> u32 {
        lock(&self.state).late_in_flight
    }

    /// Answers the next `count` requests with 502.
    pub fn fail_next(&self, count: u32) {
        lock(&self.state).fail_next = count;
    }

    /// Comments written by the bot in a thread, oldest first.
    pub fn bot_comments(&self, repo: &str, number: u64) -> Vec<FakeComment> {
        let repo = repo.to_ascii_lowercase();
        lock(&self.state)
            .comments
            .iter()
            .filter(|c| c.repo == repo && c.number == number && c.author == self.bot_login)
            .cloned()
            .collect()
    }

    /// Reactions on a comment, in the order they were added (duplicates collapse).
    pub fn reactions(&self, comment_id: u64) -> Vec<String> {
        lock(&self.state)
            .reactions
            .iter()
            .filter(|(id, _)| *id == comment_id)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Requests received, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    /// Installation tokens minted so far.
    pub fn tokens_minted(&self) -> u32 {
        lock(&self.state).tokens_minted
    }
}

impl FakeGithub {
    /// Stores a comment the bot created and tells the feed; returns its id.
    fn bot_comment(
        &self,
        state: &mut FakeState,
        repo: &str,
        number: u64,
        body: String,
        review: Option<ReviewThreadPlace>,
    ) -> u64 {
        state.next_id += 1;
        let id = state.next_id;
        state.comments.push(FakeComment {
            id,
            repo: repo.to_owned(),
            number,
            author: self.bot_login.clone(),
            body: body.clone(),
            revisions: vec![body.clone()],
            created_at: chrono::Utc::now(),
            review,
        });
        let _ = self.events.send(GithubEvent::CommentCreated {
            id,
            repo: repo.to_owned(),
            number,
            body,
        });
        id
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AppClaims {
    iss: String,
    iat: i64,
    exp: i64,
}

/// Checks the bearer credential the way GitHub does for an App: a valid JWT for `/app`
/// routes, a minted installation token elsewhere. Without an App, any token passes.
fn credential_ok(state: &FakeState, path: &str, bearer: &str) -> bool {
    let Some((app_id, key)) = &state.app else {
        return !bearer.is_empty();
    };
    if path.starts_with("/app") || (path.starts_with("/repos/") && path.ends_with("/installation"))
    {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        jsonwebtoken::decode::<AppClaims>(bearer, key, &validation)
            .is_ok_and(|t| t.claims.iss == app_id.to_string() && t.claims.exp - t.claims.iat <= 600)
    } else {
        state.issued_tokens.iter().any(|t| t == bearer)
    }
}

async fn gate(
    State(fake): State<FakeGithub>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let path = request.uri().path().to_owned();
    let (authorized, failing) = {
        let mut state = lock(&fake.state);
        state.requests.push(format!("{} {path}", request.method()));
        let authorized = credential_ok(&state, &path, &bearer);
        let failing = state.fail_next > 0;
        state.fail_next = state.fail_next.saturating_sub(1);
        (authorized, failing)
    };
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let reading = request.method() == axum::http::Method::GET;
    let refused = lock(&fake.state)
        .refused_paths
        .iter()
        .find(|(part, _)| reading && path.contains(part.as_str()))
        .map(|(_, status)| *status);
    if let Some(status) = refused {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return error(status, "Server Error");
    }
    if failing {
        return error(StatusCode::BAD_GATEWAY, "Server Error");
    }
    let late = {
        let mut state = lock(&fake.state);
        let creates_comment = request.method() == axum::http::Method::POST
            && path.ends_with("/comments")
            && path.contains("/issues/");
        let edits_comment =
            request.method() == axum::http::Method::PATCH && path.contains("/issues/comments/");
        let late = if creates_comment && state.late_creates > 0 {
            state.late_creates -= 1;
            true
        } else if edits_comment && state.late_edits > 0 {
            state.late_edits -= 1;
            true
        } else {
            false
        };
        late.then(|| {
            state.late_in_flight += 1;
            state.late_create_pause
        })
    };
    match late {
        // Processed in a task of its own, so a client that gives up does not stop it.
        Some(pause) => {
            let state = fake.state.clone();
            let work = tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                let answer = next.run(request).await;
                lock(&state).late_in_flight -= 1;
                answer
            });
            work.await
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error"))
        }
        None => next.run(request).await,
    }
}

async fn app() -> Response {
    Json(json!({ "id": 1, "slug": "ozbridge", "name": "ozbridge" })).into_response()
}

async fn attachment(State(fake): State<FakeGithub>, Path(id): Path<String>) -> Response {
    match lock(&fake.state).attachments.get(&id) {
        Some((mime, bytes)) => {
            ([(header::CONTENT_TYPE, mime.clone())], bytes.clone()).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn rate_limit() -> Response {
    Json(json!({ "resources": { "core": { "limit": 5000, "remaining": 4999 } } })).into_response()
}

async fn mint_token(State(fake): State<FakeGithub>, Path(id): Path<u64>) -> Response {
    let token = format!("ghs_fake_{id}_{}", fastrand::u32(..));
    let mut state = lock(&fake.state);
    state.tokens_minted += 1;
    state.issued_tokens.push(token.clone());
    let expires = chrono::Utc::now() + chrono::Duration::hours(1);
    (
        StatusCode::CREATED,
        Json(json!({ "token": token, "expires_at": expires })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct BodyInput {
    body: String,
}

fn check_body(body: &str) -> Option<Response> {
    (body.chars().count() > crate::github::render::MAX_COMMENT_CHARS).then(|| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: body is too long (maximum is 65536 characters)",
        )
    })
}

async fn create_comment(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(input): Json<BodyInput>,
) -> Response {
    if let Some(refused) = check_body(&input.body) {
        return refused;
    }
    let repo = format!("{owner}/{repo}").to_ascii_lowercase();
    let mut state = lock(&fake.state);
    if state.rate_limit_creates > 0 {
        state.rate_limit_creates -= 1;
        let mut response = error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        if let Ok(value) = state.rate_limit_retry_after.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let id = fake.bot_comment(&mut state, &repo, number, input.body, None);
    if state.lose_create_answers > 0 {
        state.lose_create_answers -= 1;
        return error(StatusCode::BAD_GATEWAY, "Server Error");
    }
    let url = format!("https://github.com/{repo}/issues/{number}#issuecomment-{id}");
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "html_url": url })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListParams {
    per_page: Option<usize>,
    page: Option<usize>,
    since: Option<String>,
}

async fn list_comments(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(params): Query<ListParams>,
) -> Response {
    list_thread(&fake, &format!("{owner}/{repo}"), number, &params, false)
}

async fn list_review_comments(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(params): Query<ListParams>,
) -> Response {
    list_thread(&fake, &format!("{owner}/{repo}"), number, &params, true)
}

/// One page of a thread's conversation comments or review comments, with GitHub's
/// `Link` header (`next`, `last`).
fn list_thread(
    fake: &FakeGithub,
    repo: &str,
    number: u64,
    params: &ListParams,
    review: bool,
) -> Response {
    let repo = repo.to_ascii_lowercase();
    let since = params
        .since
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let state = lock(&fake.state);
    let all: Vec<serde_json::Value> = state
        .comments
        .iter()
        .filter(|c| {
            c.repo == repo
                && c.number == number
                && c.review.is_some() == review
                && since.is_none_or(|t| c.created_at >= t)
        })
        .map(|c| {
            let kind = if c.author.ends_with("[bot]") {
                "Bot"
            } else {
                "User"
            };
            json!({
                "id": c.id,
                "body": c.body,
                "user": { "login": c.author, "type": kind },
                "in_reply_to_id": c.review.as_ref().and_then(|r| r.in_reply_to),
            })
        })
        .collect();
    let base = state.base.clone().unwrap_or_default();
    let kind = if review { "pulls" } else { "issues" };
    paged(
        all,
        params,
        &format!("{base}/repos/{repo}/{kind}/{number}/comments"),
    )
}

/// A page of `all` as GitHub pages listings (`per_page` at most 100, `Link` header
/// with absolute URLs).
fn paged(all: Vec<serde_json::Value>, params: &ListParams, url: &str) -> Response {
    let per_page = params.per_page.unwrap_or(30).clamp(1, 100);
    let page = params.page.unwrap_or(1).max(1);
    let last = all.len().div_ceil(per_page).max(1);
    let listed: Vec<serde_json::Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut response = Json(listed).into_response();
    if last > 1 {
        let link =
            |n: usize, rel: &str| format!("<{url}?per_page={per_page}&page={n}>; rel=\"{rel}\"");
        let mut links = Vec::new();
        if page < last {
            links.push(link(page + 1, "next"));
            links.push(link(last, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
            links.push(link(page - 1, "prev"));
        }
        if let Ok(value) = links.join(", ").parse() {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

async fn reply_to_review_comment(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number, root)): Path<(String, String, u64, u64)>,
    Json(input): Json<BodyInput>,
) -> Response {
    if let Some(refused) = check_body(&input.body) {
        return refused;
    }
    let repo = format!("{owner}/{repo}").to_ascii_lowercase();
    let mut state = lock(&fake.state);
    let Some(target) = state
        .comments
        .iter()
        .find(|c| c.id == root && c.repo == repo && c.number == number && c.review.is_some())
    else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if target
        .review
        .as_ref()
        .is_some_and(|r| r.in_reply_to.is_some())
    {
        // GitHub's replies endpoint answers the first comment of a thread only.
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed: in_reply_to_id must be a top-level review comment",
        );
    }
    let review = Some(ReviewThreadPlace {
        in_reply_to: Some(root),
    });
    let id = fake.bot_comment(&mut state, &repo, number, input.body, review);
    let url = format!("https://github.com/{repo}/pull/{number}#discussion_r{id}");
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "html_url": url, "in_reply_to_id": root })),
    )
        .into_response()
}

async fn react_on_issue(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(input): Json<ReactionInput>,
) -> Response {
    let key = (format!("{owner}/{repo}").to_ascii_lowercase(), number);
    let added = add_reaction(&mut lock(&fake.state).issue_reactions, key, &input.content);
    reaction_answer(added, input.content)
}

async fn list_pull_files(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(params): Query<ListParams>,
) -> Response {
    let repo = format!("{owner}/{repo}").to_ascii_lowercase();
    let state = lock(&fake.state);
    let key = (repo.clone(), number);
    if !state.pulls.contains_key(&key) && !state.pull_files.contains_key(&key) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let all = state
        .pull_files
        .get(&key)
        .into_iter()
        .flatten()
        .map(|name| json!({ "filename": name, "status": "modified" }))
        .collect();
    let base = state.base.clone().unwrap_or_default();
    paged(
        all,
        &params,
        &format!("{base}/repos/{repo}/pulls/{number}/files"),
    )
}

/// The contents API for a file: base64 in lines of 60 as GitHub sends it, an `ETag`
/// (the blob's sha), and 304 to an `If-None-Match` that names it.
async fn contents(
    State(fake): State<FakeGithub>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    use base64::Engine;
    let key = (format!("{owner}/{repo}").to_ascii_lowercase(), path.clone());
    let mut state = lock(&fake.state);
    let Some(file) = state.files.get(&key).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let etag = format!("\"{}\"", file.sha);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        state.not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    drop(state);
    let encoded = base64::engine::general_purpose::STANDARD.encode(file.text.as_bytes());
    let content: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    (
        [(header::ETAG, etag)],
        Json(json!({
            "type": "file",
            "path": path,
            "sha": file.sha,
            "encoding": "base64",
            "content": content.join("\n") + "\n",
        })),
    )
        .into_response()
}

async fn edit_comment(
    State(fake): State<FakeGithub>,
    Path((_owner, _repo, id)): Path<(String, String, u64)>,
    Json(input): Json<BodyInput>,
) -> Response {
    if let Some(refused) = check_body(&input.body) {
        return refused;
    }
    let mut state = lock(&fake.state);
    let Some(comment) = state.comments.iter_mut().find(|c| c.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    comment.body = input.body.clone();
    comment.revisions.push(input.body.clone());
    let _ = fake.events.send(GithubEvent::CommentEdited {
        id,
        body: input.body,
    });
    Json(json!({ "id": id })).into_response()
}

#[derive(Deserialize)]
struct ReactionInput {
    content: String,
}

const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

/// Adds `content` under `key` unless it is there; `Some(true)` when it is new, `None`
/// for a content GitHub does not know.
fn add_reaction<K: PartialEq>(list: &mut Vec<(K, String)>, key: K, content: &str) -> Option<bool> {
    if !REACTIONS.contains(&content) {
        return None;
    }
    if list.iter().any(|(k, c)| *k == key && c == content) {
        return Some(false);
    }
    list.push((key, content.to_owned()));
    Some(true)
}

/// GitHub's answer: 201 for a new reaction, 200 with the existing one (adding is
/// idempotent), 422 for an unknown content.
fn reaction_answer(added: Option<bool>, content: String) -> Response {
    match added {
        None => error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed"),
        Some(new) => {
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(json!({ "content": content }))).into_response()
        }
    }
}

async fn react(
    State(fake): State<FakeGithub>,
    Path((_owner, _repo, id)): Path<(String, String, u64)>,
    Json(input): Json<ReactionInput>,
) -> Response {
    let added = add_reaction(&mut lock(&fake.state).reactions, id, &input.content);
    if added == Some(true) {
        let _ = fake.events.send(GithubEvent::Reaction {
            comment_id: id,
            content: input.content.clone(),
        });
    }
    reaction_answer(added, input.content)
}

async fn permission(
    State(fake): State<FakeGithub>,
    Path((owner, repo, user)): Path<(String, String, String)>,
    _headers: HeaderMap,
) -> Response {
    let key = (
        format!("{owner}/{repo}").to_ascii_lowercase(),
        user.to_ascii_lowercase(),
    );
    match lock(&fake.state).permissions.get(&key) {
        Some(role) => {
            let permission = match role.as_str() {
                "maintain" => "write",
                "triage" => "read",
                other => other,
            };
            Json(json!({ "permission": permission, "role_name": role, "user": { "login": user } }))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, &format!("{user} is not a user")),
    }
}

/// The fields ozbridge reads of an issue or a pull request (both are issues to GitHub).
fn thread_json(state: &FakeState, key: &(String, u64)) -> serde_json::Value {
    let thread = state.threads.get(key).cloned().unwrap_or_default();
    let labels: Vec<serde_json::Value> = thread
        .labels
        .iter()
        .map(|name| json!({ "name": name }))
        .collect();
    json!({ "number": key.1, "title": thread.title, "body": thread.body, "labels": labels, "state": "open" })
}

async fn issue(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let key = (format!("{owner}/{repo}").to_ascii_lowercase(), number);
    let state = lock(&fake.state);
    if !state.threads.contains_key(&key) && !state.pulls.contains_key(&key) {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let mut issue = thread_json(&state, &key);
    if state.pulls.contains_key(&key) {
        issue["pull_request"] = json!({ "url": format!("/repos/{}/pulls/{number}", key.0) });
    }
    Json(issue).into_response()
}

async fn pull(
    State(fake): State<FakeGithub>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    let key = (format!("{owner}/{repo}").to_ascii_lowercase(), number);
    let state = lock(&fake.state);
    match state.pulls.get(&key) {
        Some((head, base)) => {
            let mut pull = thread_json(&state, &key);
            pull["head"] = json!({ "ref": head });
            pull["base"] = json!({ "ref": base });
            Json(pull).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
