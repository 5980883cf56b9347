//! Abuse limits: runs at once per person and per place, runs per person per hour, and a
//! daily cost budget per place, each refused with a reply that says which.

mod common;

use common::{CHANNEL, Harness, REPO};

#[tokio::test]
async fn one_person_may_have_only_so_many_runs_at_once() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_MAX_RUNS_PER_USER", "1")])
        .await
        .unwrap();
    h.command(110, "alice", "/oz keep going [sim:endless]")
        .await;
    h.wait_status_contains(110, "🏃 Working").await;
    h.command(111, "alice", "/oz another").await;
    let reply = h
        .wait_reply_contains(111, "as one person may have at once (1)")
        .await;
    assert!(reply.contains("Nothing was started"), "{reply}");
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_repository_may_have_only_so_many_runs_at_once() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_MAX_RUNS_PER_PLACE", "1")])
        .await
        .unwrap();
    h.github.set_permission(REPO, "bob", "write");
    h.command(112, "alice", "/oz keep going [sim:endless]")
        .await;
    h.wait_status_contains(112, "🏃 Working").await;
    h.command(113, "bob", "/oz another").await;
    h.wait_reply_contains(113, "already working in this repository")
        .await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_channel_may_have_only_so_many_runs_at_once() {
    let h = Harness::start_with(None, &[("OZBRIDGE_MAX_RUNS_PER_PLACE", "1")])
        .await
        .unwrap();
    h.slash(CHANNEL, "U1", "keep going [sim:endless]").await;
    h.wait_for("the first run to work", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| m.shown().contains("Working"))
    })
    .await;
    h.slash(CHANNEL, "U2", "another").await;
    h.wait_private("already working in this channel").await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn one_person_may_start_only_so_many_runs_an_hour() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_MAX_RUNS_PER_USER_PER_HOUR", "1")])
        .await
        .unwrap();
    let first = h.command(114, "alice", "/oz fix it").await;
    h.wait_reaction(first, "rocket").await;
    h.command(115, "alice", "/oz and this").await;
    h.wait_reply_contains(115, "in the last hour").await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_repository_past_its_daily_budget_starts_nothing_more() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_MAX_COST_PER_PLACE_PER_DAY", "0.05")])
        .await
        .unwrap();
    let first = h.command(116, "alice", "/oz fix it").await;
    h.wait_reaction(first, "rocket").await;
    h.command(117, "alice", "/oz and this").await;
    let reply = h.wait_reply_contains(117, "daily budget of 0.05").await;
    assert!(reply.contains("in the last 24 hours"), "{reply}");
    assert_eq!(h.sim.run_count(), 1);
}
