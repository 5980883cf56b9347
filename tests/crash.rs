//! The promises under crashes and faults, with the real binary: replicas of `ozbridge
//! serve` (two on PostgreSQL; one on SQLite) take a few hundred mixed GitHub and Slack
//! commands while the fakes fail a fifth of their calls and replicas are killed with
//! SIGKILL and restarted. Then every command must have produced exactly one Oz run,
//! every thread must show its run's final state, and nothing may have been posted twice.
//!
//! Seeded and reproducible: `CRASH_SEED=N` replays a run (the seed is printed).
//! `CRASH_SOAK=1` runs a longer soak (1,000 commands).

mod common;

use common::output::Output;
use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::github::FakeGithub;
use ozbridge::testkit::oz::OzSim;
use ozbridge::testkit::payloads::github::CommentEventSpec;
use ozbridge::testkit::payloads::slack::{mention_event, slash_command_body};
use ozbridge::testkit::slack::FakeSlack;
use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const REPO: &str = "acme/widgets";
const OZ_KEY: &str = "crash-oz-key";
const GH_TOKEN: &str = "crash-github-token";
const HOOK_SECRET: &str = "crash-hook-secret";
const SLACK_TOKEN: &str = "xoxb-crash";
const SLACK_SECRET: &str = "crash-signing-secret";
const CHANNELS: usize = 24;
/// Longest the drain may take before the test fails.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// What a command was, to find its thread afterwards.
#[derive(Debug, Clone)]
enum Sent {
    Github { number: u64 },
    Slash { channel: String },
    Mention { channel: String, root: String },
}

/// A request to deliver: path, headers, body.
struct Delivery {
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

struct Fakes {
    sim: OzSim,
    github: FakeGithub,
    slack: FakeSlack,
    env: Vec<(String, String)>,
    response_url: String,
}

async fn fakes(seed: u64) -> Fakes {
    let sim = OzSim::new(Duration::from_millis(120)).with_api_key(OZ_KEY);
    let oz_url = sim
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let github = FakeGithub::new();
    let github_url = github
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let slack = FakeSlack::new(SLACK_TOKEN);
    let (slack_api, hooks) = slack
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    for c in 0..CHANNELS {
        slack.add_channel(&format!("C{c}"), true);
    }
    github.set_permission(REPO, "alice", "write");
    sim.chaos.enable(seed ^ 0x0a, 0.2);
    github.chaos.enable(seed ^ 0x0b, 0.2);
    slack.chaos.enable(seed ^ 0x0c, 0.2);
    let env = [
        ("WARP_API_KEY", OZ_KEY.to_owned()),
        ("OZ_API_URL", oz_url),
        ("GITHUB_API_URL", github_url),
        ("GITHUB_TOKEN", GH_TOKEN.to_owned()),
        ("GITHUB_WEBHOOK_SECRET", HOOK_SECRET.to_owned()),
        ("SLACK_API_URL", slack_api),
        ("SLACK_RESPONSE_URL_PREFIX", hooks.clone()),
        ("SLACK_BOT_TOKEN", SLACK_TOKEN.to_owned()),
        ("SLACK_SIGNING_SECRET", SLACK_SECRET.to_owned()),
        ("OZ_TICK_INTERVAL_SECS", "0.5".to_owned()),
        ("OZ_REQUEST_TIMEOUT_SECS", "2".to_owned()),
        ("GITHUB_REQUEST_TIMEOUT_SECS", "2".to_owned()),
        ("SLACK_REQUEST_TIMEOUT_SECS", "2".to_owned()),
        ("OZBRIDGE_LEASE_SECS", "8".to_owned()),
        ("OZBRIDGE_MAX_RUNS_PER_USER", "10000".to_owned()),
        ("OZBRIDGE_MAX_RUNS_PER_PLACE", "100000".to_owned()),
        ("OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR", "100000".to_owned()),
        ("OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY", "1000000".to_owned()),
        // Warnings, and the line that says a replica listens.
        ("RUST_LOG", "warn,ozbridge::app=info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Fakes {
        sim,
        github,
        slack,
        env,
        response_url: format!("{hooks}commands/T0ACME/crash"),
    }
}

/// One replica slot: a fixed port, and the process serving it when alive.
struct Replica {
    port: u16,
    child: Option<Child>,
    /// What every run of this replica wrote, one after the other.
    log: Output,
}

impl Replica {
    /// Starts the replica and returns once it listens.
    async fn start(&mut self, env: &[(String, String)], database: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ozbridge"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DATABASE_URL", database)
            .env("OZBRIDGE_LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica");
        let mark = self.log.mark();
        self.log.collect(child.stdout.take().expect("piped"));
        self.log.collect(child.stderr.take().expect("piped"));
        self.child = Some(child);
        self.log.wait_for_after(mark, "ozbridge is listening").await;
    }

    /// SIGKILL, as an orchestrator losing a machine would.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// The end of what the replica wrote.
    fn log_tail(&self) -> String {
        let text = self.log.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds the `i`-th command of the workload: its delivery and where its thread is.
fn command(i: usize, rng: &mut fastrand::Rng, f: &Fakes) -> (Delivery, Sent) {
    let token = format!("task-{i}");
    let github = |event: &'static str, body: String| Delivery {
        path: "/github/webhook",
        headers: vec![
            ("X-GitHub-Event", event.to_owned()),
            ("X-GitHub-Delivery", ozbridge::ids::new_uuid()),
            (
                "X-Hub-Signature-256",
                sign_github(HOOK_SECRET, body.as_bytes()),
            ),
            ("Content-Type", "application/json".to_owned()),
        ],
        body,
    };
    let slack = |path: &'static str, body: String, content_type: &str| {
        let now = chrono::Utc::now().timestamp();
        Delivery {
            path,
            headers: vec![
                ("X-Slack-Request-Timestamp", now.to_string()),
                (
                    "X-Slack-Signature",
                    ozbridge::slack::intake::sign(SLACK_SECRET, now, body.as_bytes()),
                ),
                ("Content-Type", content_type.to_owned()),
            ],
            body,
        }
    };
    let number = 1000 + i as u64;
    let channel = format!("C{}", rng.usize(0..CHANNELS));
    match rng.u8(0..100) {
        0..40 => {
            let text = format!("/oz fix {token}");
            let comment = f.github.add_user_comment(REPO, number, "alice", &text);
            let payload =
                CommentEventSpec::created(REPO, number, comment, "alice", &text).payload();
            (
                github("issue_comment", payload.to_string()),
                Sent::Github { number },
            )
        }
        40..55 => {
            f.github
                .add_pull(REPO, number, &format!("feature-{i}"), "main");
            let text = format!("/oz tidy {token}");
            let comment = f.github.add_user_comment(REPO, number, "alice", &text);
            let payload = CommentEventSpec {
                is_pull_request: true,
                ..CommentEventSpec::created(REPO, number, comment, "alice", &text)
            }
            .payload();
            (
                github("issue_comment", payload.to_string()),
                Sent::Github { number },
            )
        }
        55..70 => {
            f.github
                .add_pull(REPO, number, &format!("review-{i}"), "main");
            let text = format!("/oz rename this {token}");
            let comment = f
                .github
                .add_review_comment(REPO, number, "alice", &text, None);
            let payload = serde_json::json!({
                "action": "created",
                "comment": { "id": comment, "body": text,
                             "user": { "login": "alice", "id": 1001, "type": "User" } },
                "pull_request": { "number": number, "title": "Refactor", "body": "",
                                  "html_url": format!("https://github.com/{REPO}/pull/{number}"),
                                  "head": { "ref": format!("review-{i}") }, "base": { "ref": "main" } },
                "repository": { "full_name": REPO },
                "sender": { "login": "alice", "id": 1001, "type": "User" },
            });
            (
                github("pull_request_review_comment", payload.to_string()),
                Sent::Github { number },
            )
        }
        70..85 => {
            let body = slash_command_body(
                &channel,
                "U1",
                &format!("ship {token}"),
                &f.response_url,
                &format!("trig.{i}.{}", rng.u32(..)),
            );
            (
                slack("/slack/commands", body, "application/x-www-form-urlencoded"),
                Sent::Slash { channel },
            )
        }
        _ => {
            let root = f.slack.add_user_message(&channel, None, "U2", "a topic");
            let text = format!("<@UOZBOT> look into {token}");
            let ts = f.slack.add_user_message(&channel, Some(&root), "U1", &text);
            let event = mention_event(&format!("Ev{i}"), &channel, "U1", &text, &ts, Some(&root));
            (
                slack("/slack/events", event.to_string(), "application/json"),
                Sent::Mention { channel, root },
            )
        }
    }
}

/// Delivers to the replicas in turn until one accepts it (2xx), as the platforms'
/// redeliveries would; false when none did in 20 tries. Every replica listens when this
/// is called (a restart returns once its replica listens), so a refusal is the replica's
/// own answer and the next replica is tried at once.
async fn deliver(
    http: &reqwest::Client,
    ports: &[u16],
    delivery: &Delivery,
    rng: &mut fastrand::Rng,
) -> bool {
    let first = rng.usize(0..ports.len());
    for attempt in 0..20 {
        let port = ports[(first + attempt) % ports.len()];
        let mut request = http
            .post(format!("http://127.0.0.1:{port}{}", delivery.path))
            .timeout(Duration::from_secs(5))
            .body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(*name, value);
        }
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            return true;
        }
    }
    false
}

/// Prints the end of each replica's log.
fn dump_logs(slots: &[Replica]) {
    for (n, slot) in slots.iter().enumerate() {
        eprintln!("--- replica {n}:\n{}", slot.log_tail());
    }
}

/// The line of a thread's status, and whether the thread shows its final state.
fn thread_status(f: &Fakes, sent: &Sent, token: &str) -> Option<String> {
    match sent {
        Sent::Github { number, .. } => f
            .github
            .bot_comments(REPO, *number)
            .into_iter()
            .find(|c| c.body.contains("<!-- ozbridge:run:"))
            .map(|c| c.body),
        Sent::Slash { channel } => f
            .slack
            .bot_messages(channel)
            .into_iter()
            .find(|m| m.thread_ts.is_none() && m.shown().contains(token))
            .map(|m| m.shown().to_owned()),
        Sent::Mention { channel, root } => f
            .slack
            .thread(channel, root)
            .into_iter()
            .find(|m| run_key(&m.metadata).is_some())
            .map(|m| m.shown().to_owned()),
    }
}

fn run_key(metadata: &serde_json::Value) -> Option<&str> {
    metadata
        .pointer("/event_payload/key")
        .and_then(serde_json::Value::as_str)
        .filter(|k| k.starts_with("run:"))
}

fn is_final(status: &str) -> bool {
    [
        "✅ Done",
        "❌ Failed",
        "⚠️ Errored",
        "🚫 Cancelled",
        "❌ Could not start",
    ]
    .iter()
    .any(|label| status.contains(label))
}

async fn crash_run(database: String, replicas: usize, label: &str) {
    ozbridge::install_crypto();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let soak = std::env::var("CRASH_SOAK").is_ok_and(|v| v == "1");
    let commands = if soak { 1_000 } else { 200 };
    println!(
        "crash test [{label}]: seed {seed} (replay with CRASH_SEED={seed}), {commands} commands, {replicas} replica(s)"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let f = fakes(seed).await;
    let mut slots = Vec::new();
    for _ in 0..replicas {
        let mut replica = Replica {
            port: free_port().await,
            child: None,
            log: Output::default(),
        };
        replica.start(&f.env, &database).await;
        slots.push(replica);
    }
    let ports: Vec<u16> = slots.iter().map(|r| r.port).collect();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut kills = 0;
    let mut next_kill = rng.usize(5..25);
    let mut sent = Vec::new();
    for i in 0..commands {
        let (delivery, place) = command(i, &mut rng, &f);
        if !deliver(&http, &ports, &delivery, &mut rng).await {
            dump_logs(&slots);
            panic!("[{label}] no replica accepted command {i} in 20 tries");
        }
        sent.push((format!("task-{i}"), place));
        if i + 1 == next_kill {
            let slot = rng.usize(0..slots.len());
            slots[slot].kill().await;
            slots[slot].start(&f.env, &database).await;
            kills += 1;
            next_kill += rng.usize(5..25);
        }
    }
    let accepted_at = started.elapsed();
    // Drain, with more kills as threads reach their final state.
    let mut kill_at_finished = rng.usize(10..40);
    let deadline = tokio::time::Instant::from_std(started) + DRAIN_LIMIT;
    let drained = loop {
        // What the replicas post is the only news of their progress: look again at each.
        let (mut github_feed, mut slack_feed) = (f.github.subscribe(), f.slack.subscribe());
        let finished = sent
            .iter()
            .filter(|(token, place)| thread_status(&f, place, token).is_some_and(|s| is_final(&s)))
            .count();
        if finished == sent.len() {
            break started.elapsed();
        }
        if finished >= kill_at_finished && kills < commands / 8 {
            let slot = rng.usize(0..slots.len());
            slots[slot].kill().await;
            slots[slot].start(&f.env, &database).await;
            kills += 1;
            kill_at_finished = finished + rng.usize(10..40);
        }
        if started.elapsed() > DRAIN_LIMIT {
            for (token, place) in &sent {
                let status = thread_status(&f, place, token);
                if !status.as_deref().is_some_and(is_final) {
                    eprintln!("not final: {token} {place:?}: {status:?}");
                }
            }
            dump_logs(&slots);
            panic!(
                "[{label}] {finished} of {} threads reached their final state in {DRAIN_LIMIT:?}",
                sent.len()
            );
        }
        tokio::select! {
            _ = github_feed.recv() => {}
            _ = slack_feed.recv() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    };
    // Let work that lands after its client gave up land, then look at what stayed.
    for chaos in [&f.sim.chaos, &f.github.chaos, &f.slack.chaos] {
        chaos.disable();
    }
    // Late work may still create something (a duplicate would show then).
    for chaos in [&f.sim.chaos, &f.github.chaos, &f.slack.chaos] {
        chaos.late_work_done().await;
    }
    for slot in &mut slots {
        slot.kill().await;
    }

    // Exactly one Oz run per command (a duplicate would carry the same token).
    let mut runs_per_token: HashMap<String, usize> = HashMap::new();
    let mut cancelled_extra = 0;
    for id in f.sim.run_ids() {
        let Some(run) = f.sim.run(&id) else { continue };
        if let Some(token) = run
            .prompt
            .split_whitespace()
            .find(|w| w.starts_with("task-"))
        {
            *runs_per_token.entry(token.to_owned()).or_default() += 1;
        }
        if run.state == ozbridge::oz::types::RunState::Cancelled {
            cancelled_extra += 1;
        }
    }
    let duplicates: Vec<_> = runs_per_token.iter().filter(|(_, n)| **n > 1).collect();
    let lost: Vec<_> = sent
        .iter()
        .filter(|(token, _)| !runs_per_token.contains_key(token))
        .map(|(token, _)| token.clone())
        .collect();
    // One status post per thread, and no post twice.
    let mut twice = Vec::new();
    for (token, place) in &sent {
        match place {
            Sent::Github { number, .. } => {
                let mut markers: BTreeMap<String, usize> = BTreeMap::new();
                for comment in f.github.bot_comments(REPO, *number) {
                    if let Some(marker) = comment.body.lines().next() {
                        *markers.entry(marker.to_owned()).or_default() += 1;
                    }
                }
                twice.extend(
                    markers
                        .into_iter()
                        .filter(|(_, n)| *n > 1)
                        .map(|(m, n)| format!("{token}: {m} x{n}")),
                );
            }
            Sent::Slash { .. } | Sent::Mention { .. } => {}
        }
    }
    for c in 0..CHANNELS {
        let channel = format!("C{c}");
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        for message in f.slack.bot_messages(&channel) {
            if let Some(key) = message
                .metadata
                .pointer("/event_payload/key")
                .and_then(serde_json::Value::as_str)
            {
                *keys.entry(key.to_owned()).or_default() += 1;
            }
        }
        twice.extend(
            keys.into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|(k, n)| format!("{channel}: {k} x{n}")),
        );
    }
    let faults: Vec<String> = [
        ("oz", &f.sim.chaos),
        ("github", &f.github.chaos),
        ("slack", &f.slack.chaos),
    ]
    .iter()
    .map(|(name, chaos)| {
        let (counts, requests) = chaos.counts();
        let injected: u64 = counts.values().sum();
        format!("{name}: {injected} of {requests} calls failed {counts:?}")
    })
    .collect();
    println!(
        "crash test [{label}] seed {seed}: {commands} commands accepted in {:.1} s, {kills} SIGKILLs, \
         {} Oz runs ({cancelled_extra} cancelled), duplicates {}, lost {}, posted twice {}, all threads final after {:.1} s",
        accepted_at.as_secs_f64(),
        f.sim.run_count(),
        duplicates.len(),
        lost.len(),
        twice.len(),
        drained.as_secs_f64(),
    );
    for line in &faults {
        println!("  faults injected: {line}");
    }
    assert!(
        duplicates.is_empty(),
        "[{label}] seed {seed}: duplicate runs {duplicates:?}"
    );
    assert!(
        lost.is_empty(),
        "[{label}] seed {seed}: commands without a run {lost:?}"
    );
    assert!(
        twice.is_empty(),
        "[{label}] seed {seed}: posted twice {twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_keep_every_promise_under_kills_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = common::database_url(&dir, true).await else {
        return;
    };
    crash_run(url, 2, "postgres, 2 replicas").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_on_sqlite_keeps_every_promise_under_kills_and_faults() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/crash.db", dir.path().display());
    crash_run(url, 1, "sqlite, 1 replica").await;
}
