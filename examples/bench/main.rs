//! Prints ozbridge's figures on this machine, with its core count. The bridge runs as
//! its own process (`target/release/ozbridge serve` on a SQLite file); the load
//! generator, the Oz simulator, the fake GitHub and the fake Slack run in this one, on
//! loopback (so they share the cores with it, as the figures say).
//!
//! `cargo build --release && cargo run --release --example bench`
//!
//! Sections (`BENCH_ONLY=webhooks,latency` runs some of them):
//! - `webhooks`: GitHub webhooks/s (every comment a command, one in ten) beside a
//!   minimal axum + SQLite floor (each row committed alone, and with group commit), the
//!   intake alone and the whole pipeline; Slack slash commands/s; p50/p99/max of each;
//!   what became of the pipeline's notifications.
//! - `rate`: p50/p99 of the answers at a fixed 1,000 requests/s.
//! - `pipeline`: commands per second carried to their first status comment.
//! - `latency`: webhook → first reaction at 50, 200 and 500 commands/s; Oz state
//!   change → status edit at tracker periods of 1 s and 3 s.
//! - `tracking`: Oz requests and CPU per tick, and memory, with 100, 1,000 and 10,000
//!   runs in progress (`BENCH_TRACKED=100,1000` to choose), fresh and aged.
//! - `history`: idle CPU with 0, 100,000 and 300,000 finished runs; the time to claim
//!   a command with 0, 10,000 and 100,000 pending.
//!
//! `OZBRIDGE_DURABLE=1` runs the bridge in its durable mode (every commit synced).

mod floor;
mod history;
mod latency;
mod load;
mod process;
mod throughput;
mod tracking;

/// Every section, in the order they run.
const SECTIONS: [&str; 6] = [
    "webhooks", "rate", "pipeline", "latency", "tracking", "history",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, port, database, commit] = args.as_slice()
        && flag == "--floor"
    {
        let commit = floor::Commit::parse(commit)
            .ok_or_else(|| anyhow::anyhow!("--floor <port> <database> <each|group>"))?;
        return floor::serve(port.parse()?, database, commit).await;
    }
    ozbridge::install_crypto();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let chosen: Vec<&str> = if only.is_empty() {
        SECTIONS.to_vec()
    } else {
        only.split(',').map(str::trim).collect()
    };
    if let Some(unknown) = chosen.iter().find(|s| !SECTIONS.contains(s)) {
        anyhow::bail!("unknown section {unknown}; the sections are {SECTIONS:?}");
    }
    println!(
        "# ozbridge bench: {} cores, {}{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if std::env::var("OZBRIDGE_DURABLE").is_ok_and(|v| !v.is_empty()) {
            ", durable mode"
        } else {
            ""
        }
    );
    for section in SECTIONS.iter().filter(|s| chosen.contains(s)) {
        match *section {
            "webhooks" => throughput::webhooks().await?,
            "rate" => throughput::fixed_rate().await?,
            "pipeline" => throughput::pipeline_throughput().await?,
            "latency" => {
                latency::first_reaction().await?;
                latency::state_to_edit().await?;
            }
            "tracking" => tracking::tracking().await?,
            _ => {
                history::claim_times().await?;
                history::idle_with_history().await?;
            }
        }
    }
    Ok(())
}
