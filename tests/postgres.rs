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
    // A second replica on the same database and clock, stepped at once with the first:
    // both claim from the same tables.
    h.add_replica().await;
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
}

#[tokio::test]
async fn slack_threads_and_artifact_links_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let extra = [("OZBRIDGE_PUBLIC_URL", "https://oz.example.com")];
    let Some(h) = Harness::start_with(Some(url), &extra).await else {
        return;
    };
    h.sim
        .push_scenario(ozbridge::testkit::oz::Scenario::Artifacts);
    h.slash(common::CHANNEL, "U1", "fix it").await;
    h.wait_for("the root message", || {
        h.slack_roots(common::CHANNEL)
            .first()
            .is_some_and(|m| m.shown().contains("✅ Done"))
    })
    .await;
    let root = h.slack_roots(common::CHANNEL).remove(0);
    // A mention in the thread the slash command made continues its conversation.
    let ask = h
        .mention(
            common::CHANNEL,
            "U1",
            "<@UOZBOT> and the docs",
            Some(&root.ts),
        )
        .await;
    h.wait_for("the follow-up", || {
        h.slack
            .reactions(common::CHANNEL, &ask)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    assert!(h.sim.create_requests()[1].conversation_id.is_some());
    h.slash(common::CHANNEL, "U1", "status").await;
    h.wait_for("status", || {
        h.slack.responses().iter().any(|r| r.contains("Done"))
    })
    .await;
    let body = root.shown();
    let uid = body
        .split("/artifacts/")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        client
            .get(h.url(&format!("/artifacts/{uid}")))
            .send()
            .await
            .unwrap()
            .status(),
        307
    );
    assert_eq!(
        client
            .get(h.url("/artifacts/file-unknown"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
