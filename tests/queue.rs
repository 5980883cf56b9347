//! Queued instructions: a command in a thread whose run is active waits its turn, is
//! shown on the status post, can be dropped, and starts as a follow-up when the run
//! ends, by its own author, exactly once, across a restart and with two replicas.

mod common;

use common::{CHANNEL, Harness, database_url};
use ozbridge::testkit::oz::Scenario;

#[tokio::test]
async fn queued_instructions_wait_show_drop_and_start_in_order() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    h.command(50, "alice", "/oz refactor the login module")
        .await;
    h.wait_status_contains(50, "🏃 Working").await;

    // Two instructions while it works: queued, in order, shown on the status comment.
    h.command(50, "alice", "/oz then update the docs").await;
    h.wait_reply_contains(50, "position 1 in this thread's queue")
        .await;
    h.command(50, "alice", "/oz and add a changelog entry --new")
        .await;
    h.wait_reply_contains(50, "position 2 in this thread's queue")
        .await;
    let status = h.wait_status_contains(50, "**Queued next**").await;
    assert!(
        status.body.contains("1. @alice: “then update the docs”")
            && status
                .body
                .contains("2. @alice: “and add a changelog entry --new”"),
        "{}",
        status.body
    );
    assert_eq!(h.sim.run_count(), 1, "nothing more started");

    // `/oz drop` empties the queue; the status comment says so.
    h.command(50, "alice", "/oz drop").await;
    h.wait_reply_contains(50, "dropped 2 queued instructions")
        .await;
    h.wait_for("the queue to leave the status", || {
        h.status_comment(50)
            .is_some_and(|c| !c.body.contains("Queued next"))
    })
    .await;
    h.command(50, "alice", "/oz drop").await;
    h.wait_reply_contains(50, "nothing queued here").await;

    // Queue one more, then stop the run: the queued one starts, continuing its
    // conversation, by its own author.
    let next = h.command(50, "alice", "/oz then write the tests").await;
    h.wait_reply_contains(50, "position 1").await;
    h.command(50, "alice", "/oz cancel").await;
    h.wait_reaction(next, "rocket").await;
    assert_eq!(h.sim.run_count(), 2, "the dropped ones never started");
    let requests = h.sim.create_requests();
    let (first, second) = (&requests[0], &requests[1]);
    assert!(
        second
            .prompt
            .as_deref()
            .unwrap_or_default()
            .contains("then write the tests")
    );
    assert!(second.conversation_id.is_some(), "a follow-up of the run");
    assert!(first.conversation_id.is_none());
    let comments = h.bot_comments(50);
    assert!(
        comments.iter().all(|c| !c.body.contains("Queued next")),
        "no status comment still shows a queue"
    );
}

#[tokio::test]
async fn a_full_queue_is_refused_with_a_clear_reply() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_MAX_QUEUED_PER_THREAD", "1")])
        .await
        .unwrap();
    h.sim.push_scenario(Scenario::Endless);
    h.command(51, "alice", "/oz long job").await;
    h.wait_status_contains(51, "🏃 Working").await;
    h.command(51, "alice", "/oz next job").await;
    h.wait_reply_contains(51, "position 1").await;
    h.command(51, "alice", "/oz one more").await;
    let full = h.wait_reply_contains(51, "already queued").await;
    assert!(
        full.contains("1 instructions are already queued") && full.contains("`/oz drop`"),
        "{full}"
    );
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_restart_between_the_end_of_a_run_and_the_next_loses_nothing() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    h.command(52, "alice", "/oz long job").await;
    h.wait_status_contains(52, "🏃 Working").await;
    let next = h.command(52, "alice", "/oz the next job").await;
    h.wait_reply_contains(52, "position 1").await;
    // The run ends at Oz, the tracker records it, and the replica dies before its
    // dispatcher lets the queued instruction go.
    let oz_run = h.sim.run_ids()[0].clone();
    h.pipeline().oz.cancel_run(&oz_run).await.unwrap();
    while h.pipeline().track_once().await == 0 {
        h.clock.advance(std::time::Duration::from_millis(50));
    }
    h.crash_and_restart().await;
    h.wait_reaction(next, "rocket").await;
    assert_eq!(h.sim.run_count(), 2);
    assert!(h.sim.create_requests()[1].conversation_id.is_some());
}

#[tokio::test]
async fn slack_threads_queue_too_and_the_drop_button_empties_the_queue() {
    let h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    h.slash(CHANNEL, "U1", "long job").await;
    h.wait_for("the root message", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| m.shown().contains("Working"))
    })
    .await;
    let root = h.slack_roots(CHANNEL).remove(0);
    h.mention(CHANNEL, "U2", "<@UOZBOT> then the docs", Some(&root.ts))
        .await;
    h.wait_for("the queue on the root message", || {
        h.slack_roots(CHANNEL)[0].shown().contains("Queued next")
    })
    .await;
    let root = h.slack_roots(CHANNEL).remove(0);
    assert!(
        root.shown().contains("1. <@U2>: then the docs"),
        "{}",
        root.shown()
    );
    let run = root
        .metadata
        .pointer("/event_payload/key")
        .and_then(|k| k.as_str())
        .unwrap()
        .trim_start_matches("run:")
        .to_owned();
    assert_eq!(
        h.press(
            ozbridge::slack::render::ACTION_DROP,
            &run,
            CHANNEL,
            "U1",
            &root.ts,
            None
        )
        .await
        .status(),
        200
    );
    h.wait_private("dropped the queued instruction").await;
    h.wait_for("the queue to leave the root message", || {
        !h.slack_roots(CHANNEL)[0].shown().contains("Queued next")
    })
    .await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn two_replicas_start_each_queued_instruction_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_url(&dir, true).await else {
        return;
    };
    let Some(mut h) = Harness::start_with(Some(url), &[]).await else {
        return;
    };
    h.add_replica().await;
    h.sim.push_scenario(Scenario::Endless);
    h.command(53, "alice", "/oz long job").await;
    h.wait_status_contains(53, "🏃 Working").await;
    h.command(53, "alice", "/oz second job").await;
    h.wait_reply_contains(53, "position 1").await;
    let third = h.command(53, "alice", "/oz third job").await;
    h.wait_reply_contains(53, "position 2").await;
    h.command(53, "alice", "/oz cancel").await;
    h.wait_reaction(third, "rocket").await;
    let prompts: Vec<String> = h
        .sim
        .create_requests()
        .iter()
        .map(|r| r.prompt.clone().unwrap_or_default())
        .collect();
    assert_eq!(prompts.len(), 3, "each queued instruction started once");
    assert!(prompts[1].contains("second job") && prompts[2].contains("third job"));
}
