//! Cost independent of history and backlog: the idle bridge's CPU with 0, 100,000 and
//! 300,000 finished runs in its database, and the time to claim the next command with
//! 0, 10,000 and 100,000 pending.

use crate::load::{comment_delivery, ms};
use crate::process::{Fakes, Options, open_database};
use crate::throughput::distribution;
use anyhow::Context;
use ozbridge::store::Store;
use std::time::{Duration, Instant};

/// How long the idle bridge is watched.
const IDLE_WINDOW: Duration = Duration::from_secs(20);

/// Copies the rows of `table` that are not copies (`~` marks them) `from..to` times,
/// with unique columns suffixed and times moved a second further back per copy.
async fn clone_rows(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
    unique: &[&str],
    times: &[&str],
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let columns: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM pragma_table_info('{table}')"
    )))
    .fetch_all(&mut *conn)
    .await?;
    let names: Vec<&str> = columns.iter().map(|(c,)| c.as_str()).collect();
    let values: Vec<String> = names
        .iter()
        .map(|c| {
            if unique.contains(c) {
                format!("{c} || '~' || n.i")
            } else if times.contains(c) {
                format!("{c} - n.i * 1000")
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    let key = unique[0];
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {to})
         INSERT INTO {table} ({}) SELECT {} FROM {table}, n WHERE {table}.{key} NOT LIKE '%~%'",
        names.join(", "),
        values.join(", ")
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The idle bridge's CPU per second with 0, 100,000 and 300,000 finished runs (each with
/// its command and its delivered notifications).
pub async fn idle_with_history() -> anyhow::Result<()> {
    println!(
        "\n## Idle CPU with finished work in the database ({} s each)",
        IDLE_WINDOW.as_secs()
    );
    let fakes = Fakes::serve().await?;
    let dir = tempfile::tempdir()?;
    let bridge = fakes.bridge(dir.path(), Options::FULL).await?;
    // One real finished run, the template of the others.
    let comment =
        fakes
            .github
            .add_user_comment(crate::process::REPO, 1, "alice", "/oz fix it [sim:succeed]");
    let delivery = comment_delivery(comment, 1, "/oz fix it [sim:succeed]");
    crate::load::closed_loop(
        &format!("http://{}/github/webhook", bridge.addr),
        std::sync::Arc::new(vec![delivery]),
    )
    .await?;
    let mut conn = open_database(dir.path()).await?;
    let finished = async |conn: &mut sqlx::SqliteConnection| -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM runs WHERE phase = 'done' AND posted_version >= version",
        )
        .fetch_one(conn)
        .await?;
        Ok(n)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished(&mut conn).await? == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its notifications delivered too (the finish notice, the final reaction).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut bridge = Some(bridge);
    let mut have = 1;
    for target in [1u64, 100_000, 300_000] {
        if target > have {
            if let Some(running) = bridge.take() {
                running.kill();
            }
            let started = Instant::now();
            clone_rows(
                &mut conn,
                "commands",
                &["id", "dedupe_key", "thread_key"],
                &["received_at", "finished_at", "next_attempt_at"],
                have,
                target,
            )
            .await?;
            clone_rows(
                &mut conn,
                "runs",
                &["id", "command_id", "oz_run_id", "thread_key"],
                &["created_at", "updated_at"],
                have,
                target,
            )
            .await?;
            clone_rows(
                &mut conn,
                "outbox",
                &["id", "dedupe_key"],
                &["created_at", "sent_at", "next_attempt_at"],
                have,
                target,
            )
            .await?;
            clone_rows(
                &mut conn,
                "artifacts",
                &["uid", "run_id"],
                &[],
                have,
                target,
            )
            .await?;
            have = target;
            println!(
                "  ({target} finished runs written in {:.0} s)",
                started.elapsed().as_secs_f64()
            );
            bridge = Some(fakes.bridge(dir.path(), Options::FULL).await?);
            // Past the start (migrations, the first retention pass, the first gauges).
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let Some(running) = bridge.as_ref() else {
            anyhow::bail!("no bridge");
        };
        let (runs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs")
            .fetch_one(&mut conn)
            .await?;
        let (rows,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM commands) + (SELECT COUNT(*) FROM outbox)",
        )
        .fetch_one(&mut conn)
        .await?;
        let before = running.cpu();
        tokio::time::sleep(IDLE_WINDOW).await;
        let cpu = running.cpu().saturating_sub(before);
        println!(
            "idle with {runs} finished runs ({rows} commands and notifications): CPU {:.1} ms/s, RSS {:.1} MB",
            cpu.as_secs_f64() * 1e3 / IDLE_WINDOW.as_secs_f64(),
            running.rss_mb()
        );
    }
    Ok(())
}

/// Time to claim the next pending command with 0, 10,000 and 100,000 pending, on the
/// store itself (this process, a SQLite file).
pub async fn claim_times() -> anyhow::Result<()> {
    println!("\n## Claiming the next command (SQLite, 200 claims each)");
    let dir = tempfile::tempdir()?;
    let store = Store::connect(&crate::process::database_url(dir.path())).await?;
    let mut conn = open_database(dir.path()).await?;
    let mut have = 0;
    for pending in [0u64, 10_000, 100_000] {
        if pending > have {
            if have == 0 {
                store
                    .insert_command("template", &template_command())
                    .await?;
                // Taken out of the inbox into `commands`, as the pipeline takes it,
                // and put back due now: the row the others are cloned from.
                let template = store
                    .claim_command("bench", Duration::from_secs(3600))
                    .await?
                    .context("the template command is claimable")?;
                store
                    .retry_command(&template.id, Duration::ZERO, "template", 0)
                    .await?;
                have = 1;
            }
            clone_rows(
                &mut conn,
                "commands",
                &["id", "dedupe_key", "thread_key"],
                &["received_at"],
                have,
                pending + 200,
            )
            .await?;
            have = pending + 200;
        }
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM commands WHERE status = 'pending'")
                .fetch_one(&mut conn)
                .await?;
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let claimed = store
                .claim_command("bench", Duration::from_secs(3600))
                .await?;
            times.push(t.elapsed());
            anyhow::ensure!(
                claimed.is_some() == (pending > 0),
                "unexpected claim result"
            );
            // Handled, as the dispatcher would: the next claim finds the next one.
            if let Some(command) = claimed {
                store.finish_command(&command.id, None).await?;
            }
        }
        // Back to pending for the next size.
        sqlx::query("UPDATE commands SET status = 'pending', finished_at = NULL, lease_owner = NULL WHERE lease_owner = 'bench'")
            .execute(&mut conn)
            .await?;
        println!(
            "{pending} pending ({count} rows pending before the claims): {}, mean {:.2} ms",
            distribution(&mut times),
            ms(times.iter().sum::<Duration>()) / times.len() as f64
        );
    }
    Ok(())
}

/// A command as the GitHub intake stores it, with a long text.
fn template_command() -> ozbridge::domain::InboxCommand {
    let mut command = ozbridge::testkit::commands::github_command(1, "fix the flaky login test");
    if let ozbridge::domain::Request::Typed { line } = &mut command.request {
        line.continuation = "The login test fails about one run in five on CI. ".repeat(170);
    }
    command
}
