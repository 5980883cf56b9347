//! The pipeline after intake, driven entirely from the database so that a restart at
//! any point resumes: the dispatcher turns commands into run intents, the starter
//! creates them in Oz, the tracker follows them, the notifier tells the thread. Each
//! stage is a struct that holds only what it uses; `Pipeline` composes them and runs
//! them as workers, or steps them until idle for a caller that drives it (the tests).

pub mod activity;
mod adopt;
mod catalog;
pub mod checklist;
mod dispatcher;
pub mod load;
mod notifier;
mod outbox;
pub mod prompt;
mod starter;
pub mod texts;
mod tracker;
mod work;

use crate::oz::OzClient;
use crate::retry::Backoff;
use crate::store::Store;
use crate::surface::Surfaces;
use dispatcher::Dispatcher;
use notifier::Notifier;
use starter::Starter;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracker::{Ticked, Tracker};

/// Settings of the pipeline's workers.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// This process's name in leases.
    pub worker_id: String,
    pub trigger: String,
    /// The label and the service-wide defaults of every run.
    pub run_defaults: prompt::RunDefaults,
    /// How long a claimed item stays claimed if its worker dies.
    pub lease: Duration,
    /// How often idle workers look for due work (other replicas, retries).
    pub poll: Duration,
    pub tick: Duration,
    /// Parallel workers per stage (0: intake only, for benchmarks of the HTTP path).
    pub workers: usize,
    /// Backoff of persisted retries.
    pub backoff: Backoff,
    /// How long failing work is retried before it is parked.
    pub retry_for: Duration,
    /// How long finished work is kept (`None`: forever).
    pub retention: Option<Duration>,
    /// New runs are refused (`OZBRIDGE_PAUSED`); the database's switch is read too.
    pub paused: bool,
    /// Caps on runs per person, per place and per day.
    pub limits: crate::config::RunLimits,
    /// How long a run waits for Oz before its thread is told that Oz is not answering.
    pub outage_notice_after: Duration,
    /// How long a run create without an answer may still land at Oz: no lookup may
    /// conclude "never created" before it has passed.
    pub oz_doubt_window: Duration,
    /// How often working runs' conversations are read for their checklists.
    pub checklists: checklist::ChecklistSettings,
}

impl PipelineSettings {
    /// Defaults for one process.
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            worker_id: format!("{}-{}", hostname(), &crate::ids::new_uuid()[..8]),
            trigger: config.github.trigger.clone(),
            run_defaults: prompt::RunDefaults {
                run_label: config.oz.run_label.clone(),
                environment_id: config.oz.environment_id.clone(),
                model_id: config.oz.model_id.clone(),
                harness: config.oz.harness,
                session_access: config.oz.session_access,
            },
            lease: config.lease,
            poll: Duration::from_secs(1),
            tick: config.oz.tick_interval,
            workers: config.workers,
            backoff: Backoff {
                attempts: u32::MAX,
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            retry_for: config.retry_for,
            retention: config.retention,
            outage_notice_after: Duration::from_secs(60),
            paused: config.paused,
            limits: config.limits,
            oz_doubt_window: doubt_window(config.oz.request_timeout),
            checklists: checklist::ChecklistSettings {
                refresh: config.oz.conversation_refresh,
                budget: config.oz.conversation_budget,
            },
        }
    }
}

/// How long a request without an answer may still be carried out: twice its timeout
/// (the server may hold it that long behind its own queue), and at least 2 s.
pub fn doubt_window(request_timeout: Duration) -> Duration {
    (request_timeout * 2).max(Duration::from_secs(2))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("FLY_MACHINE_ID"))
        .unwrap_or_else(|_| "ozbridge".into())
}

/// While the intake is busy, the pipeline takes one step per this, over all workers.
const STEP_ASIDE: Duration = Duration::from_millis(100);
/// How often finished work past its retention is looked for.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);
/// Rows of each kind deleted per statement.
const RETENTION_BATCH: i64 = 500;

/// Wakes idle workers when new work is written.
#[derive(Default)]
struct Wakers {
    dispatch: Arc<Notify>,
    start: Arc<Notify>,
    notify: Arc<Notify>,
}

/// The stages over their shared parts, and the workers that run them.
pub struct Pipeline {
    pub store: Store,
    pub oz: OzClient,
    pub settings: PipelineSettings,
    /// What the workers did: steps that found work, and panics.
    pub activity: activity::Activity,
    /// The intake's requests in flight, which the workers step aside for.
    pub intake: Arc<load::IntakeLoad>,
    surfaces: Surfaces,
    wake: Wakers,
    dispatcher: Dispatcher,
    starter: Starter,
    tracker: Tracker,
    notifier: Notifier,
}

impl Pipeline {
    /// A pipeline over its parts: each stage gets what it uses.
    pub fn new(store: Store, oz: OzClient, surfaces: Surfaces, settings: PipelineSettings) -> Self {
        let wake = Wakers::default();
        let outbox = outbox::Outbox::new(store.clone(), wake.notify.clone());
        let claimant = work::Claimant {
            id: settings.worker_id.clone(),
            lease: settings.lease,
        };
        let retries = work::RetryBudget {
            clock: store.clock().clone(),
            backoff: settings.backoff,
            retry_for: settings.retry_for,
        };
        let adopter = adopt::Adopter {
            store: store.clone(),
            oz: oz.clone(),
            outbox: outbox.clone(),
        };
        let run_label = settings.run_defaults.run_label.clone();
        Self {
            dispatcher: Dispatcher {
                store: store.clone(),
                oz: oz.clone(),
                surfaces: surfaces.clone(),
                outbox: outbox.clone(),
                starter: wake.start.clone(),
                claimant: claimant.clone(),
                retries: retries.clone(),
                catalog: catalog::Catalog::default(),
                trigger: settings.trigger.clone(),
                run_defaults: settings.run_defaults.clone(),
                paused: settings.paused,
                limits: settings.limits,
                approvals_checked: std::sync::atomic::AtomicI64::new(0),
            },
            starter: Starter {
                store: store.clone(),
                oz: oz.clone(),
                outbox: outbox.clone(),
                adopter: adopter.clone(),
                claimant: claimant.clone(),
                retries: retries.clone(),
                run_label: run_label.clone(),
                doubt_window: settings.oz_doubt_window,
                outage_notice_after: settings.outage_notice_after,
            },
            tracker: Tracker {
                store: store.clone(),
                oz: oz.clone(),
                surfaces: surfaces.clone(),
                outbox: outbox.clone(),
                adopter,
                worker_id: settings.worker_id.clone(),
                run_label,
                tick: settings.tick,
                doubt_window: settings.oz_doubt_window,
                checklists: settings.checklists,
                read_schedule: checklist::ReadSchedule::default(),
            },
            notifier: Notifier {
                store: store.clone(),
                surfaces: surfaces.clone(),
                outbox,
                starter: wake.start.clone(),
                claimant,
                retries,
            },
            store,
            oz,
            settings,
            activity: activity::Activity::default(),
            intake: Arc::default(),
            surfaces,
            wake,
        }
    }

    /// Takes a verified command from a surface's intake: stored durably (once per
    /// `dedupe_key`) before this returns, then handed to the dispatcher. Its id, or
    /// `None` for a command stored before.
    pub async fn accept(
        &self,
        dedupe_key: &str,
        command: &crate::domain::InboxCommand,
    ) -> crate::store::StoreResult<Option<crate::ids::CommandId>> {
        let stored = self.store.insert_command(dedupe_key, command).await?;
        if stored.is_some() {
            self.wake.dispatch.notify_one();
        }
        Ok(stored)
    }

    /// Steps every stage, in the pipeline's order, until a whole round finds nothing
    /// to do, and returns how many steps did work: for a caller that drives the
    /// pipeline itself instead of spawning its workers. What it sees afterwards is the
    /// whole consequence of what it did, with nothing still under way; work that is
    /// due later (a retry, a wait for a doubt window, a run Oz has not moved yet) waits
    /// for the next call. A step that panics panics here, with its message.
    pub async fn run_until_idle(&self) -> usize {
        let mut steps = 0;
        loop {
            let before = steps;
            while self.dispatcher.step().await {
                steps += 1;
            }
            while self.starter.step().await {
                steps += 1;
            }
            while self.notifier.step().await {
                steps += 1;
            }
            if let Ticked::Followed { changes } = self.tracker.tick().await {
                steps += changes;
            }
            if steps == before {
                return steps;
            }
        }
    }

    /// One tracker tick alone (no other stage runs): how many runs it found changed.
    /// For a caller that drives the pipeline and wants a run's end recorded before
    /// anything reacts to it.
    pub async fn track_once(&self) -> usize {
        match self.tracker.tick().await {
            Ticked::Followed { changes } => changes,
            Ticked::Idle => 0,
        }
    }

    /// Starts every worker; they stop when `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let on_wake = |wake: fn(&Pipeline) -> &Notify| Pace::OnWake(wake);
        let mut stages: Vec<(&'static str, Step, Pace)> = Vec::new();
        for _ in 0..self.settings.workers {
            stages.push((
                "dispatcher",
                |p| Box::pin(async move { p.dispatcher.step().await }),
                on_wake(|p| &p.wake.dispatch),
            ));
            stages.push((
                "starter",
                |p| Box::pin(async move { p.starter.step().await }),
                on_wake(|p| &p.wake.start),
            ));
            stages.push((
                "notifier",
                |p| Box::pin(async move { p.notifier.step().await }),
                on_wake(|p| &p.wake.notify),
            ));
        }
        stages.push((
            "tracker",
            |p| {
                Box::pin(async move {
                    // Paced by the tick interval whatever it found; watchers hear of it.
                    if p.tracker.tick().await != Ticked::Idle {
                        p.activity.worked();
                    }
                    false
                })
            },
            Pace::Every(self.settings.tick),
        ));
        stages.push((
            "retention",
            |p| {
                Box::pin(async move {
                    p.forget_finished().await;
                    false
                })
            },
            Pace::Every(RETENTION_PERIOD),
        ));
        stages.push((
            "gauges",
            |p| {
                Box::pin(async move {
                    p.report_gauges().await;
                    false
                })
            },
            Pace::Every(Duration::from_secs(15)),
        ));
        let mut handles: Vec<JoinHandle<()>> = stages
            .into_iter()
            .map(|(stage, step, pace)| {
                spawn_loop(shutdown.clone(), self.clone(), stage, step, pace)
            })
            .collect();
        for breaker in self.breakers() {
            handles.push(spawn_resumer(shutdown.clone(), self.clone(), breaker));
        }
        handles
    }

    /// The breakers of every upstream this pipeline calls.
    fn breakers(&self) -> Vec<Arc<crate::retry::Breaker>> {
        let mut breakers = vec![self.oz.breaker().clone()];
        breakers.extend(self.surfaces.breakers());
        breakers
    }

    /// Makes every deferred retry due and wakes the stages (an upstream answers again).
    async fn resume_waiting(&self) {
        if let Err(error) = self.store.resume_waiting().await {
            tracing::warn!(%error, "could not resume waiting work");
        }
        self.wake.dispatch.notify_waiters();
        self.wake.start.notify_waiters();
        self.wake.notify.notify_waiters();
    }

    /// Deletes finished work older than the retention time, a batch at a time, on the
    /// replica that holds the retention lease; how many rows went.
    pub async fn forget_finished(&self) -> u64 {
        let Some(retention) = self.settings.retention else {
            return 0;
        };
        match (self.store)
            .try_lease("retention", &self.settings.worker_id, RETENTION_PERIOD)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return 0,
            Err(error) => {
                tracing::warn!(%error, "could not take the retention lease");
                return 0;
            }
        }
        let before = self.store.clock().now_ms() - crate::clock::ms(retention);
        let mut forgotten = 0;
        loop {
            match self.store.forget_finished(before, RETENTION_BATCH).await {
                Ok(0) => break,
                Ok(rows) => forgotten += rows,
                Err(error) => {
                    tracing::warn!(%error, "could not delete finished work");
                    break;
                }
            }
            // Small batches, each its own statement: other writers go in between.
            tokio::task::yield_now().await;
        }
        if forgotten > 0 {
            tracing::info!(
                rows = forgotten,
                ?retention,
                "deleted finished work past its retention"
            );
        }
        forgotten
    }

    async fn report_gauges(&self) {
        if let Ok(counts) = self.store.run_counts().await {
            for (phase, count) in counts {
                crate::telemetry::runs_in_phase(phase, count);
            }
        }
        if let Ok(by_state) = self.store.active_states().await {
            crate::telemetry::active_runs_by_state(&by_state);
        }
        if let (Ok(commands), Ok(outbox)) = (
            self.store.pending_command_count().await,
            self.store.pending_outbox_count().await,
        ) {
            crate::telemetry::backlog(commands, outbox);
        }
        if let Ok(parked) = self.store.parked_counts().await {
            for (kind, count) in parked {
                crate::telemetry::parked(kind.name(), count);
            }
        }
        for breaker in self.breakers() {
            crate::telemetry::upstream(breaker.name(), breaker.is_open(), breaker.refused());
        }
        if let Ok(lag) = self.store.oldest_unposted_age().await {
            crate::telemetry::notification_lag(Duration::from_millis(
                u64::try_from(lag).unwrap_or(0),
            ));
        }
    }
}

/// One unit of a worker's work; true when it found something to do.
type Step = fn(Arc<Pipeline>) -> Pin<Box<dyn Future<Output = bool> + Send>>;

/// When an idle worker looks again.
#[derive(Clone, Copy)]
enum Pace {
    /// On a wake-up for its stage, or after the poll interval (retries, other replicas).
    OnWake(fn(&Pipeline) -> &Notify),
    /// Periodically: a step starts every period (at once after a step that overran it).
    Every(Duration),
}

/// Resumes waiting work each time `breaker`'s upstream answers again, until shutdown.
fn spawn_resumer(
    mut shutdown: watch::Receiver<bool>,
    pipeline: Arc<Pipeline>,
    breaker: Arc<crate::retry::Breaker>,
) -> JoinHandle<()> {
    let mut recoveries = breaker.recoveries();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = recoveries.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    pipeline.resume_waiting().await;
                }
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
    })
}

/// Runs `step` until shutdown, pausing as `pace` says while it finds no work. A step
/// that panics is reported ([`activity::Activity::panicked`]) and the loop goes on.
fn spawn_loop(
    mut shutdown: watch::Receiver<bool>,
    pipeline: Arc<Pipeline>,
    stage: &'static str,
    step: Step,
    pace: Pace,
) -> JoinHandle<()> {
    use futures_util::FutureExt;
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Pace::OnWake(_) = pace {
                // Answers to GitHub and Slack first; the work is stored and waits.
                pipeline.intake.step_aside(STEP_ASIDE).await;
            }
            let started = tokio::time::Instant::now();
            match std::panic::AssertUnwindSafe(step(pipeline.clone()))
                .catch_unwind()
                .await
            {
                Ok(true) => {
                    pipeline.activity.worked();
                    continue;
                }
                Ok(false) => {}
                Err(payload) => pipeline.activity.panicked(stage, payload.as_ref()),
            }
            match pace {
                // A fixed period: the step's own time is part of it.
                Pace::Every(period) => tokio::select! {
                    _ = tokio::time::sleep_until(started + period) => {}
                    _ = shutdown.changed() => {}
                },
                Pace::OnWake(wake) => tokio::select! {
                    _ = wake(&pipeline).notified() => {}
                    _ = tokio::time::sleep(pipeline.settings.poll) => {}
                    _ = shutdown.changed() => {}
                },
            }
        }
    })
}
