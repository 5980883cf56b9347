//! Restarts and crashes at each step of the pipeline lose nothing and duplicate nothing.

mod common;

use common::Harness;

#[tokio::test]
async fn crash_right_after_the_webhook_is_answered() {
    let mut h = Harness::start_with_workers(None, &[])
        .await
        .expect("harness");
    let comment = h.command(30, "alice", "/oz fix").await;
    h.crash_and_restart().await;
    h.wait_reaction(comment, "rocket").await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(h.status_comments(30).len(), 1);
}

#[tokio::test]
async fn crashes_at_every_stage_of_a_run() {
    let mut h = Harness::start_with_workers(None, &[])
        .await
        .expect("harness");
    let comment = h.command(31, "alice", "/oz fix the login test").await;
    // While queued / starting.
    h.wait_status_contains(31, "Oz run `").await;
    h.crash_and_restart().await;
    // While working (or, on a slow machine, already done).
    h.wait_for("the run to be followed", || {
        h.status_comment(31)
            .is_some_and(|c| c.body.contains("🏃 Working") || c.body.contains("✅ Done"))
    })
    .await;
    h.crash_and_restart().await;
    h.wait_status_contains(31, "✅ Done").await;
    h.wait_reaction(comment, "rocket").await;
    h.crash_and_restart().await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(h.status_comments(31).len(), 1);
    assert_eq!(
        h.github.reactions(comment),
        vec!["eyes".to_owned(), "rocket".to_owned()]
    );
}

#[tokio::test]
async fn repeated_crashes_during_a_burst_of_commands() {
    let mut h = Harness::start_with_workers(None, &[])
        .await
        .expect("harness");
    let mut comments = Vec::new();
    for number in 40..50 {
        comments.push((number, h.command(number, "alice", "/oz fix").await));
    }
    // Three crashes at later and later points of the burst (each point may already be
    // behind when it is checked: the crash then comes at once).
    let acknowledged = |h: &Harness| {
        comments
            .iter()
            .filter(|(_, c)| h.github.reactions(*c).contains(&"eyes".to_owned()))
            .count()
    };
    h.wait_for("three acknowledgements", || acknowledged(&h) >= 3)
        .await;
    h.crash_and_restart().await;
    h.wait_for("four runs at Oz", || h.sim.run_count() >= 4)
        .await;
    h.crash_and_restart().await;
    h.wait_for("seven status comments", || {
        (40..50).filter(|n| h.status_comment(*n).is_some()).count() >= 7
    })
    .await;
    h.crash_and_restart().await;
    for (_, comment) in &comments {
        h.wait_reaction(*comment, "rocket").await;
    }
    h.settle().await;
    assert_eq!(h.sim.run_count(), 10);
    for (number, _) in comments {
        assert_eq!(h.status_comments(number).len(), 1, "thread {number}");
    }
}
