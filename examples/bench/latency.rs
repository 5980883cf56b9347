//! How soon users see something: webhook → first 👀 reaction at a fixed rate of
//! commands (50, 200 and 500 per second), and Oz state change → edit of the thread's
//! status comment at tracker periods of 1 s and 3 s.

use crate::load::{ENDLESS_COMMAND, open_loop};
use crate::process::{Options, REPO, open_database, wait_until};
use crate::throughput::{Up, commands_on_new_issues, distribution, watch};
use ozbridge::ids::OzRunId;
use ozbridge::oz::types::RunState;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds each rate of the first-reaction figure lasts.
const RATE_SECONDS: f64 = 6.0;

/// Webhook → first reaction on the comment, at 50, 200 and 500 commands per second
/// (each on an issue of its own, so each starts a run), on one bridge.
pub async fn first_reaction() -> anyhow::Result<()> {
    println!(
        "\n## Webhook → first reaction (open loop, {RATE_SECONDS} s per rate, one new issue per command)"
    );
    let up = Up::start(Options::FULL).await?;
    let sightings = watch(&up.fakes);
    let mut first = 200_000;
    for rate in [50.0, 200.0, 500.0] {
        let count = (rate * RATE_SECONDS) as u64;
        let (deliveries, comments) =
            commands_on_new_issues(&up.fakes, first, count, ENDLESS_COMMAND);
        let sent_at: Arc<Mutex<Vec<Option<Instant>>>> =
            Arc::new(Mutex::new(vec![None; count as usize]));
        let record = sent_at.clone();
        let answers = open_loop(&up.github_url(), deliveries, rate, move |i| {
            if let Ok(mut sent) = record.lock() {
                sent[i] = Some(Instant::now());
            }
        })
        .await?;
        let issues = first..first + count;
        let reacted = wait_until(Duration::from_secs(120), || {
            sightings
                .lock()
                .is_ok_and(|s| comments.iter().all(|c| s.reactions.contains_key(c)))
        })
        .await;
        // The next rate starts once this one's runs have their status comments.
        wait_until(Duration::from_secs(300), || {
            sightings
                .lock()
                .is_ok_and(|s| issues.clone().all(|n| s.status_posts.contains_key(&n)))
        })
        .await;
        let seen = sightings.lock().unwrap_or_else(|p| p.into_inner());
        let sent = sent_at.lock().unwrap_or_else(|p| p.into_inner());
        let mut reactions: Vec<Duration> = comments
            .iter()
            .zip(sent.iter())
            .filter_map(|(comment, sent)| {
                Some(seen.reactions.get(comment)?.duration_since((*sent)?))
            })
            .collect();
        let mut posts: Vec<Duration> = issues
            .clone()
            .zip(sent.iter())
            .filter_map(|(n, sent)| Some(seen.status_posts.get(&n)?.duration_since((*sent)?)))
            .collect();
        println!(
            "{rate:.0} commands/s: answers {answers}; first reaction {}{}; first status comment {}; \
             events the watcher missed (left out of the samples): {}",
            distribution(&mut reactions),
            if reacted { "" } else { " (some never came)" },
            distribution(&mut posts),
            seen.missed,
        );
        first += count;
    }
    Ok(())
}

/// Oz state change → edit of the status comment, at tracker periods of 1 s and 3 s:
/// 40 runs in progress, each moved to SUCCEEDED at its own moment (spread over the
/// ticks), timed until its status comment is edited.
pub async fn state_to_edit() -> anyhow::Result<()> {
    const RUNS: u64 = 40;
    println!("\n## Oz state change → status comment edit ({RUNS} runs per period)");
    for tick in [1, 3] {
        let up = Up::start(Options {
            tick: Duration::from_secs(tick),
            ..Options::FULL
        })
        .await?;
        let sightings = watch(&up.fakes);
        let (deliveries, _) = commands_on_new_issues(&up.fakes, 1, RUNS, ENDLESS_COMMAND);
        crate::load::closed_loop(&up.github_url(), deliveries).await?;
        // Each run in progress, and its status comment showing it.
        let runs = loop {
            let runs = run_issues(&up).await?;
            if runs.len() as u64 == RUNS {
                break runs;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        wait_until(Duration::from_secs(60), || {
            sightings
                .lock()
                .is_ok_and(|s| s.status_posts.len() as u64 == RUNS)
        })
        .await;
        let comments: Vec<(OzRunId, u64)> = runs
            .iter()
            .filter_map(|(run, number)| {
                let status = up.fakes.github.bot_comments(REPO, *number).first()?.id;
                Some((run.clone(), status))
            })
            .collect();
        // Quiet: the runs' session links and states are shown.
        tokio::time::sleep(Duration::from_secs(3 * tick + 2)).await;
        let mut changed = Vec::new();
        for (run, _) in &comments {
            // Spread over the tick: 0.37 of a period apart.
            tokio::time::sleep(Duration::from_millis(370 * tick)).await;
            up.fakes.sim.set_state(run, RunState::Succeeded);
            changed.push(Instant::now());
        }
        wait_until(Duration::from_secs(30), || {
            sightings.lock().is_ok_and(|s| {
                comments.iter().zip(&changed).all(|((_, comment), at)| {
                    s.edits
                        .get(comment)
                        .is_some_and(|edits| edits.iter().any(|t| t > at))
                })
            })
        })
        .await;
        let seen = sightings.lock().unwrap_or_else(|p| p.into_inner());
        let mut latencies: Vec<Duration> = comments
            .iter()
            .zip(&changed)
            .filter_map(|((_, comment), at)| {
                let edited = *seen.edits.get(comment)?.iter().find(|t| *t > at)?;
                Some(edited.duration_since(*at))
            })
            .collect();
        println!("tick {tick} s: {}", distribution(&mut latencies));
    }
    Ok(())
}

/// The Oz run of each run the bridge started, with its issue's number.
async fn run_issues(up: &Up) -> anyhow::Result<Vec<(OzRunId, u64)>> {
    let mut conn = open_database(up.dir.path()).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT oz_run_id, origin FROM runs WHERE oz_run_id IS NOT NULL AND phase = 'active'",
    )
    .fetch_all(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(run, origin)| {
            let origin: serde_json::Value = serde_json::from_str(&origin).ok()?;
            Some((OzRunId(run), origin["number"].as_u64()?))
        })
        .collect())
}
