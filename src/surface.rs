//! The one interface between the pipeline and the places people talk (GitHub, Slack, …):
//! everything a surface means (access policy, thread context, prompt values, marks,
//! replies, private notes, moment texts and the status post) is behind [`Surface`], so the
//! pipeline names no platform. A surface lives in its own module and registers here.

use crate::domain::{Author, InboxCommand, Origin, PostId, RunView, ThreadContext};
use crate::retry::{Breaker, CallFailure};
use crate::store::RunRecord;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The moments marked with a reaction on the command's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Received,
    Succeeded,
    Failed,
    Cancelled,
    Acknowledged,
}

/// Notable moments of a run, told in its thread by surfaces that post them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moment {
    /// The agent started working (for the first time).
    Started,
    /// The agent opened a pull request.
    PullRequest { url: String, branch: String },
    /// The agent waits for the requester.
    NeedsInput,
    /// The run ended (any terminal state).
    Finished,
}

/// Whether an author may start runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// Refused; the text is shown to the user.
    Denied(String),
    /// Not allowed alone, but someone who is may approve their request (`/oz approve`).
    Outsider,
}

/// Whether a command is handled at all in its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Not a command there (a trigger turned off): nothing is said; the reason is for
    /// the log.
    Ignore(&'static str),
    /// Nothing may start there now; the text tells the requester why.
    Refuse(String),
}

/// A rendered status post: its text, and structured blocks where the surface has them.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusBody {
    pub text: String,
    pub blocks: Option<serde_json::Value>,
}

/// Defaults a place (a repository, a channel) sets for its runs; a command's options
/// beat them, and they beat the service's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceDefaults {
    pub environment_id: Option<String>,
    pub model_id: Option<String>,
    pub skill: Option<String>,
    pub harness: Option<crate::oz::types::HarnessKind>,
    pub session_access: Option<crate::oz::types::PublicAccess>,
}

/// The pieces of a run's prompt a surface gives: its template and the values of the
/// template's placeholders (user text already bounded with [`crate::pipeline::prompt::untrusted`]).
#[derive(Debug, Clone)]
pub struct PromptParts {
    pub template: String,
    pub values: Vec<(&'static str, String)>,
    /// The run's title in Oz.
    pub title: String,
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

    /// A failure that may pass (a store hiccup, a platform's wait).
    pub fn transient(detail: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::permanent(detail)
        }
    }

    /// The failure of a platform call, classified by its client.
    pub fn from_call(error: &impl CallFailure) -> Self {
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

/// A place people talk, as the pipeline uses it. Every method takes the origin of a
/// command or run of this surface; texts given to it are ozbridge's Markdown, which the
/// surface turns into its own markup.
#[async_trait::async_trait]
pub trait Surface: Send + Sync {
    /// The name [`Origin::surface`] gives for this surface's origins.
    fn name(&self) -> &str;

    /// The breaker of the surface's API client, to resume waiting work when it recovers.
    fn breaker(&self) -> Option<Arc<Breaker>> {
        None
    }

    /// How long a post without an answer may still land: a lookup may conclude it did
    /// not only after this.
    fn doubt_window(&self) -> Duration;

    /// How to address `author` in a text.
    fn mention(&self, author: &Author) -> String;

    /// What a place is called in a refusal ("this repository").
    fn place_name(&self) -> &'static str;

    /// The last paragraph of `help`: who may start agents, and how.
    fn help_note(&self) -> &'static str;

    /// Whether the place handles `command` at all (its settings, its triggers); asked
    /// before anything else is done with it.
    async fn admit(&self, _command: &InboxCommand) -> Result<Admission, SendError> {
        Ok(Admission::Go)
    }

    /// Lines `status` adds about the place's settings (keys it set that are ignored).
    async fn status_notes(&self, _origin: &Origin) -> Vec<String> {
        Vec::new()
    }

    /// Checks that `author` may start runs from `origin`.
    async fn access(&self, origin: &Origin, author: &Author) -> Result<Access, SendError>;

    /// Completes the thread context the intake could not see or did not keep, just
    /// before the run is recorded. What the surface can do without, it leaves out with a
    /// warning; an error means the run cannot start well yet: a retryable one makes the
    /// command wait and try again, any other gives it up.
    async fn complete_context(
        &self,
        origin: &Origin,
        context: &mut ThreadContext,
    ) -> Result<(), SendError>;

    /// Downloads a file the request's message carries, with the platform's credentials
    /// and only from its file hosts, refusing it once it passes `limit` bytes. A surface
    /// whose messages carry no files refuses every one.
    async fn download_attachment(
        &self,
        _origin: &Origin,
        _file: &crate::attachments::AttachmentRef,
        _limit: u64,
    ) -> Result<Vec<u8>, crate::attachments::Skipped> {
        Err(crate::attachments::Skipped::ForeignHost)
    }

    /// The place's defaults for a run.
    fn place_defaults(&self, origin: &Origin) -> PlaceDefaults;

    /// The template, placeholder values and title of the prompt for `command`, whose
    /// request is `request`.
    fn prompt(&self, command: &InboxCommand, request: &str) -> PromptParts;

    /// True when a run's status post goes out before the run is created (it proves the
    /// bot can post there, and it starts the run's thread).
    fn posts_status_first(&self) -> bool;

    /// Marks the command's message (a reaction); nothing where there is no message.
    async fn mark(&self, origin: &Origin, mark: Mark) -> Result<(), SendError>;

    /// Waits for the origin's turn to post when the surface paces posts; `Err(wait)`:
    /// the turn is far off, come back after `wait` (nothing was sent).
    async fn take_turn(&self, _origin: &Origin) -> Result<(), Duration> {
        Ok(())
    }

    /// Posts `text` in the origin's thread (privately when the origin has nowhere public
    /// to answer). `maybe_posted`: an earlier try may have landed; look for it first.
    async fn reply(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError>;

    /// Tells only the command's author (where the surface can; otherwise a reply).
    async fn private(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError>;

    /// The text that tells `moment` of `run` in its thread, already in the surface's
    /// markup; `None` when the surface does not post that moment.
    async fn moment(&self, run: &RunRecord, view: &RunView, moment: &Moment) -> Option<String>;

    /// Where the replies about `run` go; `None` while that place does not exist yet
    /// (a run whose thread begins with its status post).
    fn run_thread(&self, run: &RunRecord) -> Option<Origin>;

    /// Posts a moment's text (from [`Surface::moment`]) in a run's thread (from
    /// [`Surface::run_thread`]), once.
    async fn post_moment(
        &self,
        thread: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError>;

    /// Renders the run's status post.
    fn render_status(&self, run: &RunRecord) -> StatusBody;

    /// Looks for the run's status post, created by an attempt whose answer was lost.
    async fn find_status(&self, run: &RunRecord) -> Result<Option<PostId>, SendError>;

    /// Brings the run's status post to `body`.
    async fn update_status(
        &self,
        run: &RunRecord,
        post: &PostId,
        body: &StatusBody,
    ) -> Result<(), SendError>;

    /// Creates the run's status post.
    async fn create_status(&self, run: &RunRecord, body: &StatusBody) -> Result<PostId, SendError>;

    /// The origin a run takes once its status post exists, when that post starts the
    /// run's thread (a Slack slash command's run); `None` when nothing changes.
    fn thread_from_post(&self, _origin: &Origin, _post: &PostId) -> Option<Origin> {
        None
    }
}

/// The configured surfaces, found by the origins they serve.
#[derive(Clone, Default)]
pub struct Surfaces {
    list: Vec<Arc<dyn Surface>>,
}

impl Surfaces {
    /// The surfaces in `list` (one per name).
    pub fn new(list: Vec<Arc<dyn Surface>>) -> Self {
        Self { list }
    }

    /// Adds a surface.
    pub fn with(mut self, surface: Arc<dyn Surface>) -> Self {
        self.list.push(surface);
        self
    }

    /// The surface that serves `origin`; an error (permanent: nothing can be sent
    /// there) when it is not configured.
    pub fn of(&self, origin: &Origin) -> Result<&dyn Surface, SendError> {
        let name = origin.surface();
        self.list
            .iter()
            .find(|s| s.name() == name)
            .map(|s| s.as_ref())
            .ok_or_else(|| SendError::permanent(format!("{name} is not configured")))
    }

    /// The breakers of every surface's client.
    pub fn breakers(&self) -> Vec<Arc<Breaker>> {
        self.list.iter().filter_map(|s| s.breaker()).collect()
    }
}
