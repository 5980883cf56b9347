//! The bridge under test as its own process (`target/release/ozbridge serve`) on a
//! SQLite file, with the Oz simulator, the fake GitHub and the fake Slack it talks to
//! served from this one; and what the kernel says the process costs (memory, CPU).

use ozbridge::testkit::github::FakeGithub;
use ozbridge::testkit::oz::OzSim;
use ozbridge::testkit::slack::FakeSlack;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;

pub const SECRET: &str = "bench-secret";
pub const SLACK_TOKEN: &str = "xoxb-bench";
pub const SLACK_SECRET: &str = "bench-signing-secret";
/// Channels the slash commands are spread over (the bot is in each).
pub const SLACK_CHANNELS: usize = 24;
/// The repository every GitHub command comes from.
pub const REPO: &str = "acme/widgets";

/// How the bridge is started.
#[derive(Clone, Copy)]
pub struct Options {
    /// Workers per pipeline stage (0: intake only).
    pub workers: usize,
    /// The tracker's period.
    pub tick: Duration,
    /// Conversations read per tick for checklists (the default is 10; 0 turns
    /// checklists off).
    pub conversation_budget: usize,
}

impl Options {
    /// Intake only: no pipeline.
    pub const INTAKE_ONLY: Self = Self {
        workers: 0,
        ..Self::FULL
    };
    /// The whole pipeline with the default workers.
    pub const FULL: Self = Self {
        workers: 4,
        tick: Duration::from_secs(1),
        conversation_budget: 10,
    };
}

/// The bridge's process; killed when dropped.
pub struct Bridge {
    child: std::process::Child,
    pub addr: String,
}

impl Bridge {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, MB.
    pub fn rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// CPU time it used so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(&self.pid().to_string())
    }

    /// Stops it at once, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) process `pid` ("self": this one) used so far, from
/// `/proc/<pid>/stat` (in the kernel's 10 ms clock ticks, `USER_HZ` being 100 on Linux).
pub fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Puts issue `number` of `repo` on the fake GitHub, as the benchmark's deliveries
/// describe it.
pub fn add_issue(github: &FakeGithub, repo: &str, number: u64) {
    let body = crate::load::issue_body();
    github.add_issue(repo, number, "Login test is flaky", Some(&body), &[]);
}

/// The fakes a bridge talks to, served on loopback.
pub struct Fakes {
    pub sim: OzSim,
    pub github: FakeGithub,
    /// Kept serving while the bridge runs.
    _slack: FakeSlack,
    oz_url: String,
    github_url: String,
    slack_api: String,
    /// The fake Slack's `response_url` prefix.
    pub hooks: String,
}

impl Fakes {
    pub async fn serve() -> anyhow::Result<Self> {
        let sim = OzSim::new(Duration::from_millis(200));
        let oz_url = sim.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
        let github = FakeGithub::new();
        let github_url = github
            .serve(TcpListener::bind("127.0.0.1:0").await?)
            .await?;
        github.set_permission(REPO, "alice", "write");
        // The issues the webhook figures comment on (see `load::deliveries`).
        for number in 1..=500 {
            add_issue(&github, REPO, number);
        }
        let slack = FakeSlack::new(SLACK_TOKEN);
        let (slack_api, hooks) = slack.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
        for channel in 0..SLACK_CHANNELS {
            slack.add_channel(&format!("C{channel}"), true);
        }
        Ok(Self {
            sim,
            github,
            _slack: slack,
            oz_url,
            github_url,
            slack_api,
            hooks,
        })
    }

    /// Where a slash command's private answers go.
    pub fn response_url(&self) -> String {
        format!("{}commands/T0ACME/bench", self.hooks)
    }

    /// Starts a bridge on the SQLite database in `dir` (created when missing).
    pub async fn bridge(&self, dir: &Path, options: Options) -> anyhow::Result<Bridge> {
        let durable = std::env::var("OZBRIDGE_DURABLE").unwrap_or_default();
        let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
        let child = std::process::Command::new(release_binary()?)
            .arg("serve")
            .env("WARP_API_KEY", "k")
            .env("OZ_API_URL", &self.oz_url)
            .env("GITHUB_API_URL", &self.github_url)
            .env("GITHUB_TOKEN", "t")
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("SLACK_BOT_TOKEN", SLACK_TOKEN)
            .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
            .env("SLACK_API_URL", &self.slack_api)
            .env("SLACK_RESPONSE_URL_PREFIX", &self.hooks)
            .env("DATABASE_URL", database_url(dir))
            .env("OZ_TICK_INTERVAL_SECS", options.tick.as_secs().to_string())
            .env("OZBRIDGE_WORKERS", options.workers.to_string())
            .env(
                "OZ_CONVERSATION_BUDGET",
                options.conversation_budget.to_string(),
            )
            .env("OZBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("OZBRIDGE_DURABLE", durable)
            // One person sends everything here: lift the abuse limits.
            .env("OZBRIDGE_MAX_RUNS_PER_USER", "10000")
            .env("OZBRIDGE_MAX_RUNS_PER_PLACE", "100000")
            .env("OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR", "100000")
            .env("OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY", "1000000000")
            .spawn()?;
        let mut bridge = Bridge {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let health = format!("http://{}/healthz", bridge.addr);
        for _ in 0..300 {
            if reqwest::get(&health).await.is_ok() {
                return Ok(bridge);
            }
            if let Some(status) = bridge.child.try_wait()? {
                anyhow::bail!("the bridge stopped at its start: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the bridge did not start")
    }
}

/// The bridge's database in `dir`.
pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}/bench.db", dir.display())
}

/// `target/release/ozbridge`, beside this example (`BENCH_BINARY` names another, such
/// as a build with symbols for a profiler).
fn release_binary() -> anyhow::Result<PathBuf> {
    if let Ok(binary) = std::env::var("BENCH_BINARY") {
        return Ok(PathBuf::from(binary));
    }
    let binary = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("ozbridge"))
        .ok_or_else(|| anyhow::anyhow!("cannot locate target/release"))?;
    anyhow::ensure!(
        binary.exists(),
        "build the binary first: cargo build --release"
    );
    Ok(binary)
}

/// A connection to a bridge's database from this process (SQLite allows it beside the
/// bridge's own), for reading what it did and for preparing history.
pub async fn open_database(dir: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&database_url(dir))?
        .busy_timeout(Duration::from_secs(30));
    Ok(options.connect().await?)
}

/// Waits until `done` holds, looking every 50 ms, for at most `limit`; whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}
