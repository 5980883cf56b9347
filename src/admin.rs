//! `ozbridge admin`: the operator's commands, run against the configured database while
//! the service runs: list parked work, put it back in line, pause and resume new runs
//! for every replica at once.

use crate::store::Store;
use std::fmt::Write as _;

/// One operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// List parked work.
    ListParked,
    /// Put a parked command, run or notification back in line.
    Retry(String),
    /// Refuse new runs (active ones are still followed).
    Pause,
    /// Start new runs again.
    Resume,
}

/// Runs `command` on `store`; the text to print, or an error for the operator.
pub async fn run(store: &Store, command: &AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::ListParked => {
            let parked = store.parked().await?;
            if parked.is_empty() {
                return Ok("Nothing is parked.\n".into());
            }
            let mut out = format!(
                "{:<13} {:<38} {:<20} {:<40} reason\n",
                "kind", "id", "since", "thread"
            );
            for item in parked {
                let since = chrono::DateTime::from_timestamp_millis(item.since)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:<13} {:<38} {:<20} {:<40} {}",
                    item.kind.name(),
                    item.id,
                    since,
                    item.thread,
                    crate::text::truncate(&item.reason, 200)
                );
            }
            Ok(out)
        }
        AdminCommand::Retry(id) => match store.requeue_parked(id).await? {
            Some(kind) => Ok(format!(
                "The parked {} {id} is back in line with a fresh retry budget.\n",
                kind.name()
            )),
            None => anyhow::bail!("no parked command, run or notification has the id {id}"),
        },
        AdminCommand::Pause => {
            store.set_paused(true).await?;
            Ok(
                "Paused: new runs are refused with a message; active runs are still followed.\n"
                    .into(),
            )
        }
        AdminCommand::Resume => {
            store.set_paused(false).await?;
            Ok("Resumed: new runs start again.\n".into())
        }
    }
}
