//! The platform-neutral records that flow through the pipeline: where a command came
//! from, who wrote it, and what a run looks like to the people who asked for it.

use crate::command::CommandLine;
use crate::ids::{ConversationId, OzRunId, RepoFullName, ThreadKey};
use crate::oz::types::{Artifact, RunState, RunStatusMessage};
use serde::{Deserialize, Serialize};

/// Who wrote a command, as their platform names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case")]
pub enum Author {
    /// A GitHub account.
    Github {
        login: String,
        /// GitHub's numeric account id (stable across renames).
        id: u64,
        /// A bot or GitHub App account.
        is_bot: bool,
    },
    /// A Slack member, by the id Slack gives them in their workspace (`U…`, `W…`).
    Slack { user: String },
    /// A person on a surface defined outside this crate, named as that surface names them.
    Custom { name: String },
}

impl Author {
    /// The name a surface addresses this person by: a GitHub login, a Slack member id,
    /// or a custom surface's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Github { login, .. } => login,
            Self::Slack { user } => user,
            Self::Custom { name } => name,
        }
    }
}

/// An author as any version stored it: tagged, or the GitHub-shaped record written
/// before authors were typed (Slack members then had id 0). Read stored authors through
/// this; it converts into an [`Author`].
#[derive(Deserialize)]
#[serde(untagged)]
pub enum StoredAuthor {
    Tagged(Author),
    Untyped {
        login: String,
        id: u64,
        is_bot: bool,
    },
}

impl From<StoredAuthor> for Author {
    fn from(stored: StoredAuthor) -> Self {
        match stored {
            StoredAuthor::Tagged(author) => author,
            // GitHub account ids start at 1; id 0 was the Slack placeholder.
            StoredAuthor::Untyped { login, id: 0, .. } => Self::Slack { user: login },
            StoredAuthor::Untyped { login, id, is_bot } => Self::Github { login, id, is_bot },
        }
    }
}

/// What on GitHub carried a command: it decides where reactions and replies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    /// A comment on an issue or on a pull request's conversation.
    Issue,
    /// A review comment on a pull request's diff: answered in its review thread.
    Review,
    /// A submitted review's body (`comment_id` is the review's id). GitHub has no
    /// reactions on reviews; answers go to the pull request's conversation.
    ReviewBody,
    /// The opening body of an issue or pull request (`comment_id` is 0); reactions go
    /// on the issue itself.
    Opening,
    /// A label added to an issue or pull request (`comment_id` is 0); reactions go on
    /// the issue itself.
    Label,
}

/// A place on GitHub: an issue or pull request, and the comment that spoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubOrigin {
    pub repo: RepoFullName,
    pub installation_id: Option<u64>,
    pub number: u64,
    pub comment_id: u64,
    pub comment_kind: CommentKind,
    /// For a review comment: the first comment of its review thread, the one GitHub's
    /// replies endpoint answers (replies to replies are not supported there).
    #[serde(default)]
    pub review_thread: Option<u64>,
}

impl GithubOrigin {
    /// The review thread answers go to: `Some` for a command on a review comment.
    pub fn review_root(&self) -> Option<u64> {
        (self.comment_kind == CommentKind::Review)
            .then(|| self.review_thread.unwrap_or(self.comment_id))
    }
}

/// A Slack `response_url`: a credential, so its `Debug` hides it and it is never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponseUrl(pub String);

impl std::fmt::Debug for ResponseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseUrl(<redacted>)")
    }
}

/// A place in Slack: a channel, and the thread and message when there are ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackOrigin {
    pub team: String,
    pub channel: String,
    /// Channel name when Slack sent it (slash commands do).
    #[serde(default)]
    pub channel_name: Option<String>,
    /// The thread: `None` for a slash command, whose run gets a new thread.
    pub thread_ts: Option<String>,
    /// The message that carried the command (reactions go on it); `None` for slash commands.
    pub message_ts: Option<String>,
    /// The user who spoke.
    pub user: String,
    /// A direct message to the bot.
    #[serde(default)]
    pub direct: bool,
    /// Where private answers go for a slash command or a button press.
    #[serde(default)]
    pub response_url: Option<ResponseUrl>,
}

/// A place on a surface defined outside this crate (an embedder's, or a test's): the
/// surface names its places and threads with its own ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomOrigin {
    /// The surface's name ([`crate::surface::Surface::name`]).
    pub surface: String,
    /// The place whose limits runs count against (a project, a channel).
    pub place: String,
    /// The conversation within the place: one active run per thread.
    pub thread: String,
    /// The message that carried the command, when there is one.
    #[serde(default)]
    pub message: Option<String>,
}

/// Where a command came from and where answers go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case")]
pub enum Origin {
    Github(GithubOrigin),
    Slack(SlackOrigin),
    Custom(CustomOrigin),
}

impl Origin {
    /// The name of the surface that serves this origin.
    pub fn surface(&self) -> &str {
        match self {
            Self::Github(_) => "github",
            Self::Slack(_) => "slack",
            Self::Custom(c) => &c.surface,
        }
    }

    /// The conversation place: one active run per thread. A Slack slash command has no
    /// thread yet; its key is the channel's.
    pub fn thread_key(&self) -> ThreadKey {
        match self {
            Self::Github(g) => ThreadKey(format!(
                "github:{}#{}",
                g.repo.as_str().to_ascii_lowercase(),
                g.number
            )),
            Self::Slack(s) => match &s.thread_ts {
                Some(ts) => ThreadKey(format!("slack:{}:{}:{ts}", s.team, s.channel)),
                None => ThreadKey(format!("slack:{}:{}", s.team, s.channel)),
            },
            Self::Custom(c) => ThreadKey(format!("{}:{}:{}", c.surface, c.place, c.thread)),
        }
    }

    /// The place whose limits a run counts against: a repository, or a Slack channel.
    pub fn place_key(&self) -> String {
        match self {
            Self::Github(g) => format!("github:{}", g.repo.as_str().to_ascii_lowercase()),
            Self::Slack(s) => format!("slack:{}:{}", s.team, s.channel),
            Self::Custom(c) => format!("{}:{}", c.surface, c.place),
        }
    }

    /// The person whose limits a run counts against, as this platform names them.
    pub fn actor_key(&self, author: &Author) -> String {
        match self {
            Self::Github(_) => format!("github:{}", author.name().to_ascii_lowercase()),
            Self::Slack(s) => format!("slack:{}:{}", s.team, author.name()),
            Self::Custom(c) => format!("{}:{}", c.surface, author.name()),
        }
    }

    /// True when the command was said in a conversation thread (a new one is made otherwise).
    pub fn has_thread(&self) -> bool {
        match self {
            Self::Github(_) | Self::Custom(_) => true,
            Self::Slack(s) => s.thread_ts.is_some(),
        }
    }
}

/// A button pressed on a status message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ButtonAction {
    /// Cancel the run.
    Cancel {
        run: crate::ids::RunRef,
        /// The status post the button was pressed on.
        #[serde(deserialize_with = "PostId::deserialize_or_slack_ts")]
        pressed_on: PostId,
    },
    /// Start the same request again.
    Retry {
        run: crate::ids::RunRef,
        #[serde(deserialize_with = "PostId::deserialize_or_slack_ts")]
        pressed_on: PostId,
    },
    /// Empty the thread's queue of instructions.
    Drop {
        run: crate::ids::RunRef,
        #[serde(deserialize_with = "PostId::deserialize_or_slack_ts")]
        pressed_on: PostId,
    },
}

impl ButtonAction {
    /// The run the button names.
    pub fn run(&self) -> &crate::ids::RunRef {
        match self {
            Self::Cancel { run, .. } | Self::Retry { run, .. } | Self::Drop { run, .. } => run,
        }
    }

    /// The status post the button was pressed on.
    pub fn pressed_on(&self) -> &PostId {
        match self {
            Self::Cancel { pressed_on, .. }
            | Self::Retry { pressed_on, .. }
            | Self::Drop { pressed_on, .. } => pressed_on,
        }
    }
}

/// A run's status post, as its surface names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PostId {
    /// A GitHub issue or pull-request comment.
    GithubComment { id: u64 },
    /// A Slack message in the run's channel.
    SlackMessage { ts: String },
    /// A post on a surface defined outside this crate.
    Custom { id: String },
}

impl PostId {
    /// Reads a post id, or the bare Slack message ts that buttons recorded before post
    /// ids were typed (commands still queued from an older version).
    fn deserialize_or_slack_ts<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Typed(PostId),
            SlackTs(String),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Typed(post) => post,
            Stored::SlackTs(ts) => Self::SlackMessage { ts },
        })
    }
}

/// What the thread is about: what the intake saw in the platform's payload (title,
/// address, labels), completed by the surface just before the run is recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadContext {
    pub title: String,
    /// The issue's or pull request's description (a Slack thread's transcript): empty as
    /// stored by the intake, read when the run is recorded.
    pub body: String,
    pub url: String,
    pub is_pull_request: bool,
    pub head_ref: Option<String>,
    pub base_ref: Option<String>,
    /// Files the request's message carries (images linked in a GitHub comment, files
    /// shared with a Slack message), downloaded when its run is recorded.
    #[serde(default)]
    pub attachments: Vec<crate::attachments::AttachmentRef>,
    /// The issue's or pull request's labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// For a command on a review comment: where in the diff it was said.
    #[serde(default)]
    pub review: Option<ReviewSpot>,
    /// What the surface read of the thread when the run was recorded (earlier
    /// comments, changed files); empty until then.
    #[serde(default)]
    pub history: ThreadHistory,
}

/// Where in a pull request's diff a review comment was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewSpot {
    pub path: String,
    /// The line in the file the comment is on, when GitHub gives one.
    pub line: Option<u64>,
    /// The diff hunk the comment is on (bounded).
    pub diff_hunk: String,
}

/// The earlier conversation of a thread, bounded, read from the platform when a run is
/// recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadHistory {
    /// Earlier comments of the thread, oldest first (not the bridge's own).
    pub comments: Vec<EarlierComment>,
    /// For a review comment: the earlier replies of its review thread, oldest first.
    pub review_replies: Vec<EarlierComment>,
    /// For a pull request: the names of its changed files (the first ones).
    pub changed_files: Vec<String>,
    /// More files changed than are listed.
    pub more_files: bool,
}

/// One earlier comment of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierComment {
    pub author: String,
    /// The author may write to the repository (a maintainer's word, not an outsider's).
    pub writer: bool,
    pub body: String,
}

/// What a person asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// A typed `/oz …` command; the dispatcher parses it into a
    /// [`crate::command::Command`] (run, cancel, status, …).
    Typed { line: CommandLine },
    /// A button pressed on a status post.
    Pressed { action: ButtonAction },
    /// A label added to an issue or pull request: do what the issue itself asks.
    Labeled { label: String },
}

/// A verified command as stored in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredInboxCommand")]
pub struct InboxCommand {
    pub origin: Origin,
    pub author: Author,
    /// Who put the command into someone else's message (a GitHub comment edited by
    /// another user); they must be allowed too.
    pub editor: Option<Author>,
    pub request: Request,
    pub context: ThreadContext,
    /// Who with write access let an outsider's request run (`/oz approve`).
    pub approved_by: Option<Author>,
}

/// An inbox command as stored: with its [`Request`], or in the form written before
/// requests were typed (a command line, and a button action beside it when pressed).
#[derive(Deserialize)]
struct StoredInboxCommand {
    origin: Origin,
    author: StoredAuthor,
    #[serde(default)]
    editor: Option<StoredAuthor>,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    line: Option<CommandLine>,
    #[serde(default)]
    action: Option<ButtonAction>,
    context: ThreadContext,
    #[serde(default)]
    approved_by: Option<Author>,
}

impl TryFrom<StoredInboxCommand> for InboxCommand {
    type Error = &'static str;

    fn try_from(stored: StoredInboxCommand) -> Result<Self, Self::Error> {
        let request = match (stored.request, stored.action, stored.line) {
            (Some(request), _, _) => request,
            (None, Some(action), _) => Request::Pressed { action },
            (None, None, Some(line)) => Request::Typed { line },
            (None, None, None) => {
                return Err("a stored command says neither what was typed nor pressed");
            }
        };
        Ok(Self {
            origin: stored.origin,
            author: stored.author.into(),
            editor: stored.editor.map(Author::from),
            request,
            context: stored.context,
            approved_by: stored.approved_by,
        })
    }
}

impl InboxCommand {
    /// The typed command line; `None` for a button press.
    pub fn typed_line(&self) -> Option<&CommandLine> {
        match &self.request {
            Request::Typed { line } => Some(line),
            Request::Pressed { .. } | Request::Labeled { .. } => None,
        }
    }
}

/// What a run looks like to its requester; a change here is a visible change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// `None` until Oz has accepted the run.
    pub state: Option<RunState>,
    pub oz_run_id: Option<OzRunId>,
    pub conversation_id: Option<ConversationId>,
    pub session_link: Option<String>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    pub status_message: Option<RunStatusMessage>,
    /// The last assistant message, once the run succeeded.
    pub summary: Option<String>,
    /// Why the run could not be started at all.
    pub start_error: Option<String>,
    /// A line about what people did to the run (cancel requested, retried).
    #[serde(default)]
    pub note: Option<String>,
    /// ozbridge's own trouble getting the run started, while it lasts.
    #[serde(default)]
    pub trouble: Option<StartTrouble>,
    /// How long the run took and what it cost, once it ended.
    #[serde(default)]
    pub figures: Option<RunFigures>,
    /// The thread's instructions waiting for this run to end, first first.
    #[serde(default)]
    pub queued: Vec<QueuedNote>,
    /// The run's steps so far, from its conversation, while it works.
    #[serde(default)]
    pub checklist: Option<Checklist>,
    /// Who with write access let an outsider's request run, as their surface
    /// mentions them.
    #[serde(default)]
    pub approved_by: Option<String>,
}

/// What a working run has done so far, as the bridge read it from the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checklist {
    pub steps: Vec<ChecklistStep>,
    /// Steps left off the list (it is bounded).
    pub more_steps: usize,
    /// Actions by name (`run_command`, `edit_files`…), the most frequent first.
    pub actions: Vec<(String, u32)>,
}

/// One line of a checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistStep {
    /// 0 for a step of the run, 1 for a step within it, and so on.
    pub depth: u8,
    pub text: String,
    /// It has a summary or a completion time.
    pub done: bool,
}

impl Checklist {
    /// "12 commands run, 4 file edits": the action counts in words.
    pub fn actions_line(&self) -> Option<String> {
        let words: Vec<String> = self
            .actions
            .iter()
            .map(|(name, count)| {
                let (one, many) = match name.as_str() {
                    "run_command" => ("command run", "commands run"),
                    "edit_files" => ("file edit", "file edits"),
                    "read_files" => ("file read", "file reads"),
                    "search_codebase" | "grep" | "file_glob" => ("search", "searches"),
                    _ => ("", ""),
                };
                match (one.is_empty(), *count) {
                    (true, n) => format!("{} ×{n}", name.replace('_', " ")),
                    (false, 1) => format!("1 {one}"),
                    (false, n) => format!("{n} {many}"),
                }
            })
            .collect();
        (!words.is_empty()).then(|| words.join(", "))
    }
}

/// One queued instruction as a status post shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedNote {
    /// Who asked, as their surface mentions them.
    pub who: String,
    /// The first line of what they asked, cut short.
    pub asked: String,
}

/// What a finished run took: its time at Oz and its cost as Oz reports it
/// (`request_usage`, in Oz's unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFigures {
    /// From the run's start at Oz (its creation when it never started) to its end.
    pub seconds: Option<i64>,
    pub inference_cost: Option<f64>,
    pub compute_cost: Option<f64>,
}

impl RunFigures {
    /// The figures of a run Oz reports as ended.
    pub fn of_ended(item: &crate::oz::types::RunItem) -> Self {
        let began = item.started_at.unwrap_or(item.created_at);
        let usage = item.request_usage.unwrap_or_default();
        let cost = |part: Option<f64>| part.filter(|c| c.is_finite() && *c >= 0.0);
        Self {
            seconds: Some((item.updated_at - began).num_seconds().max(0)),
            inference_cost: cost(usage.inference_cost),
            compute_cost: cost(usage.compute_cost),
        }
    }

    /// Inference plus compute, when Oz reported either.
    pub fn cost(&self) -> Option<f64> {
        match (self.inference_cost, self.compute_cost) {
            (None, None) => None,
            (inference, compute) => Some(inference.unwrap_or(0.0) + compute.unwrap_or(0.0)),
        }
    }

    /// "Took 12 min 4 s · cost 0.42 (inference 0.30, compute 0.12)", as far as known.
    pub fn line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(seconds) = self.seconds {
            parts.push(format!("Took {}", duration_text(seconds)));
        }
        if let Some(cost) = self.cost() {
            let mut text = format!("cost {cost:.2}");
            if let (Some(inference), Some(compute)) = (self.inference_cost, self.compute_cost) {
                text.push_str(&format!(
                    " (inference {inference:.2}, compute {compute:.2})"
                ));
            }
            parts.push(if parts.is_empty() {
                format!("Cost {}", &text["cost ".len()..])
            } else {
                text
            });
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// `seconds` as people say it: "45 s", "12 min 4 s", "2 h 5 min".
fn duration_text(seconds: i64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) if seconds == 0 => "less than a second".to_owned(),
        (0, 0) => format!("{seconds} s"),
        (0, _) if seconds == 0 => format!("{minutes} min"),
        (0, _) => format!("{minutes} min {seconds} s"),
        (_, 0) => format!("{hours} h"),
        _ => format!("{hours} h {minutes} min"),
    }
}

/// Why a run is not started yet although it was asked for, as its thread is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartTrouble {
    /// Oz does not answer; ozbridge keeps trying until this time (ms since the epoch).
    Retrying { until: i64 },
    /// Oz did not accept the run within the retry budget; an operator can resume it.
    Parked,
}

impl StartTrouble {
    /// The sentence the thread shows.
    pub fn text(&self, run: &crate::ids::RunRef) -> String {
        match self {
            Self::Retrying { until } => {
                let until = chrono::DateTime::from_timestamp_millis(*until)
                    .map(|t| t.format("%H:%M UTC").to_string())
                    .unwrap_or_else(|| "later".into());
                format!("Oz is not answering; I will keep trying until {until}.")
            }
            Self::Parked => format!(
                "Oz did not accept the run in time, so it is parked. The operator of ozbridge \
                 can resume it with `ozbridge admin retry {run}`."
            ),
        }
    }
}

impl RunView {
    /// A short label for the run's state, as people read it.
    pub fn label(&self) -> &'static str {
        if self.start_error.is_some() {
            return "❌ Could not start";
        }
        if self.trouble == Some(StartTrouble::Parked) {
            return "⏸ Parked";
        }
        match &self.state {
            None => "⏳ Starting",
            Some(RunState::Queued | RunState::Pending | RunState::Claimed) => "⏳ Queued",
            Some(RunState::InProgress) => "🏃 Working",
            Some(RunState::Blocked) => "✋ Needs your input",
            Some(RunState::Succeeded) => "✅ Done",
            Some(RunState::Failed) => "❌ Failed",
            Some(RunState::Error) => "⚠️ Errored",
            Some(RunState::Cancelled) => "🚫 Cancelled",
            Some(RunState::Other(_)) => "❔ Unknown state",
        }
    }

    /// True when the run ended with a failure that retrying may fix.
    pub fn retry_may_help(&self) -> bool {
        matches!(self.state, Some(RunState::Failed | RunState::Error))
            && self.status_message.as_ref().and_then(|m| m.retryable) == Some(true)
    }

    /// True when nothing about the run will change any more.
    pub fn is_final(&self) -> bool {
        self.start_error.is_some() || self.state.as_ref().is_some_and(RunState::is_terminal)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn figures_read_as_people_say_them() {
        assert_eq!(duration_text(0), "less than a second");
        assert_eq!(duration_text(45), "45 s");
        assert_eq!(duration_text(720), "12 min");
        assert_eq!(duration_text(724), "12 min 4 s");
        assert_eq!(duration_text(7200), "2 h");
        assert_eq!(duration_text(7_500), "2 h 5 min");
        let both = RunFigures {
            seconds: Some(724),
            inference_cost: Some(0.3),
            compute_cost: Some(0.12),
        };
        assert_eq!(
            both.line().as_deref(),
            Some("Took 12 min 4 s · cost 0.42 (inference 0.30, compute 0.12)")
        );
        let cost_only = RunFigures {
            seconds: None,
            inference_cost: Some(0.3),
            compute_cost: None,
        };
        assert_eq!(cost_only.line().as_deref(), Some("Cost 0.30"));
        assert_eq!(RunFigures::default().line(), None);
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn authors_written_before_they_were_typed_are_read_as_their_platform() {
        let read = |value| Author::from(serde_json::from_value::<StoredAuthor>(value).unwrap());
        let github = read(json!({"login": "alice", "id": 7, "is_bot": false}));
        assert_eq!(
            github,
            Author::Github {
                login: "alice".into(),
                id: 7,
                is_bot: false
            }
        );
        let slack = read(json!({"login": "U123", "id": 0, "is_bot": false}));
        assert_eq!(
            slack,
            Author::Slack {
                user: "U123".into()
            }
        );
        for author in [github, slack, Author::Custom { name: "kim".into() }] {
            assert_eq!(read(serde_json::to_value(&author).unwrap()), author);
        }
    }

    #[test]
    fn commands_queued_by_an_older_version_keep_what_was_asked() {
        let origin = json!({"platform": "custom", "surface": "board", "place": "p", "thread": "t"});
        let author = json!({"login": "U1", "id": 0, "is_bot": false});
        let typed: InboxCommand = serde_json::from_value(json!({
            "origin": origin, "author": author, "context": {"title": "", "body": "", "url": "",
                "is_pull_request": false, "head_ref": null, "base_ref": null},
            "line": {"args": "fix it", "continuation": ""}, "action": null
        }))
        .unwrap();
        assert_eq!(typed.typed_line().map(|l| l.args.as_str()), Some("fix it"));
        let pressed: InboxCommand = serde_json::from_value(json!({
            "origin": origin, "author": author, "context": {"title": "", "body": "", "url": "",
                "is_pull_request": false, "head_ref": null, "base_ref": null},
            "line": {"args": "", "continuation": ""},
            "action": {"action": "cancel", "run": "r-1", "pressed_on": "5.5"}
        }))
        .unwrap();
        assert_eq!(
            pressed.request,
            Request::Pressed {
                action: ButtonAction::Cancel {
                    run: crate::ids::RunRef("r-1".into()),
                    pressed_on: PostId::SlackMessage { ts: "5.5".into() },
                }
            }
        );
        let again: InboxCommand =
            serde_json::from_value(serde_json::to_value(&pressed).unwrap()).unwrap();
        assert_eq!(again, pressed);
    }
}
