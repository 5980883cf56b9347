//! Test harness: ozbridge through its real router and pipeline, against the in-crate Oz
//! simulator and fake GitHub and Slack on loopback, with a fresh database per test.
//!
//! By default the harness drives the pipeline itself: no worker runs in the background;
//! each wait runs every stage until none finds work ([`Pipeline::run_until_idle`]),
//! checks what it waits for, and moves a held clock on (the store's leases and retry
//! times, the simulator's runs, the clients' breakers and pacing all go by it), so a test
//! sees each consequence of what it did in order, without sleeping and without races. A
//! harness started `with_workers` runs the service's own workers on the system clock
//! instead, for tests that crash the app mid-work or whose subject is real time.
#![allow(dead_code)]

pub mod output;

use ozbridge::app::{Drive, Extras, RunningApp, build_pipeline_with, start};
use ozbridge::clock::Clock;
use ozbridge::config::Config;
use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::github::{FakeComment, FakeGithub};
use ozbridge::testkit::oz::OzSim;
use ozbridge::testkit::payloads::github::CommentEventSpec;
use ozbridge::testkit::slack::FakeSlack;
use std::collections::HashMap;
use std::time::Duration;
use tokio::net::TcpListener;

pub const SECRET: &str = "test-webhook-secret";
pub const OLD_SECRET: &str = "previous-webhook-secret";
pub const REPO: &str = "acme/widgets";

/// What varies from one run of a test to the next in a snapshot: generated ids.
pub const SNAPSHOT_FILTERS: [(&str, &str); 2] = [
    (
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uuid]",
    ),
    // The simulator's run ids: a counter and a random suffix.
    (r"run-[0-9]{6}-[0-9a-f]{8}", "[oz-run]"),
];

/// A fresh database URL: SQLite in a temp dir, or a new PostgreSQL database when asked.
pub async fn database_url(dir: &tempfile::TempDir, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(format!("sqlite://{}/test.db", dir.path().display()));
    }
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "skipped: TEST_DATABASE_URL is not set, so the PostgreSQL variant does not run here"
        );
        return None;
    };
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base)
        .await
        .expect("TEST_DATABASE_URL must be reachable");
    let name = format!("ozb_{}", uuid_simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

fn uuid_simple() -> String {
    ozbridge::ids::new_uuid().replace('-', "")
}

/// How far a driving harness moves its clock between rounds: less than any step of the
/// simulator's runs, so every state a run goes through is seen.
const MOMENT: Duration = Duration::from_millis(50);
/// How long (on the held clock) a driving harness waits for what it was asked to.
const PATIENCE: Duration = Duration::from_secs(600);
/// How long (real time) a harness whose workers drive waits for what it was asked to.
/// Generous: what these waits catch (a change skipped, work lost) never comes at all,
/// and a machine loaded with other work may take many times the usual few seconds.
const REAL_PATIENCE: Duration = Duration::from_secs(60);

pub const SLACK_SECRET: &str = "test-slack-signing-secret";
pub const SLACK_OLD_SECRET: &str = "previous-slack-signing-secret";
pub const SLACK_TOKEN: &str = "xoxb-test-token";
/// A channel the bot is in, and one it is not in.
pub const CHANNEL: &str = "CENG";
pub const NO_BOT_CHANNEL: &str = "CNOBOT";

pub struct Harness {
    pub sim: OzSim,
    pub github: FakeGithub,
    pub slack: FakeSlack,
    pub response_url: String,
    pub config: Config,
    pub app: Option<RunningApp>,
    pub http: reqwest::Client,
    /// Applied to the pipeline settings of every boot, after the harness's own.
    pub tune: fn(&mut ozbridge::pipeline::PipelineSettings),
    /// Surfaces beside GitHub and Slack (a test's own), given to every boot.
    pub surfaces: Vec<std::sync::Arc<dyn ozbridge::surface::Surface>>,
    /// Who moves the pipeline: the harness (the default) or the app's workers.
    pub drive: Drive,
    /// More replicas of the app on the same database and clock ([`Self::add_replica`]).
    pub replicas: Vec<RunningApp>,
    /// The time the app and the simulator go by: held and moved by the harness when it
    /// drives, the system's when workers do.
    pub clock: Clock,
    next_comment: u64,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(None, &[]).await.expect("sqlite harness")
    }

    /// `database`: `None` for SQLite, or a prepared URL. `extra`: more env settings.
    pub async fn start_with(database: Option<String>, extra: &[(&str, &str)]) -> Option<Self> {
        Self::start_tuned(database, extra, |_| {}).await
    }

    /// [`Self::start_with`], with the app's own workers moving the pipeline on the
    /// system clock: for tests that crash the app mid-work or whose subject is real time.
    pub async fn start_with_workers(
        database: Option<String>,
        extra: &[(&str, &str)],
    ) -> Option<Self> {
        Self::start_full(database, extra, |_| {}, Vec::new(), Drive::Workers).await
    }

    /// [`Self::start_with`], with `tune` applied to the pipeline settings of every boot.
    pub async fn start_tuned(
        database: Option<String>,
        extra: &[(&str, &str)],
        tune: fn(&mut ozbridge::pipeline::PipelineSettings),
    ) -> Option<Self> {
        Self::start_full(database, extra, tune, Vec::new(), Drive::Caller).await
    }

    /// A SQLite harness whose app also serves `surface`, moved as `drive` says.
    pub async fn start_with_surface(
        surface: std::sync::Arc<dyn ozbridge::surface::Surface>,
        drive: Drive,
    ) -> Self {
        Self::start_full(None, &[], |_| {}, vec![surface], drive)
            .await
            .expect("sqlite harness")
    }

    async fn start_full(
        database: Option<String>,
        extra: &[(&str, &str)],
        tune: fn(&mut ozbridge::pipeline::PipelineSettings),
        surfaces: Vec<std::sync::Arc<dyn ozbridge::surface::Surface>>,
        drive: Drive,
    ) -> Option<Self> {
        ozbridge::install_crypto();
        ozbridge::telemetry::init_logging(ozbridge::config::LogFormat::Text);
        let dir = tempfile::tempdir().expect("temp dir");
        let database = match database {
            Some(url) => url,
            None => database_url(&dir, false).await?,
        };
        let clock = match drive {
            Drive::Caller => Clock::held(),
            Drive::Workers => Clock::system(),
        };
        let sim = OzSim::new(Duration::from_millis(150))
            .with_api_key("test-oz-key")
            .with_clock(clock.clone());
        let oz_url = sim
            .serve(TcpListener::bind("127.0.0.1:0").await.ok()?)
            .await
            .ok()?;
        let github = FakeGithub::new();
        let github_url = github
            .serve(TcpListener::bind("127.0.0.1:0").await.ok()?)
            .await
            .ok()?;
        let slack = FakeSlack::new(SLACK_TOKEN);
        let (slack_api, hooks) = slack
            .serve(TcpListener::bind("127.0.0.1:0").await.ok()?)
            .await
            .ok()?;
        slack.add_channel(CHANNEL, true);
        slack.add_channel(NO_BOT_CHANNEL, false);
        let mut vars: HashMap<String, String> = [
            ("WARP_API_KEY", "test-oz-key".to_owned()),
            ("OZ_API_URL", oz_url),
            ("GITHUB_API_URL", github_url),
            ("GITHUB_TOKEN", "test-github-token".to_owned()),
            ("GITHUB_WEBHOOK_SECRET", format!("{SECRET},{OLD_SECRET}")),
            ("DATABASE_URL", database),
            ("OZ_TICK_INTERVAL_SECS", "0.1".to_owned()),
            // Bursts of one person's commands are what many tests send; the limit tests
            // set their own.
            ("OZBRIDGE_MAX_RUNS_PER_USER", "1000".to_owned()),
            ("OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR", "10000".to_owned()),
            // Short calls, so that an answer in doubt is waited out in seconds.
            ("OZ_REQUEST_TIMEOUT_SECS", "2".to_owned()),
            ("GITHUB_REQUEST_TIMEOUT_SECS", "2".to_owned()),
            ("SLACK_REQUEST_TIMEOUT_SECS", "2".to_owned()),
            ("SLACK_API_URL", slack_api),
            ("SLACK_RESPONSE_URL_PREFIX", hooks.clone()),
            ("SLACK_BOT_TOKEN", SLACK_TOKEN.to_owned()),
            (
                "SLACK_SIGNING_SECRET",
                format!("{SLACK_SECRET},{SLACK_OLD_SECRET}"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let config_file = vars.remove("CONFIG_TOML").map(|text| {
            let path = dir.path().join("ozbridge.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let config =
            Config::load_with(config_file.as_deref(), &|k| vars.get(k).cloned()).expect("config");
        github.set_permission(REPO, "alice", "write");
        github.set_permission(REPO, "mallory", "read");
        let mut harness = Self {
            sim,
            github,
            slack,
            response_url: format!("{hooks}commands/T0ACME/1/abc"),
            config,
            app: None,
            http: reqwest::Client::new(),
            tune,
            surfaces,
            drive,
            replicas: Vec::new(),
            clock,
            next_comment: 0,
            _dir: dir,
        };
        harness.boot().await;
        Some(harness)
    }

    /// Starts a new app process on the same database.
    pub async fn boot(&mut self) {
        self.app = Some(self.launch().await);
    }

    /// Starts one more replica of the app on the same database and clock; a harness
    /// that drives steps every replica at once, so that they compete for the work.
    pub async fn add_replica(&mut self) {
        let replica = self.launch().await;
        self.replicas.push(replica);
    }

    /// An app on the harness's database, clock and settings.
    async fn launch(&self) -> RunningApp {
        let tune = self.tune;
        let pipeline = build_pipeline_with(
            &self.config,
            |s| {
                s.poll = Duration::from_millis(50);
                s.lease = Duration::from_millis(1500);
                s.workers = 2;
                s.backoff.base = Duration::from_millis(100);
                s.backoff.max = Duration::from_millis(800);
                tune(s);
            },
            Extras {
                surfaces: self.surfaces.clone(),
                clock: self.clock.clone(),
            },
        )
        .await
        .expect("pipeline");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        start(&self.config, pipeline, listener, self.drive)
            .await
            .expect("start")
    }

    /// The running app's pipeline.
    pub fn pipeline(&self) -> &ozbridge::pipeline::Pipeline {
        &self.app.as_ref().expect("app running").pipeline
    }

    /// One round of driving: every stage of every replica runs until none finds work
    /// (the replicas at once).
    pub async fn run_until_idle(&self) -> usize {
        assert_eq!(
            self.drive,
            Drive::Caller,
            "the app's workers drive this harness"
        );
        let replicas =
            std::iter::once(self.pipeline()).chain(self.replicas.iter().map(|r| &*r.pipeline));
        futures_util::future::join_all(replicas.map(|p| p.run_until_idle()))
            .await
            .into_iter()
            .sum()
    }

    /// Drives the pipeline until `check` holds: runs every stage until none finds work,
    /// checks, and moves the held clock on by a moment, again and again. Fails after
    /// ten minutes of the held clock's time without `check` holding, naming what it
    /// waited for; a step that panics fails the test with its message.
    pub async fn drive_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        self.drive(what, || std::future::ready(check())).await
    }

    /// [`Self::drive_until`] with a check that awaits.
    async fn drive<F: std::future::Future<Output = bool>>(
        &self,
        what: &str,
        mut check: impl FnMut() -> F,
    ) {
        let started = self.clock.now_ms();
        loop {
            self.run_until_idle().await;
            if check().await {
                return;
            }
            if self.clock.now_ms() - started > PATIENCE.as_millis() as i64 {
                panic!("not within {PATIENCE:?} of the held clock: {what}");
            }
            self.clock.advance(MOMENT);
        }
    }

    /// Kills the app mid-work (like `kill -9`) and starts a new one on the same database.
    pub async fn crash_and_restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.kill().await;
        }
        self.boot().await;
    }

    pub fn url(&self, path: &str) -> String {
        let addr = self.app.as_ref().expect("app running").addr;
        format!("http://{addr}{path}")
    }

    pub fn store(&self) -> &ozbridge::store::Store {
        &self.app.as_ref().expect("app running").pipeline.store
    }

    /// A person's comment on the fake GitHub plus its webhook payload.
    pub fn comment(&mut self, number: u64, author: &str, body: &str) -> (u64, String) {
        let id = self.github.add_user_comment(REPO, number, author, body);
        self.next_comment = id;
        let spec = CommentEventSpec {
            issue_body: "It fails one run in five.",
            author_id: if author == "alice" { 1001 } else { 2002 },
            ..CommentEventSpec::created(REPO, number, id, author, body)
        };
        (self.github).add_issue(REPO, number, spec.title, Some(spec.issue_body), &[]);
        let payload = spec.payload();
        (id, payload.to_string())
    }

    pub async fn post(
        &self,
        event: &str,
        body: &str,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url("/github/webhook"))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", ozbridge::ids::new_uuid())
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send().await.expect("webhook request")
    }

    /// Sends a Slack request signed with `secret` at `timestamp`.
    pub async fn slack_request(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        secret: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Content-Type", content_type)
            .header("X-Slack-Request-Timestamp", timestamp.to_string())
            .header(
                "X-Slack-Signature",
                ozbridge::slack::intake::sign(secret, timestamp, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .expect("slack request")
    }

    /// A correctly signed slash command `/oz <text>`.
    pub async fn slash(&self, channel: &str, user: &str, text: &str) -> reqwest::Response {
        let body = ozbridge::testkit::payloads::slack::slash_command_body(
            channel,
            user,
            text,
            &self.response_url,
            &ozbridge::ids::new_uuid(),
        );
        self.slack_request(
            "/slack/commands",
            &body,
            "application/x-www-form-urlencoded",
            SLACK_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await
    }

    /// A correctly signed Events API callback.
    pub async fn slack_event(&self, event: &serde_json::Value) -> reqwest::Response {
        self.slack_request(
            "/slack/events",
            &event.to_string(),
            "application/json",
            SLACK_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await
    }

    /// A person mentions the bot (in a thread when `thread` is given); returns the message ts.
    pub async fn mention(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread: Option<&str>,
    ) -> String {
        let ts = self.slack.add_user_message(channel, thread, user, text);
        let event = ozbridge::testkit::payloads::slack::mention_event(
            &format!("Ev{}", ozbridge::ids::new_uuid()),
            channel,
            user,
            text,
            &ts,
            thread,
        );
        let response = self.slack_event(&event).await;
        assert_eq!(response.status(), 200);
        ts
    }

    /// Presses a button of a bot message.
    pub async fn press(
        &self,
        action: &str,
        run: &str,
        channel: &str,
        user: &str,
        message_ts: &str,
        thread: Option<&str>,
    ) -> reqwest::Response {
        let body = ozbridge::testkit::payloads::slack::button_body(
            action,
            run,
            channel,
            user,
            message_ts,
            thread,
            &self.response_url,
        );
        self.slack_request(
            "/slack/interactions",
            &body,
            "application/x-www-form-urlencoded",
            SLACK_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await
    }

    /// The id of the n-th run the simulator created.
    pub fn sim_run_id(&self, n: usize) -> ozbridge::ids::OzRunId {
        self.sim.run_ids()[n].clone()
    }

    /// Waits until a private answer (posted to the slash command's `response_url`) contains `text`.
    pub async fn wait_private(&self, text: &str) {
        self.wait_for(&format!("a private answer containing {text:?}"), || {
            self.slack.responses().iter().any(|r| r.contains(text))
        })
        .await;
    }

    /// Waits until a message of a Slack thread shows `text`; returns that message.
    pub async fn wait_in_thread(
        &self,
        channel: &str,
        thread: &str,
        text: &str,
    ) -> ozbridge::testkit::slack::FakeMessage {
        let find = || {
            self.slack
                .thread(channel, thread)
                .into_iter()
                .find(|m| m.shown().contains(text))
        };
        self.wait_for(&format!("a message in the thread showing {text:?}"), || {
            find().is_some()
        })
        .await;
        find().expect("found above")
    }

    /// The run reference of the status message of a Slack thread.
    pub fn thread_run_ref(&self, channel: &str, thread: &str) -> String {
        let status = self
            .thread_status(channel, thread)
            .expect("a status message");
        status
            .metadata
            .pointer("/event_payload/key")
            .and_then(|k| k.as_str())
            .expect("a run key")
            .trim_start_matches("run:")
            .to_owned()
    }

    /// The status message of a run in a Slack thread.
    pub fn thread_status(
        &self,
        channel: &str,
        thread: &str,
    ) -> Option<ozbridge::testkit::slack::FakeMessage> {
        self.slack
            .thread(channel, thread)
            .into_iter()
            .find(|m| m.text.starts_with("Oz agent"))
    }

    /// The bot's root messages (status posts of slash commands) in a channel.
    pub fn slack_roots(&self, channel: &str) -> Vec<ozbridge::testkit::slack::FakeMessage> {
        self.slack
            .bot_messages(channel)
            .into_iter()
            .filter(|m| m.thread_ts.is_none())
            .collect()
    }

    /// Sends a correctly signed delivery.
    pub async fn deliver(&self, event: &str, body: &str) -> reqwest::Response {
        self.post(event, body, Some(sign_github(SECRET, body.as_bytes())))
            .await
    }

    /// Comments and delivers the webhook; returns the comment id.
    pub async fn command(&mut self, number: u64, author: &str, body: &str) -> u64 {
        let (id, payload) = self.comment(number, author, body);
        let response = self.deliver("issue_comment", &payload).await;
        assert!(
            response.status().is_success(),
            "webhook answered {}",
            response.status()
        );
        id
    }

    pub fn bot_comments(&self, number: u64) -> Vec<FakeComment> {
        self.github.bot_comments(REPO, number)
    }

    /// The thread's status comments (one per run; a second for one run is a duplicate).
    pub fn status_comments(&self, number: u64) -> Vec<FakeComment> {
        self.bot_comments(number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- ozbridge:run:"))
            .collect()
    }

    /// The status comment of a thread (the one with a run marker).
    pub fn status_comment(&self, number: u64) -> Option<FakeComment> {
        self.bot_comments(number)
            .into_iter()
            .find(|c| c.body.contains("<!-- ozbridge:run:"))
    }

    /// Replies (non-status comments) of a thread.
    pub fn replies(&self, number: u64) -> Vec<String> {
        self.bot_comments(number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- ozbridge:reply:"))
            .map(|c| c.body)
            .collect()
    }

    /// Waits until `check` holds: it is checked again each time something happens (a
    /// worker step did work, the fake GitHub or Slack saw a call), never on a timer.
    /// Fails at once when a worker step panicked, with the panic's message, and after
    /// [`REAL_PATIENCE`] without `check` holding, naming what it waited for.
    /// A harness that drives the pipeline drives it until `check` holds instead.
    pub async fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        if self.drive == Drive::Caller {
            return self.drive_until(what, check).await;
        }
        let deadline = tokio::time::Instant::now() + REAL_PATIENCE;
        loop {
            let mut changes = self.changes();
            if check() {
                return;
            }
            self.fail_on_panic();
            if !changes.next(deadline).await {
                panic!("timed out waiting for: {what}");
            }
        }
    }

    /// A feed of everything that can change what a test observes.
    fn changes(&self) -> Changes {
        Changes {
            steps: self.app.as_ref().map(|app| app.pipeline.activity.watch()),
            github: self.github.subscribe(),
            slack: self.slack.subscribe(),
        }
    }

    /// Fails the test with the message of a worker step that panicked, if one did.
    pub fn fail_on_panic(&self) {
        if let Some(app) = &self.app {
            let panics = app.pipeline.activity.panics();
            assert!(
                panics.is_empty(),
                "a worker panicked: {}",
                panics.join("; ")
            );
        }
    }

    /// The next comment the bot posts on thread `number` (its first version). The feed
    /// is taken when this is called: call it before what makes the bot comment.
    pub fn next_comment(&self, number: u64) -> impl std::future::Future<Output = FakeComment> + '_ {
        let feed = self.github.subscribe();
        self.next_on(
            feed,
            format!("a new comment on #{number}"),
            move |event| match event {
                ozbridge::testkit::github::GithubEvent::CommentCreated {
                    id, number: n, ..
                } if n == number => self.bot_comments(number).into_iter().find(|c| c.id == id),
                _ => None,
            },
        )
    }

    /// The next message the bot posts in Slack channel `channel` (taken as
    /// [`Self::next_comment`] is).
    pub fn next_message<'a>(
        &'a self,
        channel: &'a str,
    ) -> impl std::future::Future<Output = ozbridge::testkit::slack::FakeMessage> + 'a {
        let feed = self.slack.subscribe();
        self.next_on(
            feed,
            format!("a new message in {channel}"),
            move |event| match event {
                ozbridge::testkit::slack::SlackEvent::Posted(message)
                    if message.channel == channel =>
                {
                    Some(message)
                }
                _ => None,
            },
        )
    }

    /// The first event of `feed` that `pick` takes, within [`REAL_PATIENCE`]; fails at once when a
    /// worker panicked. A harness that drives the pipeline drives it until then.
    async fn next_on<E: Clone, T>(
        &self,
        mut feed: tokio::sync::broadcast::Receiver<E>,
        what: String,
        mut pick: impl FnMut(E) -> Option<T>,
    ) -> T {
        if self.drive == Drive::Caller {
            let mut found = None;
            self.drive_until(&what, || {
                while found.is_none() {
                    match feed.try_recv() {
                        Ok(event) => found = pick(event),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                found.is_some()
            })
            .await;
            return found.expect("found above");
        }
        let deadline = tokio::time::Instant::now() + REAL_PATIENCE;
        loop {
            self.fail_on_panic();
            let event = tokio::time::timeout_at(deadline, feed.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            if let Some(found) = event.ok().and_then(&mut pick) {
                return found;
            }
        }
    }

    /// Waits until the comment carries the reaction.
    pub async fn wait_reaction(&self, comment: u64, reaction: &str) {
        let github = self.github.clone();
        self.wait_for(&format!("reaction {reaction} on {comment}"), || {
            github.reactions(comment).iter().any(|r| r == reaction)
        })
        .await;
    }

    /// Waits until the status comment contains `text`.
    pub async fn wait_status_contains(&self, number: u64, text: &str) -> FakeComment {
        self.wait_for(&format!("status comment containing {text:?}"), || {
            self.status_comment(number)
                .is_some_and(|c| c.body.contains(text))
        })
        .await;
        self.status_comment(number).expect("status comment")
    }

    /// Waits until a reply containing `text` is posted.
    pub async fn wait_reply_contains(&self, number: u64, text: &str) -> String {
        self.wait_for(&format!("reply containing {text:?}"), || {
            self.replies(number).iter().any(|r| r.contains(text))
        })
        .await;
        self.replies(number)
            .into_iter()
            .find(|r| r.contains(text))
            .expect("reply")
    }

    /// Waits until the pipeline has nothing left to do (no pending command, message,
    /// starting or followed run, or status post behind), so that what a test asserts
    /// next is final: nothing more happens until a new command arrives. Panics after
    /// [`REAL_PATIENCE`] (a driving harness: ten minutes of its held clock), naming what is
    /// pending.
    pub async fn settle(&self) {
        if self.drive == Drive::Caller {
            let idle = || async { self.store().pending_work().await.expect("store readable") == 0 };
            return self.drive("the pipeline to settle", idle).await;
        }
        let deadline = tokio::time::Instant::now() + REAL_PATIENCE;
        loop {
            let mut changes = self.changes();
            let pending = self.store().pending_work().await.expect("store readable");
            if pending == 0 {
                return;
            }
            self.fail_on_panic();
            if !changes.next(deadline).await {
                panic!("the pipeline did not settle: {pending} items still pending");
            }
        }
    }
}

/// Whatever happens next: a worker step that did work, or a call the fake GitHub or
/// Slack saw.
struct Changes {
    steps: Option<tokio::sync::watch::Receiver<u64>>,
    github: tokio::sync::broadcast::Receiver<ozbridge::testkit::github::GithubEvent>,
    slack: tokio::sync::broadcast::Receiver<ozbridge::testkit::slack::SlackEvent>,
}

impl Changes {
    /// Waits for the next change; false when `deadline` came first.
    async fn next(&mut self, deadline: tokio::time::Instant) -> bool {
        let steps = async {
            let alive = match &mut self.steps {
                Some(steps) => steps.changed().await.is_ok(),
                None => false,
            };
            if !alive {
                // No app (or it is gone): only the fakes can change.
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            () = steps => true,
            _ = self.github.recv() => true,
            _ = self.slack.recv() => true,
            () = tokio::time::sleep_until(deadline) => false,
        }
    }
}
