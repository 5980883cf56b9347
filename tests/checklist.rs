//! The checklist a status post shows while a run works, read by the bridge from the
//! run's conversation: nested steps ticked as Oz reports them, action counts, a
//! conversation that cannot be read, and the per-tick budget with many runs.

mod common;

use common::Harness;
use ozbridge::oz::types::{ContentBlock, ConversationMessage, ConversationStep, MessageRole};
use ozbridge::testkit::oz::{Fault, FaultKind, Scenario};
use std::time::Duration;

fn step(description: &str, done: bool, children: Vec<ConversationStep>) -> ConversationStep {
    ConversationStep {
        id: description.into(),
        description: Some(description.into()),
        summary: done.then(|| format!("{description}: done")),
        started_at: None,
        completed_at: None,
        messages: Vec::new(),
        steps: children,
    }
}

/// A step whose agent ran `commands` commands and edited files once.
fn busy_step(description: &str, commands: usize) -> ConversationStep {
    let action = |name: &str| {
        ContentBlock::Other(serde_json::json!({
            "type": "action", "id": name, "category": "command", "name": name, "input": {}
        }))
    };
    let mut content: Vec<ContentBlock> = (0..commands).map(|_| action("run_command")).collect();
    content.push(action("edit_files"));
    ConversationStep {
        messages: vec![ConversationMessage {
            message_ids: None,
            request_id: None,
            role: MessageRole::Assistant,
            timestamp: None,
            content,
        }],
        ..step(description, false, Vec::new())
    }
}

#[tokio::test]
async fn a_working_run_shows_its_real_steps_ticked_and_its_actions_counted() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    h.command(80, "alice", "/oz fix the race in the scheduler")
        .await;
    h.wait_status_contains(80, "🏃 Working").await;
    let run = h.sim.run_ids()[0].clone();
    h.sim.add_steps(
        &run,
        vec![
            step("Read the failing test", true, Vec::new()),
            step(
                "Fix the race",
                false,
                vec![
                    step("Add a lock", true, Vec::new()),
                    busy_step("Run the suite", 2),
                ],
            ),
        ],
    );
    let status = h.wait_status_contains(80, "**Progress**").await;
    for line in [
        "- ✅ Read the failing test",
        "- ⬜ Fix the race",
        "  - ✅ Add a lock",
        "  - ⬜ Run the suite",
        "<sub>2 commands run, 1 file edit</sub>",
    ] {
        assert!(status.body.contains(line), "{line} in:\n{}", status.body);
    }
    // Oz reports the step done: the box is ticked on the next read.
    h.clock.advance(Duration::from_secs(15));
    h.sim
        .add_steps(&run, vec![step("Open the pull request", true, Vec::new())]);
    h.wait_status_contains(80, "- ✅ Open the pull request")
        .await;
    // Once the run ended, its summary says the rest.
    h.command(80, "alice", "/oz cancel").await;
    let status = h.wait_status_contains(80, "🚫 Cancelled").await;
    assert!(!status.body.contains("Progress"), "{}", status.body);
}

#[tokio::test]
async fn a_conversation_that_cannot_be_read_leaves_the_status_intact() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    h.command(81, "alice", "/oz long job").await;
    h.wait_status_contains(81, "🏃 Working").await;
    let run = h.sim.run_ids()[0].clone();
    let reads = h.sim.calls("GET /agent/runs/{id}/conversation");
    h.sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: format!("/api/v1/agent/runs/{run}/conversation"),
        // As for a run whose conversation Oz does not offer (yet).
        kind: FaultKind::Status(404),
        times: 1,
    });
    h.sim
        .add_steps(&run, vec![step("Read the code", true, Vec::new())]);
    h.wait_for("the failed read", || {
        h.sim.calls("GET /agent/runs/{id}/conversation") > reads
    })
    .await;
    h.run_until_idle().await;
    let status = h.status_comment(81).unwrap();
    assert!(
        status.body.contains("🏃 Working") && !status.body.contains("Progress"),
        "{}",
        status.body
    );
    assert!(
        !status.body.contains("500"),
        "no internal detail: {}",
        status.body
    );
    // The next change, after the refresh period, is read and shown.
    h.clock.advance(Duration::from_secs(15));
    h.sim
        .add_steps(&run, vec![step("Write the fix", false, Vec::new())]);
    h.wait_status_contains(81, "- ✅ Read the code").await;
    assert!(h.status_comment(81).unwrap().body.contains("🏃 Working"));
}

#[tokio::test]
async fn many_working_runs_share_the_reads_budget_and_each_gets_its_turn() {
    let mut h = Harness::start_with(None, &[("OZ_CONVERSATION_BUDGET", "4")])
        .await
        .unwrap();
    let issues: Vec<u64> = (90..100).collect();
    for issue in &issues {
        h.sim.push_scenario(Scenario::Endless);
        h.command(*issue, "alice", "/oz keep going").await;
    }
    for issue in &issues {
        h.wait_status_contains(*issue, "🏃 Working").await;
    }
    for run in h.sim.run_ids() {
        h.sim
            .add_steps(&run, vec![step("Working on it", false, Vec::new())]);
    }
    // Tick by tick: one list call each, and at most the budget of conversation reads.
    let mut ticks = 0;
    while !issues.iter().all(|issue| {
        h.status_comment(*issue)
            .is_some_and(|c| c.body.contains("Working on it"))
    }) {
        let lists = h.sim.calls("GET /agent/runs");
        let reads = h.sim.calls("GET /agent/runs/{id}/conversation");
        h.pipeline().track_once().await;
        assert!(h.sim.calls("GET /agent/runs") - lists <= 1);
        assert!(
            h.sim.calls("GET /agent/runs/{id}/conversation") - reads <= 4,
            "a tick read more conversations than its budget"
        );
        h.run_until_idle().await;
        h.clock.advance(Duration::from_secs(3));
        ticks += 1;
        assert!(
            ticks <= 10,
            "ten runs, four reads a tick: three ticks should do"
        );
    }
    assert!(ticks >= 3, "the budget was honoured: {ticks} ticks");
}
