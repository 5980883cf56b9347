//! `ozbridge admin`, the real binary, against the database a running service uses:
//! parked work listed and put back in line, and the kill switch shared by replicas.

mod common;

use common::Harness;
use ozbridge::testkit::oz::{Fault, FaultKind};

/// Runs `ozbridge admin ARGS` on the harness's database; its exit status and output.
async fn admin(h: &Harness, args: &[&str]) -> (bool, String) {
    let database = h.config.database_url.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"))
            .arg("admin")
            .args(&args)
            .env_clear()
            .env("DATABASE_URL", database)
            .output()
            .expect("run ozbridge admin");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn parked_runs_are_listed_and_retried_from_the_command_line() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_RETRY_FOR_SECS", "1")])
        .await
        .unwrap();
    let (ok, listing) = admin(&h, &["list", "--parked"]).await;
    assert!(ok, "{listing}");
    assert!(listing.contains("Nothing is parked"), "{listing}");
    h.sim.inject(Fault {
        method: Some(axum::http::Method::POST),
        path_prefix: "/agent/runs".into(),
        kind: FaultKind::Status(503),
        times: u32::MAX,
    });
    let comment = h.command(100, "alice", "/oz fix it").await;
    let status = h.wait_status_contains(100, "⏸ Parked").await;
    let (ok, listing) = admin(&h, &["list", "--parked"]).await;
    assert!(ok, "{listing}");
    let parked = h.store().parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    let id = &parked[0].id;
    assert!(listing.contains(id) && listing.contains("run"), "{listing}");
    assert!(
        status.body.contains(&format!("ozbridge admin retry {id}")),
        "{}",
        status.body
    );
    let (ok, text) = admin(&h, &["retry", "no-such-id"]).await;
    assert!(!ok && text.contains("no parked"), "{text}");
    h.sim.clear_faults();
    let (ok, text) = admin(&h, &["retry", id]).await;
    assert!(ok && text.contains("back in line"), "{text}");
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(100, "✅ Done").await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn pause_refuses_new_runs_on_every_replica_until_resumed() {
    let mut h = Harness::start().await;
    let (ok, text) = admin(&h, &["pause"]).await;
    assert!(ok, "{text}");
    h.command(101, "alice", "/oz fix it").await;
    let reply = h.wait_reply_contains(101, "paused by its operator").await;
    assert!(reply.contains("@alice"), "{reply}");
    assert_eq!(h.sim.run_count(), 0);
    let (ok, text) = admin(&h, &["resume"]).await;
    assert!(ok, "{text}");
    let comment = h.command(101, "alice", "/oz fix it now").await;
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn the_environment_can_pause_new_runs_too() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_PAUSED", "1")])
        .await
        .unwrap();
    h.command(102, "alice", "/oz fix it").await;
    h.wait_reply_contains(102, "paused by its operator").await;
    assert_eq!(h.sim.run_count(), 0);
}
