//! Where answers go: reactions, replies, private notes, status posts and access checks,
//! routed by the command's origin to GitHub or Slack. The rest of the pipeline never
//! names a platform.

use crate::config::{GithubPolicy, SlackPolicy};
use crate::domain::{Author, CommentKind, GithubOrigin, Origin, SlackOrigin, ThreadContext};
use crate::github::render::{self, StatusInput};
use crate::github::{GithubClient, GithubError, Permission};
use crate::ids::RepoFullName;
use crate::retry::CallFailure;
use crate::slack::{SlackClient, SlackError};
use crate::store::RunRecord;
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Thread messages read for a Slack prompt, and their bounds.
const MAX_THREAD_MESSAGES: u32 = 50;
const MAX_THREAD_MESSAGE_CHARS: usize = 1_000;
const MAX_THREAD_CHARS: usize = 8_000;

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

    fn slack_reaction(self) -> &'static str {
        match self {
            Self::Received => "eyes",
            Self::Succeeded => "white_check_mark",
            Self::Failed => "x",
            Self::Cancelled => "no_entry_sign",
            Self::Acknowledged => "ok_hand",
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

/// A failed delivery: the detail is for the log; a user only ever reads `user_text`.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    /// What went wrong, for operators; never shown in a thread.
    pub detail: String,
    /// A sentence for the user, when the failure means something to them.
    pub user_text: Option<String>,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The call may have landed though it failed (see [`CallFailure::in_doubt`]).
    pub in_doubt: bool,
}

impl SendError {
    /// A failure that will not go away by retrying.
    pub fn permanent(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            user_text: None,
            retryable: false,
            retry_after: None,
            in_doubt: false,
        }
    }

    fn from_call(error: &impl CallFailure) -> Self {
        Self {
            detail: error.to_string(),
            user_text: None,
            retryable: error.is_retryable(),
            retry_after: error.retry_after(),
            in_doubt: error.in_doubt(),
        }
    }
}

impl CallFailure for SendError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    fn in_doubt(&self) -> bool {
        self.in_doubt
    }
}

impl From<GithubError> for SendError {
    fn from(error: GithubError) -> Self {
        Self::from_call(&error)
    }
}

impl From<SlackError> for SendError {
    fn from(error: SlackError) -> Self {
        let user_text = match &error {
            SlackError::Api(code)
                if matches!(code.as_str(), "not_in_channel" | "channel_not_found") =>
            {
                Some(
                    "I am not a member of this channel. Invite me with `/invite @oz`, then try again.",
                )
            }
            SlackError::Api(code) if code == "is_archived" => {
                Some("This channel is archived, so I cannot post in it.")
            }
            _ => None,
        };
        Self {
            user_text: user_text.map(str::to_owned),
            ..Self::from_call(&error)
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

/// A status post written or brought up to date.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Platform id: GitHub comment id, Slack message ts.
    pub id: String,
    /// Digest of what it shows.
    pub digest: String,
    /// True when this call created it.
    pub created: bool,
}

/// The platform clients and policies.
pub struct Outlets {
    pub github: Option<GithubClient>,
    pub slack: Option<SlackClient>,
    pub github_policy: GithubPolicy,
    pub slack_policy: SlackPolicy,
    pub public_url: Option<String>,
    pub permission_ttl: Duration,
    /// How long a post without an answer may still land, per platform.
    pub github_doubt_window: Duration,
    pub slack_doubt_window: Duration,
    permissions: Mutex<HashMap<(String, String), (Permission, Instant)>>,
}

impl Outlets {
    /// Outlets over the configured clients.
    pub fn new(
        github: Option<GithubClient>,
        slack: Option<SlackClient>,
        github_policy: GithubPolicy,
        slack_policy: SlackPolicy,
        public_url: Option<String>,
        permission_ttl: Duration,
    ) -> Self {
        Self {
            github,
            slack,
            github_policy,
            slack_policy,
            public_url,
            permission_ttl,
            github_doubt_window: Duration::from_secs(40),
            slack_doubt_window: Duration::from_secs(40),
            permissions: Mutex::default(),
        }
    }

    fn github(&self) -> Result<&GithubClient, SendError> {
        self.github
            .as_ref()
            .ok_or_else(|| SendError::permanent("GitHub is not configured"))
    }

    fn slack(&self) -> Result<&SlackClient, SendError> {
        self.slack
            .as_ref()
            .ok_or_else(|| SendError::permanent("Slack is not configured"))
    }

    /// How long a post to the origin's platform without an answer may still land: a
    /// lookup may conclude it did not only after this.
    pub fn doubt_window(&self, origin: &Origin) -> Duration {
        match origin {
            Origin::Github(_) => self.github_doubt_window,
            Origin::Slack(_) => self.slack_doubt_window,
        }
    }

    /// Waits for the origin's turn to post (Slack paces posts per channel); an error to
    /// retry later when the turn is far off.
    pub async fn take_turn(&self, origin: &Origin) -> Result<(), SendError> {
        match origin {
            Origin::Slack(s) => wait_turn(self.slack()?, &s.channel).await,
            Origin::Github(_) => Ok(()),
        }
    }

    /// The breakers of the configured platforms, to resume work when one recovers.
    pub fn breakers(&self) -> Vec<std::sync::Arc<crate::retry::Breaker>> {
        let github = self.github.as_ref().map(|g| g.breaker().clone());
        let slack = self.slack.as_ref().map(|s| s.breaker().clone());
        github.into_iter().chain(slack).collect()
    }

    /// Checks that the author may start runs.
    pub async fn access(&self, origin: &Origin, author: &Author) -> Result<Access, SendError> {
        let g = match origin {
            Origin::Github(g) => g,
            Origin::Slack(s) => {
                return Ok(
                    match self
                        .slack_policy
                        .refusal(&s.team, &s.channel, &s.user, s.direct)
                    {
                        Some(reason) => Access::Denied(reason),
                        None => Access::Allowed,
                    },
                );
            }
        };
        if self.github_policy.denies(&author.login, author.id) {
            return Ok(Access::Denied(format!(
                "@{}, you are not allowed to start Oz agents here.",
                author.login
            )));
        }
        if self.github_policy.allows(&author.login, author.id) {
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

    /// Completes the thread context the intake could not see: a PR's branches on GitHub,
    /// the thread's earlier messages on Slack. Best effort: the run starts regardless.
    pub async fn complete_context(&self, origin: &Origin, context: &mut ThreadContext) {
        let result = match origin {
            Origin::Github(g) => self.github_context(g, context).await,
            Origin::Slack(s) => self.slack_context(s, context).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not read the thread's context");
        }
    }

    async fn github_context(
        &self,
        g: &GithubOrigin,
        context: &mut ThreadContext,
    ) -> Result<(), SendError> {
        if context.is_pull_request && context.head_ref.is_none() {
            let (head, base) = self
                .github()?
                .pull_branches(&g.repo, g.installation_id, g.number)
                .await?;
            context.head_ref = Some(head);
            context.base_ref = Some(base);
        }
        Ok(())
    }

    async fn slack_context(
        &self,
        s: &SlackOrigin,
        context: &mut ThreadContext,
    ) -> Result<(), SendError> {
        context.title = s
            .channel_name
            .as_ref()
            .map(|n| format!("#{n}"))
            .unwrap_or_else(|| format!("<#{}>", s.channel));
        let Some(thread) = &s.thread_ts else {
            return Ok(());
        };
        let messages = self
            .slack()?
            .replies(&s.channel, thread, MAX_THREAD_MESSAGES)
            .await?;
        let mut transcript = String::new();
        for message in messages
            .iter()
            .filter(|m| Some(&m.ts) != s.message_ts.as_ref())
        {
            let who = message
                .user
                .as_deref()
                .map(|u| format!("<@{u}>"))
                .unwrap_or_else(|| "a bot".into());
            let line = format!(
                "{who}: {}\n",
                crate::text::truncate(&message.text, MAX_THREAD_MESSAGE_CHARS)
            );
            if transcript.chars().count() + line.chars().count() > MAX_THREAD_CHARS {
                transcript.push_str("(earlier messages cut)\n");
                break;
            }
            transcript.push_str(&line);
        }
        context.body = transcript;
        Ok(())
    }

    /// Adds a reaction to the command's message (none for a Slack slash command).
    pub async fn mark(&self, origin: &Origin, mark: Mark) -> Result<(), SendError> {
        match origin {
            Origin::Github(g) => {
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
            }
            Origin::Slack(s) => {
                if let Some(ts) = &s.message_ts {
                    self.slack()?
                        .add_reaction(&s.channel, ts, mark.slack_reaction())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Posts a reply in the thread (for a Slack slash command, privately to its user).
    /// When `maybe_posted`, a previous try may have landed: it is looked up first.
    pub async fn reply(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        match origin {
            Origin::Github(g) => {
                let gh = self.github()?;
                let marker = render::reply_marker(key);
                if maybe_posted
                    && gh
                        .find_comment_with_marker(
                            &g.repo,
                            g.installation_id,
                            g.number,
                            &marker,
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
            }
            Origin::Slack(s) => {
                let text = &crate::slack::render::mrkdwn(text);
                match (&s.thread_ts, &s.response_url) {
                    (Some(thread), _) => {
                        self.slack_post(s, Some(thread), key, text, maybe_posted)
                            .await?
                    }
                    (None, Some(url)) => self.slack()?.respond(&url.0, text).await?,
                    (None, None) => self.slack_post(s, None, key, text, maybe_posted).await?,
                }
            }
        }
        Ok(())
    }

    /// Posts a reply in a given Slack thread (a run's thread), once.
    pub async fn reply_in_thread(
        &self,
        origin: &Origin,
        thread: &str,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        match origin {
            Origin::Slack(s) => {
                self.slack_post(s, Some(thread), key, text, maybe_posted)
                    .await
            }
            Origin::Github(_) => self.reply(origin, key, text, maybe_posted).await,
        }
    }

    async fn slack_post(
        &self,
        s: &SlackOrigin,
        thread: Option<&str>,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        let slack = self.slack()?;
        if maybe_posted
            && slack
                .find_posted(&s.channel, thread, key, "0")
                .await?
                .is_some()
        {
            return Ok(());
        }
        slack
            .post_message(&s.channel, thread, text, None, key)
            .await?;
        Ok(())
    }

    /// Tells the user something only they should see: a Slack ephemeral message or
    /// `response_url` answer; on GitHub, which has no private messages, a reply.
    pub async fn private(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        match origin {
            Origin::Github(_) => self.reply(origin, key, text, maybe_posted).await,
            Origin::Slack(s) => {
                let slack = self.slack()?;
                let text = &crate::slack::render::mrkdwn(text);
                match &s.response_url {
                    Some(url) => slack.respond(&url.0, text).await?,
                    None => slack.post_ephemeral(&s.channel, &s.user, text).await?,
                }
                Ok(())
            }
        }
    }

    /// True when notable moments of a run are posted as thread replies (Slack); GitHub
    /// shows them in the status comment alone.
    pub fn posts_moments(&self, origin: &Origin) -> bool {
        matches!(origin, Origin::Slack(_))
    }

    /// Creates or edits the run's status post. Nothing is sent when the rendering did
    /// not change. `before_create` is awaited right before a create is sent (to record the
    /// attempt durably); a create that may have landed before is looked up first.
    pub async fn upsert_status<F: Future<Output = Result<(), SendError>>>(
        &self,
        run: &RunRecord,
        before_create: impl FnOnce() -> F,
    ) -> Result<Posted, SendError> {
        match &run.origin {
            Origin::Github(g) => self.upsert_github(g, run, before_create).await,
            Origin::Slack(s) => self.upsert_slack(s, run, before_create).await,
        }
    }

    async fn upsert_github<F: Future<Output = Result<(), SendError>>>(
        &self,
        g: &GithubOrigin,
        run: &RunRecord,
        before_create: impl FnOnce() -> F,
    ) -> Result<Posted, SendError> {
        let gh = self.github()?;
        let body = render::status_comment(&StatusInput {
            run: &run.id,
            view: &run.view,
            requester: &run.requester,
            request_text: &run.asked,
            public_url: self.public_url.as_deref(),
        });
        let digest = digest(&body);
        if let Some(post) = unchanged(run, &digest) {
            return Ok(post);
        }
        let existing = match (&run.status_post, run.post_lookup_after.is_some()) {
            (Some(id), _) => id.parse::<u64>().ok(),
            (None, true) => {
                let since = chrono::DateTime::from_timestamp_millis(run.created_at - 60_000);
                gh.find_comment_with_marker(
                    &g.repo,
                    g.installation_id,
                    g.number,
                    &render::run_marker(&run.id),
                    since,
                )
                .await?
            }
            (None, false) => None,
        };
        if let Some(id) = existing {
            gh.update_comment(&g.repo, g.installation_id, id, &body)
                .await?;
            return Ok(Posted {
                id: id.to_string(),
                digest,
                created: false,
            });
        }
        before_create().await?;
        let created = gh
            .create_comment(&g.repo, g.installation_id, g.number, &body)
            .await?;
        Ok(Posted {
            id: created.id.to_string(),
            digest,
            created: true,
        })
    }

    async fn upsert_slack<F: Future<Output = Result<(), SendError>>>(
        &self,
        s: &SlackOrigin,
        run: &RunRecord,
        before_create: impl FnOnce() -> F,
    ) -> Result<Posted, SendError> {
        let slack = self.slack()?;
        let (text, blocks) = crate::slack::render::status_message(
            &run.id,
            &run.view,
            &s.user,
            &run.asked,
            self.public_url.as_deref(),
        );
        let digest = digest(&format!("{text}{blocks}"));
        if let Some(post) = unchanged(run, &digest) {
            return Ok(post);
        }
        let key = format!("run:{}", run.id);
        let existing = match (&run.status_post, run.post_lookup_after.is_some()) {
            (Some(ts), _) => Some(ts.clone()),
            (None, true) => {
                let oldest = format!("{}.000000", (run.created_at - 60_000) / 1000);
                slack
                    .find_posted(&s.channel, s.thread_ts.as_deref(), &key, &oldest)
                    .await?
            }
            (None, false) => None,
        };
        if let Some(ts) = existing {
            slack
                .update_message(&s.channel, &ts, &text, Some(&blocks))
                .await?;
            return Ok(Posted {
                id: ts,
                digest,
                created: false,
            });
        }
        wait_turn(slack, &s.channel).await?;
        before_create().await?;
        let ts = slack
            .post_message(
                &s.channel,
                s.thread_ts.as_deref(),
                &text,
                Some(&blocks),
                &key,
            )
            .await?;
        Ok(Posted {
            id: ts,
            digest,
            created: true,
        })
    }
}

/// Waits for a channel's turn to post, when it is near; otherwise a retryable error
/// that asks to come back then (nothing was sent).
async fn wait_turn(slack: &SlackClient, channel: &str) -> Result<(), SendError> {
    match slack.take_turn(channel) {
        Ok(wait) => {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(())
        }
        Err(later) => Err(SendError {
            retryable: true,
            retry_after: Some(later),
            ..SendError::permanent("waiting for the channel's turn to post")
        }),
    }
}

fn digest(body: &str) -> String {
    hex::encode(&sha2::Sha256::digest(body.as_bytes())[..16])
}

/// The existing post, when what it shows would not change.
fn unchanged(run: &RunRecord, digest: &str) -> Option<Posted> {
    let post = run.status_post.as_ref()?;
    (run.posted_digest.as_deref() == Some(digest)).then(|| Posted {
        id: post.clone(),
        digest: digest.to_owned(),
        created: false,
    })
}
