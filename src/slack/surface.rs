//! Slack as a surface: workspace, channel and user policy, the thread's earlier messages
//! for the prompt, reactions, thread replies and private (ephemeral or `response_url`)
//! notes, moment replies, and the run's status message with its buttons, which goes out
//! first (it proves the bot can post there and, for a slash command, starts the thread).

use super::render::{self, escape, mrkdwn};
use super::{SlackClient, SlackError};
use crate::config::{ChannelSettings, SlackPolicy};
use crate::domain::{Author, InboxCommand, Origin, PostId, RunView, SlackOrigin, ThreadContext};
use crate::oz::types::RunState;
use crate::pipeline::prompt::{MAX_BODY_CHARS, MAX_TITLE_CHARS, fence_safe, untrusted};
use crate::retry::Breaker;
use crate::store::RunRecord;
use crate::surface::{
    Access, Mark, Moment, PlaceDefaults, PromptParts, SendError, StatusBody, Surface,
};
use crate::text::truncate;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Thread messages read for a prompt, and their bounds.
const MAX_THREAD_MESSAGES: u32 = 50;
const MAX_THREAD_MESSAGE_CHARS: usize = 1_000;
const MAX_THREAD_CHARS: usize = 8_000;
/// How far before a run's creation a lost status message is looked for.
const LOOKUP_SLACK_MS: i64 = 60_000;

/// What the Slack surface is configured with.
pub struct SlackSurfaceSettings {
    pub policy: SlackPolicy,
    /// Per-channel run defaults, keyed by channel id.
    pub channels: BTreeMap<String, ChannelSettings>,
    pub prompt_template: String,
    /// Public base URL of ozbridge, for artifact download links.
    pub public_url: Option<String>,
    pub doubt_window: Duration,
}

/// The Slack surface over its client.
pub struct SlackSurface {
    client: SlackClient,
    settings: SlackSurfaceSettings,
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

/// A failed first post, with advice that fits the conversation: the bot cannot join a
/// direct message between other people, so "invite me" would not help there.
fn cannot_post_here(s: &SlackOrigin, error: SlackError) -> SendError {
    let outside = matches!(&error, SlackError::Api(code) if matches!(code.as_str(), "not_in_channel" | "channel_not_found"));
    let mut send_error = SendError::from(error);
    // A DM with the bot is always open to it: a DM it cannot post in is between others.
    let between_people = s.channel.starts_with('D');
    let group_message = s
        .channel_name
        .as_deref()
        .is_some_and(|name| name.starts_with("mpdm-"));
    if outside && (between_people || group_message) {
        send_error.user_text = Some(
            "I cannot post in a direct message between other people. Use `/oz` in a channel I am in, \
             or send me a direct message."
                .into(),
        );
    }
    send_error
}

fn slack(origin: &Origin) -> Result<&SlackOrigin, SendError> {
    match origin {
        Origin::Slack(s) => Ok(s),
        _ => Err(SendError::permanent("not a Slack origin")),
    }
}

fn message_ts(post: &PostId) -> Result<&str, SendError> {
    match post {
        PostId::SlackMessage { ts } => Ok(ts),
        _ => Err(SendError::permanent("not a Slack message")),
    }
}

/// The reaction that stands for `mark` on Slack.
fn reaction(mark: Mark) -> &'static str {
    match mark {
        Mark::Received => "eyes",
        Mark::Succeeded => "white_check_mark",
        Mark::Failed => "x",
        Mark::Cancelled => "no_entry_sign",
        Mark::Acknowledged => "ok_hand",
    }
}

/// The dedupe key a status message carries in its metadata.
fn status_key(run: &RunRecord) -> String {
    format!("run:{}", run.id)
}

impl SlackSurface {
    /// The surface over `client`.
    pub fn new(client: SlackClient, settings: SlackSurfaceSettings) -> Self {
        Self { client, settings }
    }

    /// Posts `text` (mrkdwn) in a thread (or the channel), once.
    async fn post_once(
        &self,
        s: &SlackOrigin,
        thread: Option<&str>,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        if maybe_posted
            && self
                .client
                .find_posted(&s.channel, thread, key, "0")
                .await?
                .is_some()
        {
            return Ok(());
        }
        self.client
            .post_message(&s.channel, thread, text, None, key)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Surface for SlackSurface {
    fn name(&self) -> &str {
        "slack"
    }

    fn breaker(&self) -> Option<Arc<Breaker>> {
        Some(self.client.breaker().clone())
    }

    fn doubt_window(&self) -> Duration {
        self.settings.doubt_window
    }

    fn mention(&self, author: &Author) -> String {
        format!("<@{}>", author.name())
    }

    fn place_name(&self) -> &'static str {
        "this channel"
    }

    fn help_note(&self) -> &'static str {
        "In a thread, mention me instead: `@oz <what to do>` carries the thread's messages to the agent."
    }

    async fn access(&self, origin: &Origin, _author: &Author) -> Result<Access, SendError> {
        let s = slack(origin)?;
        Ok(
            match self
                .settings
                .policy
                .refusal(&s.team, &s.channel, &s.user, s.direct)
            {
                Some(reason) => Access::Denied(reason),
                None => Access::Allowed,
            },
        )
    }

    /// The channel's name, and the thread's earlier messages as a transcript.
    async fn complete_context(
        &self,
        origin: &Origin,
        context: &mut ThreadContext,
    ) -> Result<(), SendError> {
        let s = slack(origin)?;
        context.title = s
            .channel_name
            .as_ref()
            .map(|n| format!("#{n}"))
            .unwrap_or_else(|| format!("<#{}>", s.channel));
        let Some(thread) = &s.thread_ts else {
            return Ok(());
        };
        // Best effort: without the transcript the run starts from the request alone.
        let messages = match (self.client)
            .replies(&s.channel, thread, MAX_THREAD_MESSAGES)
            .await
        {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "could not read the thread's earlier messages");
                return Ok(());
            }
        };
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
                truncate(&message.text, MAX_THREAD_MESSAGE_CHARS)
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

    async fn download_attachment(
        &self,
        _origin: &Origin,
        file: &crate::attachments::AttachmentRef,
        limit: u64,
    ) -> Result<Vec<u8>, crate::attachments::Skipped> {
        self.client.download_file(&file.url, limit).await
    }

    fn place_defaults(&self, origin: &Origin) -> PlaceDefaults {
        let channel = slack(origin)
            .ok()
            .and_then(|s| self.settings.channels.get(&s.channel));
        PlaceDefaults {
            environment_id: channel.and_then(|c| c.environment_id.clone()),
            model_id: channel.and_then(|c| c.model_id.clone()),
            skill: channel.and_then(|c| c.skill.clone()),
            harness: channel.and_then(|c| c.harness),
            session_access: channel.and_then(|c| c.session_access),
        }
    }

    fn prompt(&self, command: &InboxCommand, request: &str) -> PromptParts {
        let ctx = &command.context;
        let user = slack(&command.origin)
            .map(|s| s.user.clone())
            .unwrap_or_default();
        let body = untrusted(&ctx.body, MAX_BODY_CHARS);
        let first = request.lines().next().unwrap_or_default();
        PromptParts {
            template: self.settings.prompt_template.clone(),
            values: vec![
                ("channel", fence_safe(&ctx.title)),
                ("author", user),
                ("command", crate::pipeline::prompt::request_value(request)),
                ("thread", body.clone()),
                ("body", body),
                ("title", fence_safe(&ctx.title)),
            ],
            title: truncate(
                &format!("Slack {}: {}", ctx.title, truncate(first, 80)),
                MAX_TITLE_CHARS,
            ),
        }
    }

    fn posts_status_first(&self) -> bool {
        true
    }

    /// A slash command has no message to mark.
    async fn mark(&self, origin: &Origin, mark: Mark) -> Result<(), SendError> {
        let s = slack(origin)?;
        if let Some(ts) = &s.message_ts {
            self.client
                .add_reaction(&s.channel, ts, reaction(mark))
                .await?;
        }
        Ok(())
    }

    /// Slack allows about one message per second per channel: a near turn is waited
    /// for, a far one is given back.
    async fn take_turn(&self, origin: &Origin) -> Result<(), Duration> {
        let Ok(s) = slack(origin) else {
            return Ok(());
        };
        let wait = self.client.take_turn(&s.channel)?;
        if !wait.is_zero() {
            self.client.clock().sleep(wait).await;
        }
        Ok(())
    }

    /// In the thread; for a slash command (no thread), privately through its
    /// `response_url`.
    async fn reply(
        &self,
        origin: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        let s = slack(origin)?;
        let text = &mrkdwn(text);
        match (&s.thread_ts, &s.response_url) {
            (Some(thread), _) => {
                self.post_once(s, Some(thread), key, text, maybe_posted)
                    .await
            }
            (None, Some(url)) => Ok(self.client.respond(&url.0, text).await?),
            (None, None) => self.post_once(s, None, key, text, maybe_posted).await,
        }
    }

    async fn private(
        &self,
        origin: &Origin,
        _key: &str,
        text: &str,
        _maybe_posted: bool,
    ) -> Result<(), SendError> {
        let s = slack(origin)?;
        let text = &mrkdwn(text);
        match &s.response_url {
            Some(url) => self.client.respond(&url.0, text).await?,
            None => {
                self.client
                    .post_ephemeral(&s.channel, &s.user, text)
                    .await?
            }
        }
        Ok(())
    }

    async fn moment(&self, run: &RunRecord, view: &RunView, moment: &Moment) -> Option<String> {
        let who = self.mention(&run.requester);
        Some(match moment {
            Moment::Started => {
                let link = view
                    .session_link
                    .as_ref()
                    .map(|l| format!(" <{l}|Open the live session>"))
                    .unwrap_or_default();
                format!(":runner: The agent started working.{link}")
            }
            Moment::PullRequest { url, branch } => format!(
                ":git-pull-request: Opened a pull request: {url} (branch `{}`)",
                escape(branch)
            ),
            Moment::NeedsInput => {
                let reason = view
                    .status_message
                    .as_ref()
                    .map(|m| format!(": {}", escape(&m.message)))
                    .unwrap_or_default();
                format!(":raised_hand: {who}, the agent needs you{reason}.")
            }
            Moment::Finished => match &view.state {
                Some(RunState::Succeeded) => {
                    let summary = view.summary.as_deref().unwrap_or_default();
                    format!(
                        ":white_check_mark: {who}, the agent finished: {}",
                        escape(&truncate(summary, 500))
                    )
                }
                Some(RunState::Cancelled) => ":no_entry_sign: The run was cancelled.".into(),
                _ => {
                    let reason = view
                        .status_message
                        .as_ref()
                        .map(|m| m.message.as_str())
                        .unwrap_or("no reason given");
                    format!(":x: {who}, the run failed: {}", escape(reason))
                }
            },
        })
    }

    /// The command's thread, or the thread the run's status message started.
    fn run_thread(&self, run: &RunRecord) -> Option<Origin> {
        let s = slack(&run.origin).ok()?;
        if s.thread_ts.is_some() {
            return Some(run.origin.clone());
        }
        let ts = message_ts(run.status_post.as_ref()?).ok()?;
        Some(Origin::Slack(SlackOrigin {
            thread_ts: Some(ts.to_owned()),
            ..s.clone()
        }))
    }

    async fn post_moment(
        &self,
        thread: &Origin,
        key: &str,
        text: &str,
        maybe_posted: bool,
    ) -> Result<(), SendError> {
        let s = slack(thread)?;
        self.post_once(s, s.thread_ts.as_deref(), key, text, maybe_posted)
            .await
    }

    fn render_status(&self, run: &RunRecord) -> StatusBody {
        let user = slack(&run.origin)
            .map(|s| s.user.as_str())
            .unwrap_or_default();
        let (text, blocks) = render::status_message(
            &run.id,
            &run.view,
            user,
            &run.asked,
            self.settings.public_url.as_deref(),
        );
        StatusBody {
            text,
            blocks: Some(blocks),
        }
    }

    async fn find_status(&self, run: &RunRecord) -> Result<Option<PostId>, SendError> {
        let s = slack(&run.origin)?;
        let oldest = format!("{}.000000", (run.created_at - LOOKUP_SLACK_MS) / 1000);
        let found = self
            .client
            .find_posted(
                &s.channel,
                s.thread_ts.as_deref(),
                &status_key(run),
                &oldest,
            )
            .await?;
        Ok(found.map(|ts| PostId::SlackMessage { ts }))
    }

    async fn update_status(
        &self,
        run: &RunRecord,
        post: &PostId,
        body: &StatusBody,
    ) -> Result<(), SendError> {
        let s = slack(&run.origin)?;
        self.client
            .update_message(
                &s.channel,
                message_ts(post)?,
                &body.text,
                body.blocks.as_ref(),
            )
            .await?;
        Ok(())
    }

    async fn create_status(&self, run: &RunRecord, body: &StatusBody) -> Result<PostId, SendError> {
        let s = slack(&run.origin)?;
        let ts = self
            .client
            .post_message(
                &s.channel,
                s.thread_ts.as_deref(),
                &body.text,
                body.blocks.as_ref(),
                &status_key(run),
            )
            .await
            .map_err(|error| cannot_post_here(s, error))?;
        Ok(PostId::SlackMessage { ts })
    }

    /// A slash command's status message is the root of its run's thread.
    fn thread_from_post(&self, origin: &Origin, post: &PostId) -> Option<Origin> {
        let s = slack(origin).ok()?;
        if s.thread_ts.is_some() {
            return None;
        }
        let ts = message_ts(post).ok()?;
        Some(Origin::Slack(SlackOrigin {
            thread_ts: Some(ts.to_owned()),
            ..s.clone()
        }))
    }
}
