//! The floor ozbridge's intake is compared with: a minimal axum service that verifies
//! the signature, parses the JSON and stores one SQLite row (WAL, `synchronous =
//! NORMAL`) for a comment that holds a command, nothing for one that does not. Three
//! variants: each request commits its own row (the command line), one writer task
//! commits every row waiting at that moment in one transaction (group commit), and the
//! same storing the whole delivery (about 10 KB a row instead of 60 bytes: what storing
//! the body with each command would cost, which ozbridge no longer does). Each
//! runs in its own process: this program with
//! `--floor <port> <database> <each|group|group-whole>`.

use crate::process::SECRET;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How the floor commits its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// One transaction per request.
    Each,
    /// Concurrent requests' rows in one transaction.
    Group,
    /// Group commit of rows holding the whole delivery.
    GroupWhole,
}

impl Commit {
    pub fn name(self) -> &'static str {
        match self {
            Commit::Each => "each",
            Commit::Group => "group",
            Commit::GroupWhole => "group-whole",
        }
    }

    /// Every variant, in the order they are measured.
    pub const ALL: [Commit; 3] = [Commit::Each, Commit::Group, Commit::GroupWhole];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The floor's process; killed when dropped.
pub struct Floor {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Floor {
    pub fn start(commit: Commit) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("--floor")
            .arg(port.to_string())
            .arg(dir.path().join("floor.db"))
            .arg(commit.name())
            .spawn()?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// Its webhook URL, once it answers.
    pub async fn url(&self) -> anyhow::Result<String> {
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

type Row = (String, String, oneshot::Sender<bool>);

/// Where the floor's rows go, and whether a row holds the whole delivery.
#[derive(Clone)]
enum Writer {
    Each(sqlx::SqlitePool),
    Group(mpsc::Sender<Row>, bool),
}

const INSERT: &str = "INSERT INTO inbox (delivery, command) VALUES (?, ?) ON CONFLICT DO NOTHING";

impl Writer {
    async fn insert(&self, delivery: String, command: String) -> bool {
        match self {
            Writer::Each(pool) => sqlx::query(INSERT)
                .bind(delivery)
                .bind(command)
                .execute(pool)
                .await
                .is_ok(),
            Writer::Group(rows, _) => {
                let (done, answer) = oneshot::channel();
                rows.send((delivery, command, done)).await.is_ok() && answer.await.unwrap_or(false)
            }
        }
    }
}

/// Commits every row waiting at that moment (up to 256) in one transaction.
async fn group_writer(pool: sqlx::SqlitePool, mut rows: mpsc::Receiver<Row>) {
    while let Some(first) = rows.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rows.try_recv() {
                Ok(row) => batch.push(row),
                Err(_) => break,
            }
        }
        let committed = async {
            let mut transaction = pool.begin().await?;
            for (delivery, command, _) in &batch {
                sqlx::query(INSERT)
                    .bind(delivery)
                    .bind(command)
                    .execute(&mut *transaction)
                    .await?;
            }
            transaction.commit().await
        }
        .await
        .is_ok();
        for (_, _, done) in batch {
            let _ = done.send(committed);
        }
    }
}

/// Serves the floor until killed.
pub async fn serve(port: u16, database: &str, commit: Commit) -> anyhow::Result<()> {
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
        .max_connections(if commit == Commit::Each { 8 } else { 1 })
        .connect_with(options)
        .await?;
    sqlx::query("CREATE TABLE inbox (delivery TEXT PRIMARY KEY, command TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let writer = match commit {
        Commit::Each => Writer::Each(pool),
        Commit::Group | Commit::GroupWhole => {
            let (rows, receiver) = mpsc::channel(1024);
            tokio::spawn(group_writer(pool, receiver));
            Writer::Group(rows, commit == Commit::GroupWhole)
        }
    };
    async fn webhook(
        State(writer): State<Writer>,
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
        let row = match writer {
            Writer::Group(_, true) => String::from_utf8_lossy(&body).into_owned(),
            _ => command.to_owned(),
        };
        if writer.insert(delivery.to_owned(), row).await {
            StatusCode::ACCEPTED
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
    let app = axum::Router::new()
        .route(
            "/github/webhook",
            axum::routing::post(webhook).get(|| async { "floor" }),
        )
        .with_state(writer);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
