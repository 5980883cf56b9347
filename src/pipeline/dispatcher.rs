//! The dispatcher: claims commands from the inbox, checks who asked, answers the
//! informational commands, cancels, and records run intents for the starter.

use super::catalog::Catalog;
use super::outbox::Outbox;
use super::prompt::{RunDefaults, build_request, reference_line};
use super::texts;
use super::work::{Claimant, RetryBudget, claimed, work_on};
use crate::command::{Command, CommandLine, RunOptions, parse};
use crate::config::RunLimits;
use crate::domain::{Author, ButtonAction, Origin, QueuedNote, Request, RunView};
use crate::ids::{RunRef, ThreadKey};
use crate::oz::{ListAgentsQuery, OzClient, OzError};
use crate::store::{ClaimedCommand, RunEdit, RunIntent, RunPhase, RunRecord, Store};
use crate::surface::{Access, Admission, Mark, SendError, Surfaces};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Turns commands into answers, cancellations and run intents.
pub(super) struct Dispatcher {
    pub store: Store,
    pub oz: OzClient,
    pub surfaces: Surfaces,
    pub outbox: Outbox,
    /// Wakes the starter: a run intent was recorded.
    pub starter: Arc<Notify>,
    pub claimant: Claimant,
    pub retries: RetryBudget,
    /// Oz's models and skills, for checking `--model` and `--skill`.
    pub catalog: Catalog,
    /// The command word (`/oz`), for help and error texts.
    pub trigger: String,
    /// The label and the service-wide defaults of every run.
    pub run_defaults: RunDefaults,
    /// New runs are refused (`OZBRIDGE_PAUSED`); the database's switch is read too.
    pub paused: bool,
    /// Caps on runs per person, per place and per day.
    pub limits: RunLimits,
    /// When (clock ms) this dispatcher last looked for expired approval requests.
    pub approvals_checked: AtomicI64,
}

/// How often (ms) idle dispatchers look for approval requests that expired.
const APPROVAL_SWEEP_MS: i64 = 60_000;

/// What became of a handled command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Answered or started: finished.
    Done,
    /// Kept as its thread's next instruction, until the run before it ends.
    Queued,
    /// An outsider's request, kept until someone with write access approves it.
    Awaiting,
}

/// How a retry was asked for.
#[derive(Clone, Copy)]
enum RetryAsked {
    /// `/oz retry` in the thread: the new run is its writer's.
    ByCommand,
    /// The Retry button on the run's status message.
    ByButton,
}

/// Why a command was not finished.
enum Failure {
    /// Try again later.
    Retry { wait: Duration, reason: String },
    /// Give up. `reason` is for the log; the requester reads `user`, or an apology.
    GiveUp {
        reason: String,
        user: Option<String>,
    },
}

impl From<crate::store::StoreError> for Failure {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Retry {
            wait: Duration::from_secs(1),
            reason: error.to_string(),
        }
    }
}

impl From<SendError> for Failure {
    fn from(error: SendError) -> Self {
        if error.retryable {
            Self::Retry {
                wait: error.retry_after.unwrap_or(Duration::from_secs(2)),
                reason: error.detail,
            }
        } else {
            Self::GiveUp {
                reason: error.detail,
                user: error.user_text,
            }
        }
    }
}

impl From<OzError> for Failure {
    fn from(error: OzError) -> Self {
        if error.is_retryable() {
            Self::Retry {
                wait: error.retry_after().unwrap_or(Duration::from_secs(2)),
                reason: error.to_string(),
            }
        } else {
            Self::GiveUp {
                reason: error.to_string(),
                user: None,
            }
        }
    }
}

impl Dispatcher {
    /// Handles one due command, or else lets the first queued instruction of a thread
    /// whose run has ended go; false when there was neither.
    pub async fn step(&self) -> bool {
        let claim = (self.store).claim_command(&self.claimant.id, self.claimant.lease);
        let Some(command) = claimed("command", claim).await else {
            if self.expire_approvals().await {
                return true;
            }
            return match self.store.release_next_queued().await {
                Ok(Some(thread)) => {
                    tracing::info!(%thread, "the thread's run ended; its next queued instruction starts");
                    true
                }
                Ok(None) => false,
                Err(error) => {
                    tracing::warn!(%error, "could not look for queued instructions");
                    false
                }
            };
        };
        let command = &command;
        work_on("command", self.dispatch(command), |reason| async move {
            tracing::error!(command = %command.id, %reason, "command parked: handling it panicked");
            self.park(command, &reason, texts::broke).await
        })
        .await;
        true
    }

    /// How `author` is addressed on `origin`'s surface.
    fn mention(&self, origin: &Origin, author: &Author) -> String {
        match self.surfaces.of(origin) {
            Ok(surface) => surface.mention(author),
            Err(_) => author.name().to_owned(),
        }
    }

    /// Handles a claimed command and records the outcome.
    async fn dispatch(&self, claimed: &ClaimedCommand) -> crate::store::StoreResult<()> {
        match self.handle(claimed).await {
            Ok(Handled::Done) => self.store.finish_command(&claimed.id, None).await,
            Ok(Handled::Queued) => {
                self.store.queue_command(&claimed.id).await?;
                self.show_queue(&claimed.command.origin.thread_key()).await
            }
            Ok(Handled::Awaiting) => self.store.await_approval(&claimed.id).await,
            Err(Failure::Retry { wait, reason }) => {
                self.retry_or_park(claimed, wait, &reason).await
            }
            Err(Failure::GiveUp { reason, user }) => {
                tracing::warn!(command = %claimed.id, %reason, "command given up");
                crate::telemetry::command("any", "failed");
                let origin = &claimed.command.origin;
                let who = self.mention(origin, &claimed.command.author);
                let text = texts::gave_up(&who, user.as_deref());
                self.outbox
                    .reply(format!("gave-up:{}", claimed.id), origin, text)
                    .await?;
                self.store.finish_command(&claimed.id, Some(&reason)).await
            }
        }
    }

    /// Schedules another try of a command, or parks it (and tells its thread) when its
    /// retry budget is spent.
    async fn retry_or_park(
        &self,
        claimed: &ClaimedCommand,
        wait: Duration,
        reason: &str,
    ) -> crate::store::StoreResult<()> {
        let give_up_at = self.retries.give_up_at(claimed.give_up_at);
        if self.retries.now() >= give_up_at {
            tracing::warn!(command = %claimed.id, %reason, "command parked: its retry budget is spent");
            return self.park(claimed, reason, texts::parked).await;
        }
        tracing::info!(command = %claimed.id, attempt = claimed.attempts, %reason, "command will be retried");
        let attempt = u32::try_from(claimed.attempts).unwrap_or(u32::MAX);
        let wait = wait.max(self.retries.backoff.delay(attempt, None));
        self.store
            .retry_command(&claimed.id, wait, reason, give_up_at)
            .await
    }

    /// Parks a command and tells its thread (in words `say` writes for the requester
    /// and the command's id); `ozbridge admin retry` takes it again.
    async fn park(
        &self,
        claimed: &ClaimedCommand,
        reason: &str,
        say: fn(&str, &str) -> String,
    ) -> crate::store::StoreResult<()> {
        crate::telemetry::command("any", "parked");
        let origin = &claimed.command.origin;
        let who = self.mention(origin, &claimed.command.author);
        let text = say(&who, claimed.id.as_str());
        self.outbox
            .reply(format!("parked:{}", claimed.id), origin, text)
            .await?;
        self.store.park_command(&claimed.id, reason).await
    }

    async fn handle(&self, claimed: &ClaimedCommand) -> Result<Handled, Failure> {
        let command = &claimed.command;
        let origin = &command.origin;
        let surface = self.surfaces.of(origin)?;
        let who = surface.mention(&command.author);
        match surface.admit(command).await? {
            Admission::Go => {}
            Admission::Ignore(reason) => {
                tracing::info!(command = %claimed.id, reason, "command not handled here");
                return Ok(Handled::Done);
            }
            Admission::Refuse(text) => {
                crate::telemetry::command("any", "refused");
                let key = format!("refused:{}", claimed.id);
                self.outbox.reply(key, origin, text).await?;
                return Ok(Handled::Done);
            }
        }
        self.outbox
            .mark(
                format!("mark:{}:received", claimed.id),
                origin,
                Mark::Received,
            )
            .await?;
        // Everyone who wrote the command must be allowed: its author (or, for an
        // outsider, whoever approved their request), and whoever edited it into their
        // message.
        let refusal = match surface.access(origin, &command.author).await? {
            Access::Allowed => None,
            Access::Denied(text) => Some(text),
            Access::Outsider => match &command.approved_by {
                Some(approver) => match surface.access(origin, approver).await? {
                    Access::Allowed => None,
                    _ => Some(texts::approval_void(&who)),
                },
                None if self.is_run_request(command) => {
                    return self.await_approval(claimed, &who).await;
                }
                None => Some(texts::outsider_refused(&who)),
            },
        };
        let refusal = match (refusal, &command.editor) {
            (None, Some(editor)) => match surface.access(origin, editor).await? {
                Access::Allowed => None,
                Access::Denied(text) => Some(text),
                Access::Outsider => Some(texts::outsider_refused(&surface.mention(editor))),
            },
            (refusal, _) => refusal,
        };
        if let Some(text) = refusal {
            crate::telemetry::command("any", "denied");
            self.outbox
                .private(format!("denied:{}", claimed.id), origin, text)
                .await?;
            return Ok(Handled::Done);
        }
        let line = match &command.request {
            Request::Pressed { action } => {
                self.press(claimed, action).await?;
                return Ok(Handled::Done);
            }
            Request::Labeled { label } => {
                let line = CommandLine {
                    args: format!("label `{label}` added"),
                    continuation: String::new(),
                };
                let prompt = texts::label_request(label);
                return self
                    .record_run(claimed, &line, &prompt, &RunOptions::default())
                    .await;
            }
            Request::Typed { line } => line,
        };
        let trigger = &self.trigger;
        let reply =
            |text: String| (self.outbox).reply(format!("reply:{}", claimed.id), origin, text);
        match parse(line) {
            Err(error) => {
                crate::telemetry::command("invalid", "answered");
                reply(texts::command_error(&who, &error, trigger)).await?;
            }
            Ok(Command::Help) => reply(texts::help(trigger, surface.help_note())).await?,
            Ok(Command::Models) => reply(texts::models(&self.oz.list_models().await?)).await?,
            Ok(Command::Agents) => {
                reply(texts::agents(
                    &self.oz.list_agents(&ListAgentsQuery::default()).await?,
                ))
                .await?
            }
            Ok(Command::Status) => {
                let latest = self.latest_run_here(origin).await?;
                let mut text = texts::status(latest.as_ref().map(|r| &r.view));
                for note in surface.status_notes(origin).await {
                    text.push_str(&format!("\n\nNote: {note}"));
                }
                reply(text).await?;
            }
            Ok(Command::Approve) => {
                let approved = self.approve(claimed).await?;
                reply(texts::approved(&who, &approved)).await?;
            }
            Ok(Command::Deny) => {
                if self.deny(claimed, &who).await? == 0 {
                    reply(texts::nothing_to_deny(&who)).await?;
                }
            }
            Ok(Command::Cancel) => {
                let latest = self.latest_run_here(origin).await?;
                match latest.filter(|r| r.phase != RunPhase::Done) {
                    Some(run) => self.cancel(claimed, &run).await?,
                    None => {
                        reply(format!("{who}, there is no active Oz run here to cancel.")).await?
                    }
                }
            }
            Ok(Command::Retry) => match self.latest_run_here(origin).await? {
                Some(run) => {
                    self.retry(claimed, &run, &who, RetryAsked::ByCommand)
                        .await?
                }
                None => reply(texts::nothing_to_retry(&who)).await?,
            },
            Ok(Command::Drop) => {
                let dropped = self.drop_queue(&origin.thread_key()).await?;
                reply(texts::dropped(&who, dropped)).await?;
            }
            Ok(Command::Run { prompt, options }) => {
                let handled = self.record_run(claimed, line, &prompt, &options).await?;
                if handled == Handled::Done {
                    // It may have left the queue without starting (a limit, a bad option).
                    self.show_queue(&origin.thread_key()).await?;
                }
                return Ok(handled);
            }
        }
        Ok(Handled::Done)
    }

    /// True for a request that would start a run (what an outsider may ask approval for).
    fn is_run_request(&self, command: &crate::domain::InboxCommand) -> bool {
        match &command.request {
            Request::Typed { line } => matches!(parse(line), Ok(Command::Run { .. })),
            Request::Labeled { .. } => true,
            Request::Pressed { .. } => false,
        }
    }

    /// Keeps an outsider's run request until someone with write access approves it:
    /// their earlier waiting request in the thread, if any, gives way to it.
    async fn await_approval(
        &self,
        claimed: &ClaimedCommand,
        who: &str,
    ) -> Result<Handled, Failure> {
        let origin = &claimed.command.origin;
        for (id, earlier) in self.store.awaiting_in_thread(&origin.thread_key()).await? {
            if id != claimed.id && earlier.author == claimed.command.author {
                self.store
                    .close_awaiting(&id, "replaced by a newer request")
                    .await?;
            }
        }
        crate::telemetry::command("run", "awaiting_approval");
        let text = texts::awaiting_approval(who, &self.trigger);
        (self.outbox)
            .reply(format!("awaiting:{}", claimed.id), origin, text)
            .await?;
        Ok(Handled::Awaiting)
    }

    /// `/oz approve`: the thread's waiting requests go ahead, named as approved by the
    /// command's author (who has write access: they passed the check). Returns their
    /// requesters, as mentioned.
    async fn approve(&self, claimed: &ClaimedCommand) -> Result<Vec<String>, Failure> {
        let origin = &claimed.command.origin;
        let mut requesters = Vec::new();
        for (id, mut waiting) in self.store.awaiting_in_thread(&origin.thread_key()).await? {
            waiting.approved_by = Some(claimed.command.author.clone());
            if self.store.approve_awaiting(&id, &waiting).await? {
                requesters.push(self.mention(&waiting.origin, &waiting.author));
            }
        }
        Ok(requesters)
    }

    /// `/oz deny`: the thread's waiting requests end, each told so; how many ended.
    async fn deny(&self, claimed: &ClaimedCommand, who: &str) -> Result<usize, Failure> {
        let origin = &claimed.command.origin;
        let mut denied = 0;
        for (id, waiting) in self.store.awaiting_in_thread(&origin.thread_key()).await? {
            let reason = format!("denied by {}", claimed.command.author.name());
            if self.store.close_awaiting(&id, &reason).await? {
                let requester = self.mention(&waiting.origin, &waiting.author);
                (self.outbox)
                    .reply(
                        format!("denied-request:{id}"),
                        &waiting.origin,
                        texts::denied_by(&requester, who),
                    )
                    .await?;
                denied += 1;
            }
        }
        Ok(denied)
    }

    /// Ends the requests that waited for approval longer than they may, each told so;
    /// looked for at most once a minute per dispatcher. True when one ended.
    async fn expire_approvals(&self) -> bool {
        let now = self.retries.now();
        let last = self.approvals_checked.load(Ordering::Relaxed);
        if now - last < APPROVAL_SWEEP_MS
            || self
                .approvals_checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let before = now - texts::APPROVAL_WAIT_DAYS * 86_400_000;
        let expired = match self.store.awaiting_since_before(before).await {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!(%error, "could not look for expired approval requests");
                return false;
            }
        };
        let mut any = false;
        for (id, waiting) in expired {
            let ended = self
                .store
                .close_awaiting(&id, "expired without approval")
                .await;
            if !matches!(ended, Ok(true)) {
                continue;
            }
            any = true;
            let requester = self.mention(&waiting.origin, &waiting.author);
            let text = texts::approval_expired(&requester, &self.trigger);
            let key = format!("expired-request:{id}");
            if let Err(error) = self.outbox.reply(key, &waiting.origin, text).await {
                tracing::warn!(%error, command = %id, "could not tell that a request expired");
            }
        }
        if any {
            // More may have expired than one look takes.
            self.approvals_checked.store(last, Ordering::Relaxed);
        }
        any
    }

    /// The files of the request that may reach the agent (downloaded, checked, base64),
    /// and those left out with why.
    async fn attachments(
        &self,
        surface: &dyn crate::surface::Surface,
        origin: &Origin,
        context: &crate::domain::ThreadContext,
    ) -> (
        Vec<crate::oz::types::AttachmentInput>,
        Vec<(String, crate::attachments::Skipped)>,
    ) {
        use crate::attachments::{MAX_ATTACHMENTS, Skipped, acceptable_type, sniff};
        use base64::Engine;
        let limit = self.limits.max_attachment_bytes;
        let mut taken = Vec::new();
        let mut skipped = Vec::new();
        for file in &context.attachments {
            let verdict = if taken.len() == MAX_ATTACHMENTS {
                Err(Skipped::TooMany)
            } else if !acceptable_type(file.mime_type.as_deref()) {
                Err(Skipped::NotAnImage)
            } else if file.size.is_some_and(|size| size > limit) {
                Err(Skipped::TooLarge { limit })
            } else {
                surface
                    .download_attachment(origin, file, limit)
                    .await
                    .and_then(|bytes| match sniff(&bytes) {
                        Some(mime) => Ok((bytes, mime)),
                        None => Err(Skipped::NotAnImage),
                    })
            };
            match verdict {
                Ok((bytes, mime)) => taken.push(crate::oz::types::AttachmentInput {
                    file_name: file.name.clone(),
                    mime_type: mime.to_owned(),
                    data: base64::engine::general_purpose::STANDARD.encode(bytes),
                }),
                Err(why) => {
                    tracing::info!(file = %file.name, %why, "a file was not attached");
                    skipped.push((file.name.clone(), why));
                }
            }
        }
        (taken, skipped)
    }

    /// Empties the thread's queue and shows it; how many instructions were dropped.
    async fn drop_queue(&self, thread: &ThreadKey) -> crate::store::StoreResult<u64> {
        let dropped = self.store.drop_queued(thread).await?;
        self.show_queue(thread).await?;
        Ok(dropped)
    }

    /// The thread's queued instructions, as a status post shows them.
    async fn queue_notes(&self, thread: &ThreadKey) -> crate::store::StoreResult<Vec<QueuedNote>> {
        Ok(self
            .store
            .queued_in_thread(thread)
            .await?
            .into_iter()
            .map(|(_, command)| QueuedNote {
                who: self.mention(&command.origin, &command.author),
                asked: crate::text::truncate(
                    match &command.request {
                        Request::Typed { line } => line.full_text(),
                        Request::Labeled { label } => format!("label `{label}` added"),
                        Request::Pressed { .. } => String::new(),
                    }
                    .lines()
                    .next()
                    .unwrap_or_default(),
                    120,
                ),
            })
            .collect())
    }

    /// Shows the thread's queue on the status post of its latest run (when it changed).
    async fn show_queue(&self, thread: &ThreadKey) -> crate::store::StoreResult<()> {
        let Some(latest) = self.store.latest_run_in_thread(thread).await? else {
            return Ok(());
        };
        let queued = self.queue_notes(thread).await?;
        let shown = self
            .store
            .edit_run(&latest, |run| {
                (run.view.queued != queued).then(|| {
                    RunEdit::View(RunView {
                        queued: queued.clone(),
                        ..run.view.clone()
                    })
                })
            })
            .await?;
        if shown.is_some() {
            self.outbox.status_changed();
        }
        Ok(())
    }

    /// The limit a new run by `author` in `origin`'s place would pass, if any.
    async fn limit_reached(
        &self,
        origin: &Origin,
        author: &Author,
    ) -> crate::store::StoreResult<Option<texts::Limit>> {
        let limits = &self.limits;
        let actor = origin.actor_key(author);
        let place = origin.place_key();
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        if count(self.store.active_runs_of(&actor).await?) >= limits.max_runs_per_user {
            return Ok(Some(texts::Limit::UserActive(limits.max_runs_per_user)));
        }
        if count(self.store.active_runs_in(&place).await?) >= limits.max_runs_per_place {
            return Ok(Some(texts::Limit::PlaceActive(limits.max_runs_per_place)));
        }
        let now = self.retries.now();
        let hour_ago = now - 3_600_000;
        if count(self.store.runs_started_by(&actor, hour_ago).await?)
            >= limits.max_runs_per_user_per_hour
        {
            return Ok(Some(texts::Limit::UserHourly(
                limits.max_runs_per_user_per_hour,
            )));
        }
        let spent = self.store.cost_in(&place, now - 86_400_000).await?;
        if spent >= limits.max_cost_per_place_per_day {
            return Ok(Some(texts::Limit::PlaceDaily {
                spent,
                max: limits.max_cost_per_place_per_day,
            }));
        }
        Ok(None)
    }

    /// True when new runs are refused: by configuration or by `ozbridge admin pause`.
    async fn paused(&self) -> crate::store::StoreResult<bool> {
        Ok(self.paused || self.store.is_paused().await?)
    }

    /// The thread's newest run; for a command said outside a thread, the place's.
    async fn latest_run_here(
        &self,
        origin: &Origin,
    ) -> crate::store::StoreResult<Option<RunRecord>> {
        let key = origin.thread_key();
        if origin.has_thread() {
            self.store.latest_run_in_thread(&key).await
        } else {
            self.store.latest_run_with_prefix(&format!("{key}:")).await
        }
    }

    /// A button pressed on a status message.
    async fn press(&self, claimed: &ClaimedCommand, action: &ButtonAction) -> Result<(), Failure> {
        let origin = &claimed.command.origin;
        // A press acts only on the run whose status post it was pressed on, in the
        // thread it was pressed in: the button's value alone proves nothing.
        let record = self.store.get_run(action.run()).await?.filter(|r| {
            r.status_post.as_ref() == Some(action.pressed_on())
                && r.origin.thread_key() == origin.thread_key()
        });
        let Some(record) = record else {
            tracing::info!(command = %claimed.id, "a button press does not match the message it was pressed on");
            let text = "That button does not belong to a run of this message, so nothing was done.";
            self.outbox
                .private(format!("reply:{}", claimed.id), origin, text.into())
                .await?;
            return Ok(());
        };
        let who = self.mention(origin, &claimed.command.author);
        match action {
            ButtonAction::Cancel { .. } if record.phase == RunPhase::Done => {
                let text = "That run has already finished.";
                self.outbox
                    .private(format!("reply:{}", claimed.id), origin, text.into())
                    .await?;
            }
            ButtonAction::Cancel { .. } => {
                self.note_on_run(&record, format!("Cancel requested by {who}."))
                    .await?;
                self.cancel(claimed, &record).await?;
            }
            ButtonAction::Retry { .. } => {
                self.retry(claimed, &record, &who, RetryAsked::ByButton)
                    .await?
            }
            ButtonAction::Drop { .. } => {
                let dropped = self.drop_queue(&record.origin.thread_key()).await?;
                self.outbox
                    .private(
                        format!("reply:{}", claimed.id),
                        origin,
                        texts::dropped(&who, dropped),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds a visible note to a run (the status post is updated).
    async fn note_on_run(&self, run: &RunRecord, note: String) -> crate::store::StoreResult<()> {
        self.store
            .edit_run(run, |latest| {
                Some(RunEdit::View(RunView {
                    note: Some(note.clone()),
                    ..latest.view.clone()
                }))
            })
            .await?;
        self.outbox.status_changed();
        Ok(())
    }

    async fn cancel(&self, claimed: &ClaimedCommand, run: &RunRecord) -> Result<(), Failure> {
        let origin = &claimed.command.origin;
        let who = self.mention(origin, &claimed.command.author);
        let key = format!("reply:{}", claimed.id);
        if run.phase == RunPhase::Parked {
            // Never accepted by Oz: nothing to stop there. Should it land after all,
            // the tracker finds it done here and cancels it.
            let note = format!("Cancelled by {who} before Oz accepted it.");
            let cancelled = self
                .store
                .edit_run(run, |latest| {
                    (latest.phase == RunPhase::Parked).then(|| RunEdit::Finish {
                        view: RunView {
                            note: Some(note.clone()),
                            trouble: None,
                            ..latest.view.clone()
                        },
                        visible: true,
                    })
                })
                .await?;
            if cancelled.is_none() {
                // Oz accepted it meanwhile (an operator's retry): cancel it there.
                return Err(Failure::Retry {
                    wait: Duration::from_secs(2),
                    reason: "the run was accepted by Oz while it was being cancelled".into(),
                });
            }
            self.outbox
                .mark(
                    format!("mark:{}:final", run.id),
                    &run.origin,
                    Mark::Cancelled,
                )
                .await?;
            return Ok(());
        }
        let Some(oz_id) = run.view.oz_run_id.clone() else {
            return Err(Failure::Retry {
                wait: Duration::from_secs(2),
                reason: "the run is still being created".into(),
            });
        };
        match self.oz.cancel_run(&oz_id).await {
            Ok(_) => {
                crate::telemetry::command("cancel", "ok");
                self.outbox
                    .mark(
                        format!("mark:{}:ack", claimed.id),
                        origin,
                        Mark::Acknowledged,
                    )
                    .await?;
                Ok(())
            }
            // PENDING runs cannot be cancelled yet: Oz asks to retry after a moment.
            Err(OzError::Api { status: 409, .. }) => Err(Failure::Retry {
                wait: Duration::from_secs(2),
                reason: "the run is PENDING; cancel retried".into(),
            }),
            Err(OzError::Api {
                status: 422,
                problem,
                ..
            }) => {
                let detail = problem.detail.unwrap_or_default();
                let text = format!(
                    "{who}, this run cannot be cancelled through the API ({detail}). Runs that execute on \
                     self-hosted or local workers must be stopped where they run."
                );
                self.outbox.reply(key, origin, text).await?;
                Ok(())
            }
            Err(OzError::Api { status: 400, .. }) => {
                let text = format!("{who}, the run had already finished.");
                self.outbox.reply(key, origin, text).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Starts a failed run's request again (the Retry button, or `/oz retry` for the
    /// thread's last run), when its failure may be retried; otherwise says why not.
    async fn retry(
        &self,
        claimed: &ClaimedCommand,
        old: &RunRecord,
        who: &str,
        asked: RetryAsked,
    ) -> Result<(), Failure> {
        let origin = &claimed.command.origin;
        let key = format!("reply:{}", claimed.id);
        if old.phase != RunPhase::Done || !old.view.retry_may_help() {
            let text =
                texts::not_retryable(who, &old.view, old.phase != RunPhase::Done, &self.trigger);
            self.outbox.private(key, origin, text).await?;
            return Ok(());
        }
        if self.store.run_for_command(&claimed.id).await?.is_some() {
            return Ok(());
        }
        if self.paused().await? {
            self.outbox.private(key, origin, texts::paused(who)).await?;
            return Ok(());
        }
        if let Some(limit) = self.limit_reached(origin, &claimed.command.author).await? {
            let place = self.surfaces.of(origin)?.place_name();
            let text = texts::over_limit(who, place, &limit);
            self.outbox.private(key, origin, text).await?;
            return Ok(());
        }
        let latest = self
            .store
            .latest_run_in_thread(&old.origin.thread_key())
            .await?;
        if latest.as_ref().is_some_and(|r| r.phase != RunPhase::Done) {
            let text = texts::busy(who, &self.trigger);
            self.outbox.private(key, origin, text).await?;
            return Ok(());
        }
        let run_ref = RunRef::generate();
        let mut request = old.request.clone();
        if let Some(prompt) = &request.prompt {
            // A new reference, so that this run is found as itself after a crash.
            request.prompt =
                Some(prompt.replace(&reference_line(&old.id), &reference_line(&run_ref)));
        }
        // A typed retry is its writer's run, marked on their message; a button restarts
        // the run where it was.
        let (origin, requester) = match asked {
            RetryAsked::ByCommand => (origin.clone(), claimed.command.author.clone()),
            RetryAsked::ByButton => (old.origin.clone(), old.requester.clone()),
        };
        let record = RunRecord::intent(
            RunIntent {
                id: run_ref,
                command_id: claimed.id.clone(),
                origin,
                requester,
                asked: old.asked.clone(),
                request,
                post_first: old.post_first,
            },
            self.retries.now(),
        );
        self.store.insert_run(&record).await?;
        self.note_on_run(old, format!("Retried by {who}.")).await?;
        crate::telemetry::command("retry", "accepted");
        self.starter.notify_one();
        Ok(())
    }

    async fn record_run(
        &self,
        claimed: &ClaimedCommand,
        line: &CommandLine,
        prompt_text: &str,
        options: &RunOptions,
    ) -> Result<Handled, Failure> {
        let command = &claimed.command;
        let origin = &command.origin;
        let surface = self.surfaces.of(origin)?;
        let who = surface.mention(&command.author);
        let key = format!("reply:{}", claimed.id);
        if self.store.run_for_command(&claimed.id).await?.is_some() {
            return Ok(Handled::Done); // recorded by an earlier attempt that died before finishing
        }
        // A command said in a thread continues it; one said outside a thread starts a new one.
        let latest = if origin.has_thread() {
            self.store
                .latest_run_in_thread(&origin.thread_key())
                .await?
        } else {
            None
        };
        if self.paused().await? {
            crate::telemetry::command("run", "paused");
            self.outbox.reply(key, origin, texts::paused(&who)).await?;
            return Ok(Handled::Done);
        }
        // A thread's instructions run one after the other: behind its active run, and
        // behind instructions queued before this one.
        let thread = origin.thread_key();
        let busy = latest.as_ref().is_some_and(|r| r.phase != RunPhase::Done);
        if busy
            || (origin.has_thread()
                && (self.store)
                    .queued_before(&thread, &claimed.id, claimed.received_at)
                    .await?)
        {
            let waiting = self.store.queued_in_thread(&thread).await?.len();
            let cap = self.limits.max_queued_per_thread;
            if u64::try_from(waiting).unwrap_or(u64::MAX) >= cap {
                crate::telemetry::command("run", "busy");
                let text = if cap == 0 {
                    texts::busy(&who, &self.trigger)
                } else {
                    texts::queue_full(&who, cap, &self.trigger)
                };
                self.outbox.reply(key, origin, text).await?;
                return Ok(Handled::Done);
            }
            crate::telemetry::command("run", "queued");
            let text = texts::queued(&who, waiting + 1, options.new_conversation, &self.trigger);
            (self.outbox)
                .reply(format!("queued:{}", claimed.id), origin, text)
                .await?;
            return Ok(Handled::Queued);
        }
        if let Some(limit) = self.limit_reached(origin, &command.author).await? {
            crate::telemetry::command("run", "limited");
            let text = texts::over_limit(&who, surface.place_name(), &limit);
            self.outbox.reply(key, origin, text).await?;
            return Ok(Handled::Done);
        }
        if let Err(error) = self.catalog.validate(&self.oz, options).await {
            crate::telemetry::command("run", "invalid");
            let text = texts::command_error(&who, &error, &self.trigger);
            self.outbox.reply(key, origin, text).await?;
            return Ok(Handled::Done);
        }
        let conversation_id = if options.new_conversation {
            None
        } else {
            latest.as_ref().and_then(|r| r.view.conversation_id.clone())
        };
        let mut full = command.clone();
        // What the thread says is read now; a surface that cannot read it for a while
        // makes the command wait (nothing is recorded yet, so it is simply tried again).
        surface.complete_context(origin, &mut full.context).await?;
        let run_ref = RunRef::generate();
        let mut request = build_request(
            surface,
            &self.run_defaults,
            &full,
            prompt_text,
            options,
            &run_ref,
            conversation_id,
        );
        let (attachments, skipped) = self.attachments(surface, origin, &full.context).await;
        if !attachments.is_empty() {
            request.attachments = Some(attachments);
        }
        if let Some(note) = crate::attachments::note(&skipped) {
            (self.outbox)
                .reply(format!("attachments:{}", claimed.id), origin, note)
                .await?;
        }
        let post_first = surface.posts_status_first();
        let mut record = RunRecord::intent(
            RunIntent {
                id: run_ref,
                command_id: claimed.id.clone(),
                origin: origin.clone(),
                requester: command.author.clone(),
                asked: line.full_text(),
                request,
                post_first,
            },
            self.retries.now(),
        );
        // The rest of the queue moves to the new run's status post.
        if let Some(previous) = latest.filter(|r| !r.view.queued.is_empty()) {
            self.store
                .edit_run(&previous, |run| {
                    (!run.view.queued.is_empty()).then(|| {
                        RunEdit::View(RunView {
                            queued: Vec::new(),
                            ..run.view.clone()
                        })
                    })
                })
                .await?;
        }
        record.view.queued = self.queue_notes(&thread).await?;
        record.view.approved_by = command.approved_by.as_ref().map(|a| surface.mention(a));
        self.store.insert_run(&record).await?;
        crate::telemetry::command("run", "accepted");
        self.starter.notify_one();
        self.outbox.status_changed();
        Ok(Handled::Done)
    }
}
