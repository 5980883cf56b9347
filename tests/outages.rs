//! Outages and lost answers: creates answered too late are never made twice, outages
//! are ridden out or parked (never dropped by a retry count), calls are spaced out
//! while an upstream fails, and the tracker never skips a change.
//!
//! Tests of answers that come after the client's time-out run on the app's own workers
//! and the system clock: a time-out is real time, and a doubt window is a promise about
//! real time (a driving harness would move its held clock past a window while a fake's
//! late answer is still on its way in real time).

mod common;

use common::Harness;
use ozbridge::testkit::oz::{Fault, FaultKind};
use std::time::Duration;

fn create_fault(kind: FaultKind, times: u32) -> Fault {
    Fault {
        method: Some(axum::http::Method::POST),
        path_prefix: "/agent/runs".into(),
        kind,
        times,
    }
}

/// Oz answers a create after the client's timeout but carries it out: the lookup waits
/// until that create can no longer land, finds it, and creates nothing more.
#[tokio::test]
async fn a_create_answered_after_the_client_timeout_is_not_created_twice() {
    let mut h = Harness::start_with_workers(None, &[("OZ_REQUEST_TIMEOUT_SECS", "1")])
        .await
        .unwrap();
    h.sim.inject(create_fault(
        FaultKind::LateCommit(Duration::from_millis(1500)),
        1,
    ));
    let comment = h.command(90, "alice", "/oz fix the flaky test").await;
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.sim.run_count(), 1, "one Oz run for one command");
    assert_eq!(
        h.sim.calls("POST /agent/runs"),
        1,
        "the create was not sent again"
    );
    assert_eq!(h.status_comments(90).len(), 1);
}

/// A create that lands even after its doubt window (a second one was sent meanwhile)
/// is noticed by the tracker, cancelled, and the thread is told.
#[tokio::test]
async fn a_duplicate_that_lands_after_all_is_cancelled_and_said_so() {
    let mut h = Harness::start_with_workers(None, &[("OZ_REQUEST_TIMEOUT_SECS", "1")])
        .await
        .unwrap();
    h.sim.inject(create_fault(
        FaultKind::LateCommit(Duration::from_millis(3500)),
        1,
    ));
    let comment = h.command(91, "alice", "/oz fix the flaky test").await;
    h.wait_reaction(comment, "rocket").await;
    let status = h.wait_status_contains(91, "started by mistake").await;
    assert!(status.body.contains("✅ Done"), "{}", status.body);
    h.wait_for("the duplicate to be cancelled", || {
        h.sim
            .run_ids()
            .iter()
            .filter_map(|id| h.sim.run(id))
            .any(|r| r.state == ozbridge::oz::types::RunState::Cancelled)
    })
    .await;
    assert_eq!(h.sim.run_count(), 2);
    assert_eq!(h.status_comments(91).len(), 1);
}

/// GitHub carries out a status comment's create after the client gave up: it is found
/// by its marker once it can no longer land, not posted a second time.
#[tokio::test]
async fn a_status_comment_answered_after_the_timeout_is_posted_once() {
    let mut h = Harness::start_with_workers(None, &[])
        .await
        .expect("harness");
    h.github
        .land_next_creates_late(1, Duration::from_millis(2500));
    let comment = h.command(92, "alice", "/oz fix it").await;
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(92, "✅ Done").await;
    h.wait_for("the late create to land", || {
        h.github.late_creates_in_flight() == 0
    })
    .await;
    let statuses: Vec<_> = h
        .bot_comments(92)
        .into_iter()
        .filter(|c| c.body.contains("<!-- ozbridge:run:"))
        .collect();
    assert_eq!(statuses.len(), 1, "{statuses:?}");
}

/// GitHub carries out a status comment's edit after the client gave up, after newer
/// edits were answered: the comment must not be left showing the older state. The
/// latest rendering is sent once more when the late edit can no longer land.
#[tokio::test]
async fn a_status_edit_that_lands_late_is_overwritten_by_the_latest() {
    let mut h = Harness::start_with_workers(None, &[])
        .await
        .expect("harness");
    h.command(93, "alice", "/oz fix it [sim:endless]").await;
    h.wait_status_contains(93, "Oz run `").await;
    // The next edit (the run starting to work) lands after the client's 2 s time-out.
    h.github
        .land_next_edits_late(1, Duration::from_millis(2500));
    h.wait_status_contains(93, "🏃 Working").await;
    h.command(93, "alice", "/oz cancel").await;
    h.wait_for("the late edit to land", || {
        h.github.late_creates_in_flight() == 0
    })
    .await;
    h.settle().await;
    let status = h.status_comment(93).expect("status comment");
    let shown: Vec<String> = status
        .revisions
        .iter()
        .map(|r| r.lines().nth(1).unwrap_or_default().to_owned())
        .collect();
    assert!(status.body.contains("Cancelled"), "{shown:?}");
}

/// Creates refused for longer than the old limit of eight attempts: the command waits,
/// its thread says so once, and it runs when Oz accepts it again.
#[tokio::test]
async fn a_create_outage_is_ridden_out_and_the_thread_is_told() {
    let mut h = Harness::start_tuned(None, &[], |s| {
        s.outage_notice_after = Duration::ZERO;
    })
    .await
    .unwrap();
    h.sim.inject(create_fault(FaultKind::Status(503), 12));
    let comment = h.command(93, "alice", "/oz fix it").await;
    h.wait_status_contains(93, "Oz is not answering; I will keep trying until")
        .await;
    h.wait_reaction(comment, "rocket").await;
    let status = h.wait_status_contains(93, "✅ Done").await;
    assert!(!status.body.contains("not answering"), "{}", status.body);
    assert_eq!(h.sim.faults_pending(), 0, "every refusal was met");
    assert_eq!(h.sim.run_count(), 1);
}

/// Past its retry budget a run is parked, visibly, and an operator's retry resumes it:
/// it is looked up first, then created once.
#[tokio::test]
async fn a_run_past_its_budget_is_parked_and_resumed_on_request() {
    let mut h = Harness::start_with(None, &[("OZBRIDGE_RETRY_FOR_SECS", "1")])
        .await
        .unwrap();
    h.sim.inject(create_fault(FaultKind::Status(503), u32::MAX));
    let comment = h.command(94, "alice", "/oz fix it").await;
    h.wait_status_contains(94, "⏸ Parked").await;
    let parked = h.store().parked().await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, ozbridge::store::ParkedKind::Run);
    assert!(parked[0].thread.ends_with("#94"));
    h.sim.clear_faults();
    assert_eq!(
        h.store().requeue_parked(&parked[0].id).await.unwrap(),
        Some(ozbridge::store::ParkedKind::Run)
    );
    h.wait_reaction(comment, "rocket").await;
    let status = h.wait_status_contains(94, "✅ Done").await;
    assert!(!status.body.contains("Parked"), "{}", status.body);
    assert!(h.store().parked().await.unwrap().is_empty());
    assert_eq!(h.sim.run_count(), 1);
}

/// A whole-API outage opens Oz's breaker: calls are spaced out (not one per tick and
/// per worker), and work resumes when Oz answers again.
#[tokio::test]
async fn a_whole_oz_outage_spaces_calls_out_and_work_resumes() {
    let mut h = Harness::start().await;
    h.sim.inject(Fault {
        method: None,
        path_prefix: "/".into(),
        kind: FaultKind::Status(503),
        times: u32::MAX,
    });
    let comment = h.command(95, "alice", "/oz fix it").await;
    let breaker = h.app.as_ref().unwrap().pipeline.oz.breaker().clone();
    // Three failures open it; each probe that fails doubles the pause.
    h.wait_for("six failures in a row", || {
        breaker.consecutive_failures() >= 6
    })
    .await;
    let calls = h.sim.total_calls();
    assert!(
        calls <= 12,
        "{calls} calls reached Oz for six failures: they were not spaced out"
    );
    // Meanwhile the tracker and the starter kept trying: their calls were held back.
    assert!(
        breaker.refused() >= 5,
        "only {} calls were held back while Oz failed",
        breaker.refused()
    );
    h.sim.clear_faults();
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.sim.run_count(), 1);
}

/// A run whose create answer comes late is listed by the tracker before it is recorded;
/// it finishes meanwhile and another run's change moves the newest update far past it.
/// The watermark must wait for it: the thread reaches its final state.
#[tokio::test]
async fn the_tracker_never_skips_a_run_listed_before_it_was_recorded() {
    // The client waits out the slow create answer below.
    let mut h = Harness::start_with_workers(None, &[("OZ_REQUEST_TIMEOUT_SECS", "10")])
        .await
        .expect("sqlite harness");
    let first = h.command(96, "alice", "/oz keep going [sim:endless]").await;
    let _ = first;
    h.wait_status_contains(96, "🏃 Working").await;
    h.sim.inject(create_fault(
        FaultKind::SlowAnswer(Duration::from_millis(4000)),
        1,
    ));
    let second = h.command(97, "alice", "/oz fix it").await;
    h.wait_for("the second run to finish at Oz", || {
        h.sim
            .run_ids()
            .get(1)
            .and_then(|id| h.sim.run(id))
            .is_some_and(|r| r.state.is_terminal())
    })
    .await;
    let finished = h.sim.run(&h.sim_run_id(1)).unwrap().updated_at;
    // Another run changes well past the overlap the tracker re-lists.
    h.wait_for("the overlap to pass", || {
        chrono::Utc::now() - finished > chrono::Duration::milliseconds(2_500)
    })
    .await;
    h.sim.touch(&h.sim_run_id(0));
    h.wait_reaction(second, "rocket").await;
    h.wait_status_contains(97, "✅ Done").await;
}

/// A failure that retrying will not fix gets a reply written for people: no status code,
/// no service's error text.
#[tokio::test]
async fn a_give_up_reply_never_quotes_internal_errors() {
    let mut h = Harness::start().await;
    h.sim.inject(Fault {
        method: Some(axum::http::Method::GET),
        path_prefix: "/agent/models".into(),
        kind: FaultKind::Status(400),
        times: 1,
    });
    h.command(98, "alice", "/oz models").await;
    let reply = h.wait_reply_contains(98, "sorry").await;
    // What people read: the hidden marker holds a random id, which may hold "400".
    let shown: String = reply
        .lines()
        .filter(|line| !line.starts_with("<!--"))
        .collect();
    assert!(shown.contains("sorry"), "{reply}");
    for internal in ["400", "Oz API", "Injected", "internal_error", "answered"] {
        assert!(
            !shown.contains(internal),
            "{internal:?} reached the thread: {reply}"
        );
    }
}

/// Starts an endless run from a command on issue `number`; its Oz run once it works.
async fn a_working_run(h: &mut Harness, number: u64) -> ozbridge::ids::OzRunId {
    h.command(number, "alice", "/oz keep going [sim:endless]")
        .await;
    h.drive_until("the run to work", || {
        h.status_comment(number)
            .is_some_and(|c| c.body.contains("🏃 Working"))
    })
    .await;
    h.sim_run_id(0)
}

/// Holds back the answer to the next list call until the returned gate opens.
fn hold_the_next_list_answer(h: &Harness) -> ozbridge::testkit::oz::Gate {
    let gate = ozbridge::testkit::oz::Gate::default();
    h.sim.inject(Fault {
        method: Some(axum::http::Method::GET),
        path_prefix: "/agent/runs".into(),
        kind: FaultKind::HeldAnswer(gate.clone()),
        times: 1,
    });
    gate
}

/// A list answer that comes late (or a replica still holding an older listing while
/// the tracker's lease moves) must not put an older state back over a newer one: the
/// run is recorded "needs input" by a later tick, then the older page, which says
/// "working", arrives and is refused.
#[tokio::test]
async fn an_older_list_answer_does_not_put_an_older_state_back() {
    use ozbridge::oz::types::RunState;
    let mut h = Harness::start_tuned(None, &[], |_| {})
        .await
        .expect("sqlite harness");
    let run = a_working_run(&mut h, 98).await;
    let gate = hold_the_next_list_answer(&h);
    let pipeline = h.pipeline();
    let (late, _) = tokio::join!(pipeline.track_once(), async {
        // The held page says "working"; the run then needs input, and a later tick
        // records it.
        gate.reached().await;
        h.sim.set_state(&run, RunState::Blocked);
        assert_eq!(pipeline.track_once().await, 1, "the later tick records it");
        gate.open();
    });
    assert_eq!(late, 0, "the older page changes nothing");
    let stored = h.store().runs_by_oz_ids(&[run]).await.unwrap();
    assert_eq!(
        stored[0].view.state,
        Some(RunState::Blocked),
        "the newer state stays"
    );
    h.drive_until("the thread to say the run needs input", || {
        h.status_comment(98)
            .is_some_and(|c| c.body.contains("✋ Needs your input"))
    })
    .await;
}

/// A replica whose list answer comes late, after another replica took the tracker lease
/// over, drops it: the other replica took a newer answer that changed nothing (so it was
/// not written), and the late one holds a state in between, newer than every answer
/// written. The thread keeps showing the run at work.
#[tokio::test]
async fn a_late_answer_to_a_replica_that_lost_the_tracker_lease_is_dropped() {
    use ozbridge::oz::types::RunState;
    let mut h = Harness::start_tuned(None, &[], |_| {})
        .await
        .expect("sqlite harness");
    h.add_replica().await;
    let run = a_working_run(&mut h, 97).await;
    // The run needs input for a moment; the first replica's listing of that is held.
    h.sim.set_state(&run, RunState::Blocked);
    let gate = hold_the_next_list_answer(&h);
    let (first, second) = (h.pipeline(), &*h.replicas[0].pipeline);
    // Whichever replica held the tracker lease, it runs out: the first takes it.
    h.clock.advance(Duration::from_secs(60));
    let (late, _) = tokio::join!(first.track_once(), async {
        gate.reached().await;
        // The run works again; the lease runs out and the other replica takes it over,
        // and finds the run as it was last written.
        h.sim.set_state(&run, RunState::InProgress);
        h.clock.advance(Duration::from_secs(60));
        assert_eq!(second.track_once().await, 0, "nothing changed");
        gate.open();
    });
    assert_eq!(late, 0, "the late answer changes nothing");
    let stored = h.store().runs_by_oz_ids(&[run]).await.unwrap();
    assert_eq!(stored[0].view.state, Some(RunState::InProgress));
    h.run_until_idle().await;
    assert!(
        h.status_comment(97)
            .is_some_and(|c| c.body.contains("🏃 Working")),
        "the thread still shows the run at work"
    );
}

/// A run that succeeded before its conversation can be read (for its summary: Oz
/// answers 404 for a moment) stays followed, and its summary is read again soon: the
/// thread ends with it.
#[tokio::test]
async fn a_summary_that_cannot_be_read_is_read_again() {
    use ozbridge::oz::types::RunState;
    use ozbridge::store::RunPhase;
    let mut h = Harness::start_tuned(None, &[], |_| {})
        .await
        .expect("sqlite harness");
    h.command(99, "alice", "/oz keep going [sim:endless]").await;
    h.drive_until("the run to work", || {
        h.status_comment(99)
            .is_some_and(|c| c.body.contains("🏃 Working"))
    })
    .await;
    let run = h.sim_run_id(0);
    h.sim.inject(Fault {
        method: Some(axum::http::Method::GET),
        path_prefix: format!("/agent/runs/{run}/conversation"),
        kind: FaultKind::Status(404),
        times: 1,
    });
    h.sim.set_state(&run, RunState::Succeeded);
    h.pipeline().track_once().await;
    assert_eq!(h.sim.faults_pending(), 0, "the summary's read was refused");
    let stored = h.store().runs_by_oz_ids(&[run]).await.unwrap();
    assert_eq!(stored[0].phase, RunPhase::Active, "still followed");
    h.drive_until("the thread to end with the summary", || {
        h.status_comment(99)
            .is_some_and(|c| c.body.contains("✅ Done"))
    })
    .await;
}
