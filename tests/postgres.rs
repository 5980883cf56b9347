//! The same flow on PostgreSQL (runs when TEST_DATABASE_URL is set; `.ci/run` sets it).

mod common;

use common::{Harness, database_url};

#[tokio::test]
async fn full_flow_and_restart_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let Some(mut h) = Harness::start_with(Some(url), &[]).await else {
        return;
    };
    let comment = h.command(60, "alice", "/oz fix").await;
    h.wait_status_contains(60, "Oz run `").await;
    h.crash_and_restart().await;
    h.wait_reaction(comment, "rocket").await;
    let (_, payload) = h.comment(60, "alice", "/oz fix");
    let _ = payload;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(h.bot_comments(60).len(), 1);
}

#[tokio::test]
async fn two_replicas_share_the_work_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let Some(mut h) = Harness::start_with(Some(url), &[]).await else {
        return;
    };
    // A second replica on the same database.
    let second = {
        let pipeline = ozbridge::app::build_pipeline(&h.config, |s| {
            s.poll = std::time::Duration::from_millis(50);
            s.lease = std::time::Duration::from_millis(1500);
        })
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ozbridge::app::start(&h.config, pipeline, listener)
            .await
            .unwrap()
    };
    let mut comments = Vec::new();
    for number in 70..80 {
        comments.push((number, h.command(number, "alice", "/oz fix").await));
    }
    for (_, comment) in &comments {
        h.wait_reaction(*comment, "rocket").await;
    }
    h.settle().await;
    assert_eq!(h.sim.run_count(), 10);
    for (number, _) in comments {
        assert_eq!(h.bot_comments(number).len(), 1);
    }
    second.shutdown().await;
}
