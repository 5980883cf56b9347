//! Prints ozbridge's figures on this machine: signed webhooks accepted per second with
//! p50/p99/max latency, beside a minimal axum + SQLite floor measured in the same run
//! (every comment a command, and one in ten), with the intake alone and with the whole
//! pipeline running (and what became of the notifications the pipeline queued: sent,
//! pending, dead, with the reasons), Oz requests per tracker tick with 1,000 tracked runs, and the bridge's
//! resident memory. The bridge runs as its own process (`target/release/ozbridge serve`);
//! the load generator, the Oz simulator and the fake GitHub run in this one, on loopback.
//!
//! `cargo build --release && cargo run --release --example bench`

use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::github::FakeGithub;
use ozbridge::testkit::oz::{OzSim, Scenario};
use ozbridge::testkit::payloads::github::CommentEventSpec;
use ozbridge::testkit::payloads::slack::slash_command_body;
use ozbridge::testkit::slack::FakeSlack;
use std::sync::Arc;

use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SECRET: &str = "bench-secret";
const SLACK_TOKEN: &str = "xoxb-bench";
const SLACK_SECRET: &str = "bench-signing-secret";
/// Channels the slash commands are spread over (the bot is in each).
const SLACK_CHANNELS: usize = 24;
const REQUESTS: usize = 20_000;
const CONCURRENCY: usize = 32;
/// Runs tracked in the tracking figures (`BENCH_TRACKED` to change it).
fn tracked() -> usize {
    std::env::var("BENCH_TRACKED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn payload(comment_id: u64, number: u64, command: bool) -> String {
    // About 9.5 KB, like a real issue_comment delivery with a long issue body.
    let body = "The login test fails about one run in five on CI. ".repeat(170);
    let text = if command {
        "/oz fix the flaky login test [sim:endless]"
    } else {
        "Thanks, that reproduces it here too; see the second log."
    };
    CommentEventSpec {
        issue_body: &body,
        ..CommentEventSpec::created("acme/widgets", number, comment_id, "alice", text)
    }
    .payload()
    .to_string()
}

/// The bridge as a child process, with the simulator and fake GitHub in this one.
struct Bridge {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bridge and the fakes it talks to.
struct Setup {
    sim: OzSim,
    github: FakeGithub,
    _slack: FakeSlack,
    bridge: Bridge,
    /// Where slash commands' private answers go (the fake Slack's hooks).
    response_url: String,
}

async fn setup(workers: usize) -> anyhow::Result<Setup> {
    let durable = std::env::var("OZBRIDGE_DURABLE").unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let sim = OzSim::new(Duration::from_millis(200));
    let oz_url = sim.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
    let github = FakeGithub::new();
    let github_url = github
        .serve(TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    github.set_permission("acme/widgets", "alice", "write");
    let slack = FakeSlack::new(SLACK_TOKEN);
    let (slack_api, hooks) = slack.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
    for channel in 0..SLACK_CHANNELS {
        slack.add_channel(&format!("C{channel}"), true);
    }
    let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let binary = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("ozbridge"))
        .ok_or_else(|| anyhow::anyhow!("cannot locate target/release"))?;
    anyhow::ensure!(
        binary.exists(),
        "build the binary first: cargo build --release"
    );
    let child = std::process::Command::new(binary)
        .arg("serve")
        .env("WARP_API_KEY", "k")
        .env("OZ_API_URL", oz_url)
        .env("GITHUB_API_URL", github_url)
        .env("GITHUB_TOKEN", "t")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("SLACK_BOT_TOKEN", SLACK_TOKEN)
        .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
        .env("SLACK_API_URL", slack_api)
        .env("SLACK_RESPONSE_URL_PREFIX", &hooks)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .env("OZ_TICK_INTERVAL_SECS", "1")
        .env("OZBRIDGE_WORKERS", workers.to_string())
        .env("OZBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env("OZBRIDGE_DURABLE", durable)
        // One person sends everything here: lift the abuse limits.
        .env("OZBRIDGE_MAX_RUNS_PER_USER", "10000")
        .env("OZBRIDGE_MAX_RUNS_PER_PLACE", "100000")
        .env("OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR", "100000")
        .env("OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY", "1000000000")
        .spawn()?;
    let bridge = Bridge {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    let health = format!("http://{}/healthz", bridge.addr);
    for _ in 0..100 {
        if reqwest::get(&health).await.is_ok() {
            return Ok(Setup {
                sim,
                github,
                _slack: slack,
                bridge,
                response_url: format!("{hooks}commands/T0ACME/bench"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the bridge did not start")
}

/// What share of the comments hold a command.
#[derive(Clone, Copy)]
enum Mix {
    /// Every comment is a `/oz` command.
    AllCommands,
    /// One comment in ten is; the others are conversation.
    TenthCommands,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::AllCommands => "100 % commands",
            Mix::TenthCommands => "10 % commands",
        }
    }
}

/// One request of a load: its body and headers.
struct Delivery {
    body: String,
    headers: Vec<(&'static str, String)>,
}

/// `REQUESTS` signed GitHub deliveries of `mix`, with distinct comment ids.
fn deliveries(mix: Mix, first_comment: u64) -> Arc<Vec<Delivery>> {
    Arc::new(
        (0..REQUESTS as u64)
            .map(|i| {
                let command = match mix {
                    Mix::AllCommands => true,
                    Mix::TenthCommands => i % 10 == 0,
                };
                let body = payload(first_comment + i, 1 + i % 500, command);
                let headers = vec![
                    ("X-GitHub-Event", "issue_comment".to_owned()),
                    ("X-GitHub-Delivery", format!("bench-{first_comment}-{i}")),
                    ("X-Hub-Signature-256", sign_github(SECRET, body.as_bytes())),
                ];
                Delivery { body, headers }
            })
            .collect(),
    )
}

/// `REQUESTS` signed `/oz` slash commands over the channels.
fn slash_commands(response_url: &str) -> Arc<Vec<Delivery>> {
    let now = chrono::Utc::now().timestamp();
    Arc::new(
        (0..REQUESTS)
            .map(|i| {
                let body = slash_command_body(
                    &format!("C{}", i % SLACK_CHANNELS),
                    "U1",
                    "fix the flaky login test [sim:endless]",
                    response_url,
                    &format!("trigger.{i}"),
                );
                let headers = vec![
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded".to_owned(),
                    ),
                    ("X-Slack-Request-Timestamp", now.to_string()),
                    (
                        "X-Slack-Signature",
                        ozbridge::slack::intake::sign(SLACK_SECRET, now, body.as_bytes()),
                    ),
                ];
                Delivery { body, headers }
            })
            .collect(),
    )
}

/// Throughput and latencies of one load.
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.per_second,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

/// Sends `bodies` to `url` in a closed loop at concurrency 32; every answer must be 2xx.
async fn load(url: &str, bodies: Arc<Vec<Delivery>>) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, bodies, next) =
            (client.clone(), url.to_owned(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(delivery) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let mut request = client.post(&url).body(delivery.body.clone());
                for (name, value) in &delivery.headers {
                    request = request.header(*name, value);
                }
                let response = request.send().await;
                let ok = response.map(|r| r.status().is_success()).unwrap_or(false);
                assert!(ok, "webhook {i} failed");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Figures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: p(0.50),
        p99: p(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

/// Webhooks to the minimal axum floor and to ozbridge's intake alone (workers off), one
/// after the other in this run, for each mix; then to ozbridge with its pipeline.
async fn webhook_throughput() -> anyhow::Result<()> {
    for (round, mix) in [Mix::AllCommands, Mix::TenthCommands]
        .into_iter()
        .enumerate()
    {
        let first = 1_000_000 * (round as u64 + 1);
        let floor = Floor::start()?;
        let floor_figures = load(&floor.url().await?, deliveries(mix, first)).await?;
        drop(floor);
        println!(
            "floor (axum, verify + parse + one SQLite row), {}: {floor_figures}",
            mix.name()
        );
        let up = setup(0).await?;
        let url = format!("http://{}/github/webhook", up.bridge.addr);
        let figures = load(&url, deliveries(mix, first)).await?;
        println!(
            "ozbridge intake only, {}: {figures} ({:.0} % of the floor), RSS {:.1} MB",
            mix.name(),
            100.0 * figures.per_second / floor_figures.per_second,
            rss_mb(up.bridge.child.id())
        );
    }
    for workers in [0, 4] {
        let up = setup(workers).await?;
        let url = format!("http://{}/slack/commands", up.bridge.addr);
        let figures = load(&url, slash_commands(&up.response_url)).await?;
        let label = if workers == 0 {
            "intake only"
        } else {
            "full pipeline"
        };
        println!("ozbridge Slack slash commands, {label}: {figures}");
    }
    let up = setup(4).await?;
    println!("bridge idle RSS: {:.1} MB", rss_mb(up.bridge.child.id()));
    let url = format!("http://{}/github/webhook", up.bridge.addr);
    let figures = load(&url, deliveries(Mix::AllCommands, 9_000_000)).await?;
    println!(
        "ozbridge full pipeline, {}: {figures}, RSS {:.1} MB",
        Mix::AllCommands.name(),
        rss_mb(up.bridge.child.id())
    );
    for wait in [0, 30] {
        tokio::time::sleep(Duration::from_secs(wait)).await;
        println!(
            "  notifications {wait} s after the load: {}",
            outbox_report(&up.bridge).await?
        );
    }
    Ok(())
}

/// The floor to compare the intake with: a minimal axum service that verifies the
/// signature, parses the JSON and stores one SQLite row (WAL, synchronous NORMAL) for a
/// comment that holds a command; its own process (this program with `--floor`).
struct Floor {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Floor {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("--floor")
            .arg(port.to_string())
            .arg(dir.path().join("floor.db"))
            .spawn()?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// Its webhook URL, once it answers.
    async fn url(&self) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/github/webhook", self.port);
        for _ in 0..100 {
            if reqwest::get(&url).await.is_ok() {
                return Ok(url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the floor did not start")
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves the floor (see [`Floor`]) until killed.
async fn serve_floor(port: u16, database: &str) -> anyhow::Result<()> {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use hmac::{Hmac, KeyInit, Mac};
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    sqlx::query("CREATE TABLE inbox (delivery TEXT PRIMARY KEY, command TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    async fn webhook(
        State(pool): State<sqlx::SqlitePool>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let signature = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
            .and_then(|v| hex::decode(v).ok())
            .unwrap_or_default();
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()) else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        mac.update(&body);
        if mac.verify_slice(&signature).is_err() {
            return StatusCode::UNAUTHORIZED;
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let text = event["comment"]["body"].as_str().unwrap_or_default();
        let Some(command) = text.lines().find(|line| line.starts_with("/oz")) else {
            return StatusCode::ACCEPTED;
        };
        let delivery = headers
            .get("x-github-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match sqlx::query(
            "INSERT INTO inbox (delivery, command) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(delivery)
        .bind(command)
        .execute(&pool)
        .await
        {
            Ok(_) => StatusCode::ACCEPTED,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    let app = axum::Router::new()
        .route(
            "/github/webhook",
            axum::routing::post(webhook).get(|| async { "floor" }),
        )
        .with_state(pool);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// What became of the notifications the bridge queued: how many by status, and why the
/// dead ones died.
async fn outbox_report(bridge: &Bridge) -> anyhow::Result<String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}/bench.db?mode=ro", bridge._dir.path().display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .fetch_all(&mut conn)
            .await?;
    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "SELECT COALESCE(error, ''), COUNT(*) FROM outbox WHERE status = 'dead' GROUP BY error",
    )
    .fetch_all(&mut conn)
    .await?;
    let (runs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs")
        .fetch_one(&mut conn)
        .await?;
    Ok(format!("{counts:?}, dead because {reasons:?}; {runs} runs"))
}

async fn tracking() -> anyhow::Result<()> {
    let Setup {
        sim,
        github,
        bridge,
        ..
    } = setup(4).await?;
    let client = reqwest::Client::new();
    let url = format!("http://{}/github/webhook", bridge.addr);
    for i in 0..tracked() as u64 {
        sim.push_scenario(Scenario::Endless);
        let body = payload(5_000_000 + i, 10_000 + i, true);
        let signature = sign_github(SECRET, body.as_bytes());
        client
            .post(&url)
            .header("X-GitHub-Event", "issue_comment")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while sim.run_count() < tracked() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let active = sim.run_count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lists_before = sim.calls("GET /agent/runs");
    let gets_before = sim.calls("GET /agent/runs/{id}");
    let window_start = sim
        .call_times("GET /agent/runs")
        .last()
        .copied()
        .unwrap_or(0);
    // Every run's agent does work every half second: each run is a checklist candidate
    // on every tick, and only the budget of conversations may be read per tick.
    let worker = {
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                for run in sim.run_ids() {
                    sim.add_steps(
                        &run,
                        vec![ozbridge::oz::types::ConversationStep {
                            id: "work".into(),
                            description: Some("Working".into()),
                            summary: None,
                            started_at: None,
                            completed_at: None,
                            messages: Vec::new(),
                            steps: Vec::new(),
                        }],
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    worker.abort();
    let lists = sim.calls("GET /agent/runs") - lists_before;
    let gets = sim.calls("GET /agent/runs/{id}") - gets_before;
    let ticks = window.as_secs();
    // Conversation reads between consecutive list calls: one tick's reads.
    let list_times: Vec<i64> = sim
        .call_times("GET /agent/runs")
        .into_iter()
        .filter(|t| *t > window_start)
        .collect();
    let reads = sim.call_times("GET /agent/runs/{id}/conversation");
    let per_tick: Vec<usize> = list_times
        .windows(2)
        .map(|w| reads.iter().filter(|t| **t >= w[0] && **t < w[1]).count())
        .collect();
    println!(
        "tracking {active} active runs, all changing, tick 1 s, over {ticks} s: {lists} list calls ({:.1} per tick, \
         pages of 500 when runs changed), {gets} per-run GETs, conversation reads per tick: max {} (budget 10), \
         mean {:.1}",
        lists as f64 / ticks as f64,
        per_tick.iter().max().copied().unwrap_or(0),
        per_tick.iter().sum::<usize>() as f64 / per_tick.len().max(1) as f64
    );
    println!(
        "bridge RSS with {active} tracked runs: {:.1} MB",
        rss_mb(bridge.child.id())
    );
    println!(
        "status comments written: {}",
        (10_000..10_000 + tracked() as u64)
            .filter(|n| !github.bot_comments("acme/widgets", *n).is_empty())
            .count()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, port, database] = args.as_slice()
        && flag == "--floor"
    {
        return serve_floor(port.parse()?, database).await;
    }
    ozbridge::install_crypto();
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if std::env::var("BENCH_ONLY").as_deref() != Ok("tracking") {
        webhook_throughput().await?;
    }
    tracking().await?;
    Ok(())
}
