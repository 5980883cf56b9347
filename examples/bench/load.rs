//! Load generators: signed deliveries (GitHub comments with or without a command, Slack
//! slash commands), sent in a closed loop at concurrency 32 or in an open loop at a
//! fixed rate, and the figures of one load (throughput, p50/p99/max).

use crate::process::{REPO, SECRET, SLACK_CHANNELS, SLACK_SECRET};
use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::payloads::github::CommentEventSpec;
use ozbridge::testkit::payloads::slack::slash_command_body;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests per closed-loop figure.
pub const REQUESTS: usize = 100_000;
/// Requests in flight in a closed loop.
pub const CONCURRENCY: usize = 32;

/// What share of the comments hold a command.
#[derive(Clone, Copy)]
pub enum Mix {
    /// Every comment is a `/oz` command.
    AllCommands,
    /// One comment in ten is; the others are conversation.
    TenthCommands,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::AllCommands => "100 % commands",
            Mix::TenthCommands => "10 % commands",
        }
    }

    fn is_command(self, i: u64) -> bool {
        match self {
            Mix::AllCommands => true,
            Mix::TenthCommands => i.is_multiple_of(10),
        }
    }
}

/// One request of a load: its body and headers.
pub struct Delivery {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// A signed `issue_comment` delivery of about 9.5 KB (a long issue body, as real ones
/// often have), with a `/oz` command or a plain comment, by alice in the bench's
/// repository.
pub fn comment_delivery(comment_id: u64, number: u64, text: &str) -> Delivery {
    comment_delivery_by(REPO, "alice", comment_id, number, text)
}

/// [`comment_delivery`] in `repo` by `author`.
pub fn comment_delivery_by(
    repo: &str,
    author: &str,
    comment_id: u64,
    number: u64,
    text: &str,
) -> Delivery {
    let body = CommentEventSpec {
        issue_body: &issue_body(),
        ..CommentEventSpec::created(repo, number, comment_id, author, text)
    }
    .payload()
    .to_string();
    let headers = vec![
        ("X-GitHub-Event", "issue_comment".to_owned()),
        ("X-GitHub-Delivery", format!("bench-{comment_id}")),
        ("X-Hub-Signature-256", sign_github(SECRET, body.as_bytes())),
    ];
    Delivery { body, headers }
}

/// The description of every issue of the benchmark (8,500 characters, as long issues
/// often have): in every delivery, and on the fake GitHub for the runs to read.
pub fn issue_body() -> String {
    "The login test fails about one run in five on CI. ".repeat(170)
}

/// The text of a command whose run stays in progress until cancelled.
pub const ENDLESS_COMMAND: &str = "/oz fix the flaky login test [sim:endless]";

/// `count` GitHub deliveries of `mix` over 500 issues, with distinct comment ids from
/// `first_comment`.
pub fn deliveries(mix: Mix, first_comment: u64, count: usize) -> Arc<Vec<Delivery>> {
    Arc::new(
        (0..count as u64)
            .map(|i| {
                let text = if mix.is_command(i) {
                    ENDLESS_COMMAND
                } else {
                    "Thanks, that reproduces it here too; see the second log."
                };
                comment_delivery(first_comment + i, 1 + i % 500, text)
            })
            .collect(),
    )
}

/// `count` signed `/oz` slash commands over the channels.
pub fn slash_commands(response_url: &str, count: usize) -> Arc<Vec<Delivery>> {
    let now = chrono::Utc::now().timestamp();
    Arc::new(
        (0..count)
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
pub struct Figures {
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Figures {
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort();
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile(&latencies, 0.50),
            p99: quantile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }
}

/// The `q` quantile of sorted `values`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Milliseconds, for printing.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.per_second,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?)
}

/// Sends one delivery; every answer must be 2xx.
async fn send(client: &reqwest::Client, url: &str, delivery: &Delivery) -> anyhow::Result<()> {
    let mut request = client.post(url).body(delivery.body.clone());
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    let status = request.send().await?.status();
    anyhow::ensure!(status.is_success(), "answered {status}");
    Ok(())
}

/// Sends `deliveries` to `url` in a closed loop at concurrency 32.
pub async fn closed_loop(url: &str, deliveries: Arc<Vec<Delivery>>) -> anyhow::Result<Figures> {
    let client = client()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, deliveries, next) = (
            client.clone(),
            url.to_owned(),
            deliveries.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(delivery) = deliveries.get(next.fetch_add(1, Ordering::Relaxed)) {
                let t = Instant::now();
                send(&client, &url, delivery).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Figures::of(latencies, started.elapsed()))
}

/// Sends `deliveries` to `url` at `rate` per second whatever the answers take (an open
/// loop); each latency counts from when its request was due, so a stall is not hidden
/// by requests that were never sent. Calls `sent(i)` as delivery `i` goes out.
pub async fn open_loop(
    url: &str,
    deliveries: Arc<Vec<Delivery>>,
    rate: f64,
    sent: impl Fn(usize) + Send + Sync + 'static,
) -> anyhow::Result<Figures> {
    let client = client()?;
    let sent = Arc::new(sent);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(deliveries.len());
    for i in 0..deliveries.len() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (client, url, deliveries, sent) = (
            client.clone(),
            url.to_owned(),
            deliveries.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            sent(i);
            send(&client, &url, &deliveries[i]).await?;
            anyhow::Ok(due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok(Figures::of(latencies, started.elapsed()))
}
