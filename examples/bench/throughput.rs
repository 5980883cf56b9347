//! Webhooks and slash commands per second: the floor (both commit variants), the intake
//! alone and the whole pipeline, each mix in one run side by side; answers at a fixed
//! 1,000 requests per second; and how many commands per second the pipeline carries all
//! the way to their first status post.

use crate::floor::{Commit, Floor};
use crate::load::{
    self, CONCURRENCY, ENDLESS_COMMAND, Mix, REQUESTS, closed_loop, deliveries, open_loop,
    quantile, slash_commands,
};
use crate::process::{Fakes, Options, REPO, open_database};
use ozbridge::testkit::github::GithubEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A bridge with its fakes, on a database of its own.
pub struct Up {
    pub fakes: Fakes,
    pub bridge: crate::process::Bridge,
    pub dir: tempfile::TempDir,
}

impl Up {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let fakes = Fakes::serve().await?;
        let dir = tempfile::tempdir()?;
        let bridge = fakes.bridge(dir.path(), options).await?;
        Ok(Self { fakes, bridge, dir })
    }

    pub fn github_url(&self) -> String {
        format!("http://{}/github/webhook", self.bridge.addr)
    }

    pub fn slack_url(&self) -> String {
        format!("http://{}/slack/commands", self.bridge.addr)
    }
}

/// How many times each mix is measured (`BENCH_ROUNDS`, default 2): every round runs
/// the floors, the intake alone and the whole pipeline one after the other, and each
/// ratio is taken between figures of the same round. The machine's speed drifts by a
/// tenth or more over minutes (other work on a shared host), which a ratio between
/// figures measured minutes apart would carry.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2)
}

/// Lets the kernel write out what the last process left dirty before the next one is
/// measured (a floor storing whole deliveries leaves a gigabyte behind), so no figure
/// pays for the writeback of the one before it.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// The figures of one round of one mix, in requests per second.
struct Round {
    floors: [f64; 3],
    intake: f64,
    full: f64,
}

/// One round of one mix: the floors (the group-commit one last, right before the
/// intake it is compared with), the intake alone, the whole pipeline.
async fn mix_round(mix: Mix, first: u64, report_outbox: bool) -> anyhow::Result<Round> {
    // Kept in the order of [`Commit::ALL`].
    let mut floors = [0.0; 3];
    for (slot, commit) in [
        (0, Commit::Each),
        (2, Commit::GroupWhole),
        (1, Commit::Group),
    ] {
        let floor = Floor::start(commit)?;
        let figures = closed_loop(&floor.url().await?, deliveries(mix, first, REQUESTS)).await?;
        println!(
            "floor (axum, verify + parse + one SQLite row, {} commit), {}: {figures}",
            commit.name(),
            mix.name()
        );
        floors[slot] = figures.per_second;
        drop(floor);
        settle();
    }
    let intake = Up::start(Options::INTAKE_ONLY).await?;
    let figures = closed_loop(&intake.github_url(), deliveries(mix, first, REQUESTS)).await?;
    println!(
        "ozbridge intake only, {}: {figures} ({:.0} % of the floor, {:.0} % of its group-commit variant, \
         {:.0} % of the group-commit variant storing whole deliveries), RSS {:.1} MB",
        mix.name(),
        100.0 * figures.per_second / floors[0],
        100.0 * figures.per_second / floors[1],
        100.0 * figures.per_second / floors[2],
        intake.bridge.rss_mb()
    );
    drop(intake);
    settle();
    let full = Up::start(Options::FULL).await?;
    if report_outbox {
        println!("bridge idle RSS: {:.1} MB", full.bridge.rss_mb());
    }
    let with_pipeline = closed_loop(&full.github_url(), deliveries(mix, first, REQUESTS)).await?;
    println!(
        "ozbridge full pipeline, {}: {with_pipeline} ({:.0} % of intake only), RSS {:.1} MB",
        mix.name(),
        100.0 * with_pipeline.per_second / figures.per_second,
        full.bridge.rss_mb()
    );
    if report_outbox {
        for wait in [0, 30] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            println!(
                "  notifications {wait} s after the load: {}",
                outbox_report(&full).await?
            );
        }
    }
    drop(full);
    settle();
    Ok(Round {
        floors,
        intake: figures.per_second,
        full: with_pipeline.per_second,
    })
}

/// Ratios in per cent: `a %, b % (median m %)`.
fn ratios(values: impl Iterator<Item = f64>) -> String {
    let mut values: Vec<f64> = values.map(|v| 100.0 * v).collect();
    values.sort_by(f64::total_cmp);
    let listed: Vec<String> = values.iter().map(|v| format!("{v:.0} %")).collect();
    let middle = values.len() / 2;
    let median = if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    };
    format!("{} (median {median:.0} %)", listed.join(", "))
}

/// GitHub deliveries per second: floor, intake only and full pipeline for each mix, in
/// [`rounds`]; then Slack slash commands; then what became of the pipeline's
/// notifications.
pub async fn webhooks() -> anyhow::Result<()> {
    let rounds = rounds();
    println!(
        "\n## Webhooks, closed loop, concurrency {CONCURRENCY}, {REQUESTS} requests each, {rounds} round(s)"
    );
    for (index, mix) in [Mix::AllCommands, Mix::TenthCommands]
        .into_iter()
        .enumerate()
    {
        let first = 1_000_000 * (index as u64 + 1);
        let mut measured = Vec::new();
        for round in 0..rounds {
            measured.push(mix_round(mix, first, index == 0 && round == 0).await?);
        }
        println!("{}, ratios within each round:", mix.name());
        let of = |f: fn(&Round) -> f64| ratios(measured.iter().map(f));
        println!("  intake only / floor: {}", of(|r| r.intake / r.floors[0]));
        println!(
            "  intake only / group-commit floor: {}",
            of(|r| r.intake / r.floors[1])
        );
        println!(
            "  full pipeline / intake only: {}",
            of(|r| r.full / r.intake)
        );
    }
    let mut intake_only = 0.0;
    for options in [Options::INTAKE_ONLY, Options::FULL] {
        let up = Up::start(options).await?;
        let figures = closed_loop(
            &up.slack_url(),
            slash_commands(&up.fakes.response_url(), REQUESTS),
        )
        .await?;
        if options.workers == 0 {
            intake_only = figures.per_second;
            println!("ozbridge Slack slash commands, intake only: {figures}");
        } else {
            println!(
                "ozbridge Slack slash commands, full pipeline: {figures} ({:.0} % of intake only)",
                100.0 * figures.per_second / intake_only
            );
        }
    }
    Ok(())
}

/// What became of the notifications the bridge queued: how many by status, and why the
/// dead ones died.
async fn outbox_report(up: &Up) -> anyhow::Result<String> {
    let mut conn = open_database(up.dir.path()).await?;
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

/// GitHub commands at a fixed 1,000 per second for 10 s, intake only and full pipeline.
pub async fn fixed_rate() -> anyhow::Result<()> {
    println!("\n## Answers at a fixed 1,000 requests/s (open loop, 10 s, every comment a command)");
    for options in [Options::INTAKE_ONLY, Options::FULL] {
        let up = Up::start(options).await?;
        let figures = open_loop(
            &up.github_url(),
            deliveries(Mix::AllCommands, 3_000_000, 10_000),
            1_000.0,
            |_| {},
        )
        .await?;
        let label = if options.workers == 0 {
            "intake only"
        } else {
            "full pipeline"
        };
        println!("ozbridge {label} at 1,000 req/s: {figures}");
    }
    Ok(())
}

/// When each GitHub comment got the bridge's first reaction and its issue the first
/// status comment, as the fake GitHub saw them.
#[derive(Default)]
pub struct Sightings {
    pub reactions: HashMap<u64, Instant>,
    pub status_posts: HashMap<u64, Instant>,
    /// When each comment was edited.
    pub edits: HashMap<u64, Vec<Instant>>,
    /// Events the watcher fell too far behind to see (their samples are missing).
    pub missed: u64,
}

/// Records what the fake GitHub sees, as it happens.
pub fn watch(fakes: &Fakes) -> Arc<Mutex<Sightings>> {
    let sightings = Arc::new(Mutex::new(Sightings::default()));
    let mut events = fakes.github.subscribe();
    let seen = sightings.clone();
    tokio::spawn(async move {
        loop {
            let event = events.recv().await;
            let now = Instant::now();
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Ok(GithubEvent::Reaction { comment_id, .. }) => {
                    seen.reactions.entry(comment_id).or_insert(now);
                }
                Ok(GithubEvent::CommentCreated { number, .. }) => {
                    seen.status_posts.entry(number).or_insert(now);
                }
                Ok(GithubEvent::CommentEdited { id, .. }) => {
                    seen.edits.entry(id).or_default().push(now);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => seen.missed += n,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    sightings
}

/// `count` commands on issues `first..first + count`, one each, on comments that exist
/// on the fake GitHub: the deliveries and the comments' ids.
pub fn commands_on_new_issues(
    fakes: &Fakes,
    first: u64,
    count: u64,
    text: &str,
) -> (Arc<Vec<load::Delivery>>, Vec<u64>) {
    let mut comments = Vec::new();
    let deliveries = (first..first + count)
        .map(|number| {
            let comment = fakes.github.add_user_comment(REPO, number, "alice", text);
            crate::process::add_issue(&fakes.github, REPO, number);
            comments.push(comment);
            load::comment_delivery(comment, number, text)
        })
        .collect();
    (Arc::new(deliveries), comments)
}

/// Commands carried all the way (permission, run created, first status comment) per
/// second: 2,000 commands on 2,000 issues sent at once, timed until every issue has
/// its status comment.
pub async fn pipeline_throughput() -> anyhow::Result<()> {
    const COMMANDS: u64 = 2_000;
    println!("\n## Pipeline throughput ({COMMANDS} commands on as many issues, sent at once)");
    let up = Up::start(Options::FULL).await?;
    let sightings = watch(&up.fakes);
    let (deliveries, _) = commands_on_new_issues(&up.fakes, 100_000, COMMANDS, ENDLESS_COMMAND);
    let started = Instant::now();
    let answers = closed_loop(&up.github_url(), deliveries).await?;
    let all_posted = crate::process::wait_until(Duration::from_secs(300), || {
        sightings.lock().map_or(0, |s| s.status_posts.len()) >= COMMANDS as usize
    })
    .await;
    let seen = sightings.lock().unwrap_or_else(|p| p.into_inner());
    let mut posts: Vec<Duration> = seen
        .status_posts
        .values()
        .map(|at| at.duration_since(started))
        .collect();
    posts.sort();
    let last = posts.last().copied().unwrap_or_default();
    println!(
        "answers: {answers}; status comments: {} of {COMMANDS}{} in {:.1} s: {:.0} commands/s \
         (permission checked, run created in Oz, reaction and status comment posted); \
         Oz runs created: {}; first status comment after p50 {:.1} s, last {:.1} s",
        posts.len(),
        if all_posted { "" } else { " (gave up waiting)" },
        last.as_secs_f64(),
        posts.len() as f64 / last.as_secs_f64().max(1e-9),
        up.fakes.sim.run_count(),
        quantile(&posts, 0.5).as_secs_f64(),
        last.as_secs_f64(),
    );
    Ok(())
}

/// Prints a latency distribution.
pub fn distribution(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        load::ms(quantile(samples, 0.5)),
        load::ms(quantile(samples, 0.95)),
        load::ms(quantile(samples, 0.99)),
        load::ms(samples.last().copied().unwrap_or_default()),
        samples.len()
    )
}
