//! Where answers go: reactions, replies, status posts and permission checks, routed by
//! the command's origin to the platform client. The rest of the pipeline never names a
//! platform.

use crate::config::GithubPolicy;
use crate::domain::{Author, CommentKind, GithubOrigin, Origin, ThreadContext};
use crate::github::render::{self, StatusInput};
use crate::github::{GithubClient, GithubError, Permission};
use crate::ids::RepoFullName;
use crate::store::RunRecord;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The moments marked with a reaction on the command's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Received,
    Succeeded,
    Failed,
    Cancelled,
    Acknowledged,
}

impl Mark {
    fn github_reaction(self) -> &'static str {
        match self {
            Self::Received => "eyes",
            Self::Succeeded => "rocket",
            Self::Failed => "confused",
            Self::Cancelled => "-1",
            Self::Acknowledged => "+1",
        }
    }

    /// The stored name of the mark.
    pub fn name(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Acknowledged => "acknowledged",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Received,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
            Self::Acknowledged,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// A failed delivery.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl From<GithubError> for SendError {
    fn from(error: GithubError) -> Self {
        Self {
            retryable: error.is_retryable(),
            retry_after: error.retry_after(),
            message: error.to_string(),
        }
    }
}

/// Whether an author may start runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Refused; the text is shown to the user.
    Denied(String),
}

/// Delivers to GitHub (and, later, other platforms).
pub struct Outlets {
    github: Option<GithubClient>,
    policy: GithubPolicy,
    public_url: Option<String>,
    permission_ttl: Duration,
    permissions: Mutex<HashMap<(String, String), (Permission, Instant)>>,
    /// Writes to the platform wait until then (rate limit).
    paused_until: Mutex<Option<Instant>>,
}

impl Outlets {
    /// Outlets over the configured clients.
    pub fn new(
        github: Option<GithubClient>,
        policy: GithubPolicy,
        public_url: Option<String>,
        permission_ttl: Duration,
    ) -> Self {
        Self {
            github,
            policy,
            public_url,
            permission_ttl,
            permissions: Mutex::default(),
            paused_until: Mutex::default(),
        }
    }

    fn github(&self) -> Result<&GithubClient, SendError> {
        self.github.as_ref().ok_or_else(|| SendError {
            message: "GitHub is not configured".into(),
            retryable: false,
            retry_after: None,
        })
    }

    /// How long writes must still wait after a rate limit, if at all.
    pub fn pause_left(&self) -> Option<Duration> {
        let paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        paused.and_then(|until| until.checked_duration_since(Instant::now()))
    }

    /// Records a rate limit so that every writer waits.
    pub fn note_failure(&self, error: &SendError) {
        if let Some(wait) = error.retry_after {
            let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            let until = Instant::now() + wait;
            if paused.is_none_or(|current| current < until) {
                *paused = Some(until);
            }
        }
    }

    /// Checks that the author may start runs: deny list, allow list, then write access.
    pub async fn access(&self, origin: &Origin, author: &Author) -> Result<Access, SendError> {
        let Origin::Github(g) = origin;
        if self.policy.denies(&author.login, author.id) {
            return Ok(Access::Denied(format!(
                "@{}, you are not allowed to start Oz agents here.",
                author.login
            )));
        }
        if self.policy.allows(&author.login, author.id) {
            return Ok(Access::Allowed);
        }
        let permission = self
            .permission(&g.repo, g.installation_id, &author.login)
            .await?;
        if permission.can_write() {
            Ok(Access::Allowed)
        } else {
            Ok(Access::Denied(format!(
                "@{}, thanks for asking! Only people with write access to {} can start Oz agents here; \
                 a maintainer can run the command for you.",
                author.login, g.repo
            )))
        }
    }

    async fn permission(
        &self,
        repo: &RepoFullName,
        installation: Option<u64>,
        login: &str,
    ) -> Result<Permission, SendError> {
        let key = (
            repo.as_str().to_ascii_lowercase(),
            login.to_ascii_lowercase(),
        );
        {
            let cache = self.permissions.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((permission, at)) = cache.get(&key)
                && at.elapsed() < self.permission_ttl
            {
                return Ok(*permission);
            }
        }
        let permission = self.github()?.permission(repo, installation, login).await?;
        let mut cache = self.permissions.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (_, at)| at.elapsed() < self.permission_ttl);
        cache.insert(key, (permission, Instant::now()));
        Ok(permission)
    }

    /// Completes the thread context where the payload lacked it (a PR's branches when
    /// the command came as an issue comment). Best effort: the run starts regardless.
    pub async fn complete_context(&self, origin: &Origin, context: &mut ThreadContext) {
        let Origin::Github(g) = origin;
        if context.is_pull_request && context.head_ref.is_none() {
            match self
                .github()
                .map(|gh| gh.pull_branches(&g.repo, g.installation_id, g.number))
            {
                Ok(call) => match call.await {
                    Ok((head, base)) => {
                        context.head_ref = Some(head);
                        context.base_ref = Some(base);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the pull request's branches")
                    }
                },
                Err(error) => tracing::warn!(%error, "could not read the pull request's branches"),
            }
        }
    }

    /// Adds a reaction to the command's message.
    pub async fn mark(&self, origin: &Origin, mark: Mark) -> Result<(), SendError> {
        let Origin::Github(g) = origin;
        let review = g.comment_kind == CommentKind::Review;
        self.github()?
            .add_reaction(
                &g.repo,
                g.installation_id,
                g.comment_id,
                review,
                mark.github_reaction(),
            )
            .await?;
        Ok(())
    }

    /// Posts a reply in the thread. When `maybe_posted`, a previous try may have landed:
    /// look for its marker first so the reply never appears twice.
    pub async fn reply(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        let Origin::Github(g) = origin;
        let gh = self.github()?;
        if maybe_posted
            && gh
                .find_comment_with_marker(
                    &g.repo,
                    g.installation_id,
                    g.number,
                    &render::reply_marker(key),
                    None,
                )
                .await?
                .is_some()
        {
            return Ok(());
        }
        gh.create_comment(
            &g.repo,
            g.installation_id,
            g.number,
            &render::reply(key, text),
        )
        .await?;
        Ok(())
    }

    /// Creates or edits the run's status post; returns its platform id and the digest of
    /// what it shows. Nothing is sent when the rendering did not change. `before_create`
    /// is awaited right before a create is sent (to record the attempt durably).
    pub async fn upsert_status<F: Future<Output = Result<(), SendError>>>(
        &self,
        run: &RunRecord,
        before_create: impl FnOnce() -> F,
    ) -> Result<(String, String), SendError> {
        let Origin::Github(g) = &run.origin;
        let gh = self.github()?;
        let body = render::status_comment(&StatusInput {
            run: &run.id,
            view: &run.view,
            requester: &run.requester,
            request_text: &run.asked,
            public_url: self.public_url.as_deref(),
        });
        let digest = hex::encode(&sha2::Sha256::digest(body.as_bytes())[..16]);
        if let Some(post) = &run.status_post
            && run.posted_digest.as_deref() == Some(digest.as_str())
        {
            return Ok((post.clone(), digest));
        }
        let existing = match (&run.status_post, run.post_attempted) {
            (Some(id), _) => id.parse::<u64>().ok(),
            (None, true) => self.find_status(gh, g, run).await?,
            (None, false) => None,
        };
        if let Some(id) = existing {
            gh.update_comment(&g.repo, g.installation_id, id, &body)
                .await?;
            return Ok((id.to_string(), digest));
        }
        before_create().await?;
        let created = gh
            .create_comment(&g.repo, g.installation_id, g.number, &body)
            .await?;
        Ok((created.id.to_string(), digest))
    }

    async fn find_status(
        &self,
        gh: &GithubClient,
        g: &GithubOrigin,
        run: &RunRecord,
    ) -> Result<Option<u64>, SendError> {
        let since = chrono::DateTime::from_timestamp_millis(run.created_at - 60_000);
        Ok(gh
            .find_comment_with_marker(
                &g.repo,
                g.installation_id,
                g.number,
                &render::run_marker(&run.id),
                since,
            )
            .await?)
    }
}
