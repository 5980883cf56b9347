//! The tracker's cost with 100, 1,000 and 10,000 runs in progress: Oz requests per tick
//! (list calls and their pages, per-run GETs, conversation reads) and the bridge's CPU
//! per tick, while nothing changes (fresh runs), once every run is older than ten
//! minutes and unseen by the list for as long (aged), and, at 1,000, while every run's
//! agent reports work all the time; and the bridge's memory at each size.

use crate::load::{ENDLESS_COMMAND, closed_loop, comment_delivery_by};
use crate::process::{Bridge, Options, open_database};
use crate::throughput::Up;
use ozbridge::testkit::oz::OzSim;
use std::sync::Arc;
use std::time::Duration;

/// How many runs are tracked at each step (`BENCH_TRACKED=100,1000` to choose).
fn sizes() -> Vec<usize> {
    std::env::var("BENCH_TRACKED")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![100, 1_000, 10_000])
}

/// How long each figure is watched.
const WINDOW: Duration = Duration::from_secs(10);

/// Oz calls and CPU over one window.
struct Window {
    lists: u64,
    gets: u64,
    conversations: u64,
    cpu: Duration,
    ticks: f64,
}

impl Window {
    async fn watch(sim: &OzSim, bridge: &Bridge) -> Self {
        let calls = |op: &str| sim.calls(op);
        let before = (
            calls("GET /agent/runs"),
            calls("GET /agent/runs/{id}"),
            calls("GET /agent/runs/{id}/conversation"),
            bridge.cpu(),
        );
        tokio::time::sleep(WINDOW).await;
        Self {
            lists: calls("GET /agent/runs") - before.0,
            gets: calls("GET /agent/runs/{id}") - before.1,
            conversations: calls("GET /agent/runs/{id}/conversation") - before.2,
            cpu: bridge.cpu().saturating_sub(before.3),
            ticks: WINDOW.as_secs_f64(),
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "per tick: {:.1} list calls (pages included), {:.1} per-run GETs, {:.1} conversation reads \
             ({} GETs in {} s); CPU {:.1} ms per tick",
            self.lists as f64 / self.ticks,
            self.gets as f64 / self.ticks,
            self.conversations as f64 / self.ticks,
            self.gets,
            WINDOW.as_secs(),
            self.cpu.as_secs_f64() * 1e3 / self.ticks,
        )
    }
}

/// Every tracked run's agent does work every half second until aborted.
fn busy_agents(sim: &OzSim) -> tokio::task::JoinHandle<()> {
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
}

/// Starts runs through webhooks until `count` are in progress with their status
/// posted (the first `have` already are); how long the new ones took. The runs are
/// spread as in a large installation: ten per repository and three per person, so
/// that each stays within the default limits (which the benchmark lifts anyway).
async fn grow(up: &Up, have: usize, count: usize) -> anyhow::Result<String> {
    let started = tokio::time::Instant::now();
    let cpu = (up.bridge.cpu(), crate::process::cpu_of("self"));
    let deliveries = Arc::new(
        (have as u64..count as u64)
            .map(|i| {
                let (repo, author) = (format!("acme/repo{}", i / 10), format!("dev{}", i / 3));
                up.fakes.github.set_permission(&repo, &author, "write");
                crate::process::add_issue(&up.fakes.github, &repo, 10_000 + i);
                comment_delivery_by(&repo, &author, 5_000_000 + i, 10_000 + i, ENDLESS_COMMAND)
            })
            .collect(),
    );
    closed_loop(&up.github_url(), deliveries).await?;
    let mut conn = open_database(up.dir.path()).await?;
    loop {
        let (posted, unsent): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM runs WHERE phase = 'active' AND posted_version >= version),
                    (SELECT COUNT(*) FROM outbox WHERE status = 'pending')",
        )
        .fetch_one(&mut conn)
        .await?;
        if posted as usize >= count && unsent == 0 {
            let took = started.elapsed().as_secs_f64();
            return Ok(format!(
                "{:.1} s to start the new ones through webhooks and the pipeline: {:.0} runs/s; \
                 CPU of the bridge {:.1} s, of the fakes and load generator {:.1} s",
                took,
                (count - have) as f64 / took,
                up.bridge.cpu().saturating_sub(cpu.0).as_secs_f64(),
                crate::process::cpu_of("self")
                    .saturating_sub(cpu.1)
                    .as_secs_f64(),
            ));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "only {posted} of {count} runs in progress after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The tracker alone (checklists off, so a window shows its list calls and per-run
/// GETs only) at each size, fresh and aged; then, with checklists on as by default,
/// 1,000 runs whose agents all report work.
pub async fn tracking() -> anyhow::Result<()> {
    println!(
        "\n## Tracking (tick 1 s, each figure over {} s; checklists off but in the last figure)",
        WINDOW.as_secs()
    );
    let up = Up::start(Options {
        conversation_budget: 0,
        ..Options::FULL
    })
    .await?;
    println!("bridge idle RSS: {:.1} MB", up.bridge.rss_mb());
    let mut have = 0;
    for size in sizes() {
        let took = grow(&up, have, size).await?;
        have = size;
        println!("{size} runs in progress ({took})");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fresh = Window::watch(&up.fakes.sim, &up.bridge).await;
        println!("  fresh, nothing changing: {fresh}");
        println!(
            "  RSS with {size} tracked runs: {:.1} MB",
            up.bridge.rss_mb()
        );
        // Ten minutes pass without the list mentioning any of them.
        let mut conn = open_database(up.dir.path()).await?;
        sqlx::query(
            "UPDATE runs SET check_at = 0, created_at = created_at - 660000 WHERE phase = 'active'",
        )
        .execute(&mut conn)
        .await?;
        let aged = Window::watch(&up.fakes.sim, &up.bridge).await;
        // The ones not fetched yet would be over the next ticks, 20 a tick; they are
        // set as just seen so that the next size's figures are its own.
        let now = chrono::Utc::now().timestamp_millis();
        let left =
            sqlx::query("UPDATE runs SET check_at = $1 WHERE phase = 'active' AND check_at <= $2")
                .bind(now + 600_000)
                .bind(now)
                .execute(&mut conn)
                .await?
                .rows_affected();
        println!(
            "  aged (older than 10 minutes, unseen by the list for as long): {aged}; \
             {left} not fetched yet (they would be, 20 a tick)"
        );
    }
    drop(up);
    let working = Up::start(Options::FULL).await?;
    grow(&working, 0, 1_000).await?;
    let agents = busy_agents(&working.fakes.sim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Window::watch(&working.fakes.sim, &working.bridge).await;
    agents.abort();
    println!("1000 runs whose agents all report work every 0.5 s, checklists on: {window}");
    println!(
        "  RSS with 1000 working runs: {:.1} MB",
        working.bridge.rss_mb()
    );
    Ok(())
}
