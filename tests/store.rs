//! The store on SQLite and (with TEST_DATABASE_URL) PostgreSQL: inbox dedupe under
//! concurrency (group commit on SQLite), per-thread ordering, and exclusive leases.

mod common;

use ozbridge::clock::Clock;
use ozbridge::domain::InboxCommand;
use ozbridge::store::Store;
use std::time::Duration;

fn command(number: u64, text: &str) -> InboxCommand {
    ozbridge::testkit::commands::github_command(number, text)
}

/// A run recorded for a command, named after the store it is for.
fn new_run(store: &Store, name: &str) -> ozbridge::store::RunRecord {
    ozbridge::store::RunRecord::intent(
        ozbridge::store::RunIntent {
            id: ozbridge::ids::RunRef(format!("run-{name}")),
            command_id: ozbridge::ids::CommandId(format!("cmd-{name}")),
            origin: command(8, "fix").origin,
            requester: command(8, "fix").author,
            asked: "fix".into(),
            request: ozbridge::oz::types::RunAgentRequest::default(),
            post_first: false,
        },
        store.clock().now_ms(),
    )
}

async fn stores() -> Vec<(&'static str, Store, tempfile::TempDir)> {
    let mut stores = Vec::new();
    for (name, postgres) in [("sqlite", false), ("postgres", true)] {
        let dir = tempfile::tempdir().unwrap();
        if let Some(url) = common::database_url(&dir, postgres).await {
            // Time passes only where a test moves it.
            let store = Store::connect_with_clock(&url, Clock::held())
                .await
                .unwrap();
            stores.push((name, store, dir));
        }
    }
    stores
}

#[tokio::test]
async fn concurrent_inserts_store_each_key_once() {
    for (name, store, _dir) in stores().await {
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .insert_command(&format!("key-{}", i % 100), &command(i % 100, "fix"))
                    .await
            }));
        }
        let mut stored = 0;
        for task in tasks {
            if task.await.unwrap().unwrap().is_some() {
                stored += 1;
            }
        }
        assert_eq!(stored, 100, "{name}: each dedupe key stored exactly once");
        assert_eq!(store.pending_command_count().await.unwrap(), 100, "{name}");
    }
}

#[tokio::test]
async fn commands_of_one_thread_are_claimed_in_order_one_at_a_time() {
    for (name, store, _dir) in stores().await {
        let first = store
            .insert_command("a", &command(1, "first"))
            .await
            .unwrap()
            .unwrap();
        store.clock().advance(Duration::from_millis(5));
        let second = store
            .insert_command("b", &command(1, "second"))
            .await
            .unwrap()
            .unwrap();
        let other = store
            .insert_command("c", &command(2, "other"))
            .await
            .unwrap()
            .unwrap();
        let lease = Duration::from_secs(30);
        let a = store.claim_command("w1", lease).await.unwrap().unwrap();
        assert_eq!(a.id, first, "{name}");
        let b = store.claim_command("w2", lease).await.unwrap().unwrap();
        assert_eq!(
            b.id, other,
            "{name}: the thread's second command waits for its first"
        );
        assert!(
            store.claim_command("w3", lease).await.unwrap().is_none(),
            "{name}"
        );
        store.finish_command(&first, None).await.unwrap();
        let c = store.claim_command("w3", lease).await.unwrap().unwrap();
        assert_eq!(c.id, second, "{name}");
    }
}

/// On SQLite a command waits in the narrow inbox until the pipeline takes it, then in
/// `commands`: a repeated delivery is refused in either place, and counted once.
#[tokio::test]
async fn a_dedupe_key_is_stored_once_before_and_after_its_command_is_taken() {
    for (name, store, _dir) in stores().await {
        let fix = command(1, "fix");
        assert!(store.insert_command("k", &fix).await.unwrap().is_some());
        assert!(
            store.insert_command("k", &fix).await.unwrap().is_none(),
            "{name}: repeated before it was taken"
        );
        assert_eq!(store.command_count().await.unwrap(), 1, "{name}");
        assert_eq!(store.pending_command_count().await.unwrap(), 1, "{name}");
        assert_eq!(store.pending_work().await.unwrap(), 1, "{name}");
        let claimed = store
            .claim_command("w", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(claimed.is_some(), "{name}");
        assert!(
            store.insert_command("k", &fix).await.unwrap().is_none(),
            "{name}: repeated after it was taken"
        );
        assert_eq!(store.command_count().await.unwrap(), 1, "{name}");
    }
}

/// A thread's commands are taken in the order they came, through many moves out of the
/// inbox (more commands than one move takes), with another thread's commands in between
/// and two workers taking at once (never two of one thread).
#[tokio::test]
async fn a_long_backlog_is_taken_in_order_through_many_moves() {
    use std::collections::BTreeMap;
    for (name, store, _dir) in stores().await {
        // Each thread's commands, in the order they came and in the order they were taken.
        let mut sent: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for i in 0..600u64 {
            let fix = command(if i % 3 == 0 { 2 } else { 1 }, "fix");
            let id = store
                .insert_command(&format!("backlog-{i}"), &fix)
                .await
                .unwrap()
                .unwrap();
            sent.entry(fix.origin.thread_key()).or_default().push(id);
            store.clock().advance(Duration::from_millis(1));
        }
        let lease = Duration::from_secs(30);
        let mut taken: BTreeMap<_, Vec<_>> = BTreeMap::new();
        while let Some(first) = store.claim_command("w1", lease).await.unwrap() {
            let second = store.claim_command("w2", lease).await.unwrap();
            if let Some(second) = &second {
                assert_ne!(
                    second.command.origin.thread_key(),
                    first.command.origin.thread_key(),
                    "{name}: a thread's next command waits for the one taken"
                );
            }
            for claimed in std::iter::once(first).chain(second) {
                store.finish_command(&claimed.id, None).await.unwrap();
                let thread = claimed.command.origin.thread_key();
                taken.entry(thread).or_default().push(claimed.id);
            }
        }
        assert_eq!(taken, sent, "{name}");
        assert_eq!(store.pending_work().await.unwrap(), 0, "{name}");
    }
}

/// Commands a stopped process committed but never handed to its pipeline are taken by
/// the next one: nothing acknowledged is left behind in the inbox.
#[tokio::test]
async fn commands_left_in_the_inbox_by_a_stopped_process_are_taken_after_a_restart() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = common::database_url(&dir, postgres).await else {
            continue;
        };
        let store = Store::connect(&url).await.unwrap();
        let id = store
            .insert_command("left", &command(1, "fix"))
            .await
            .unwrap()
            .unwrap();
        store.close().await;
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.pending_command_count().await.unwrap(), 1);
        let claimed = store
            .claim_command("w", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.map(|c| c.id), Some(id), "postgres: {postgres}");
    }
}

#[tokio::test]
async fn leases_are_exclusive_until_they_expire() {
    for (name, store, _dir) in stores().await {
        let ttl = Duration::from_millis(300);
        let first = store.try_lease("tracker", "a", ttl).await.unwrap();
        assert!(first.is_some(), "{name}");
        assert_eq!(
            store.try_lease("tracker", "b", ttl).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.try_lease("tracker", "a", ttl).await.unwrap(),
            first,
            "{name}: the holder renews, in the same term"
        );
        store.clock().advance(Duration::from_millis(200));
        assert_eq!(
            store.try_lease("tracker", "b", ttl).await.unwrap(),
            None,
            "{name}: still held before expiry"
        );
        store.clock().advance(Duration::from_millis(200));
        let second = store.try_lease("tracker", "b", ttl).await.unwrap();
        assert!(second.is_some(), "{name}: taken over after expiry");
        assert_ne!(second, first, "{name}: a new owner, a new term");
        // The first holder learns that its term ended; the second holds on.
        let hold = |owner, term: Option<ozbridge::store::LeaseTerm>| {
            store.hold_lease("tracker", owner, term.unwrap(), ttl)
        };
        assert!(!hold("a", first).await.unwrap(), "{name}");
        assert!(hold("b", second).await.unwrap(), "{name}");
        // Holding it with less than half its time left renews it.
        store.clock().advance(Duration::from_millis(200));
        assert!(hold("b", second).await.unwrap(), "{name}");
        store.clock().advance(Duration::from_millis(200));
        assert_eq!(
            store.try_lease("tracker", "a", ttl).await.unwrap(),
            None,
            "{name}: renewed by the hold"
        );
        // Once it runs out, only the lease's owner may renew it still (nobody else acted
        // under it); after another owner took it, neither an older term does.
        store.clock().advance(Duration::from_millis(400));
        assert!(
            hold("b", second).await.unwrap(),
            "{name}: ran out, nobody took it"
        );
        store.clock().advance(Duration::from_millis(400));
        let third = store.try_lease("tracker", "a", ttl).await.unwrap();
        assert!(
            third.is_some() && third != first && third != second,
            "{name}"
        );
        assert!(!hold("b", second).await.unwrap(), "{name}");
        assert!(
            !hold("a", first).await.unwrap(),
            "{name}: an older term of the same owner"
        );
        assert!(hold("a", third).await.unwrap(), "{name}");
        // Many claimers at once: each command is claimed by exactly one.
        for i in 0..20u64 {
            store
                .insert_command(&format!("k{i}"), &command(100 + i, "fix"))
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(c) = store
                    .claim_command(&format!("w{w}"), Duration::from_secs(30))
                    .await
                    .unwrap()
                {
                    mine.push(c.id);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(
            (count, all.len()),
            (20, 20),
            "{name}: no command claimed twice"
        );
    }
}

/// Replicas started at the same moment on a fresh database all come up: the migrations
/// are serialized by the database's lock, and each finds the schema complete.
#[tokio::test]
async fn three_replicas_migrate_a_fresh_database_at_once() {
    for postgres in [false, true] {
        for round in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let Some(url) = common::database_url(&dir, postgres).await else {
                continue;
            };
            let replicas: Vec<_> = (0..3)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { Store::connect(&url).await })
                })
                .collect();
            let mut stores = Vec::new();
            for replica in replicas {
                match replica.await.unwrap() {
                    Ok(store) => stores.push(store),
                    Err(error) => {
                        panic!("postgres={postgres} round {round}: a replica failed: {error:#}")
                    }
                }
            }
            // Every replica can use the whole schema.
            for (i, store) in stores.iter().enumerate() {
                let key = format!("round-{round}-replica-{i}");
                assert!(
                    store
                        .insert_command(&key, &command(1, "fix"))
                        .await
                        .unwrap()
                        .is_some()
                );
            }
        }
    }
}

/// When an upstream answers again, work deferred for a long retry is due at once.
#[tokio::test]
async fn resuming_makes_deferred_work_due_now() {
    for (name, store, _dir) in stores().await {
        let id = store
            .insert_command("resume-1", &command(1, "fix"))
            .await
            .unwrap()
            .unwrap();
        let claimed = store
            .claim_command("w", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.map(|c| c.id), Some(id.clone()), "{name}");
        store
            .retry_command(&id, Duration::from_secs(3600), "GitHub is failing", 0)
            .await
            .unwrap();
        assert!(
            store
                .claim_command("w", Duration::from_secs(30))
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        store.resume_waiting().await.unwrap();
        let again = store
            .claim_command("w", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(again.map(|c| c.id), Some(id), "{name}");
    }
}

/// A status post's create that was answered leaves no doubt behind once the run is
/// given back: the next worker to claim the run edits its post at once, instead of
/// holding the edit back for the create's whole doubt window (a claim between giving
/// the run back and clearing the doubt used to do that).
#[tokio::test]
async fn an_answered_status_create_leaves_no_doubt_for_the_next_claim() {
    use ozbridge::domain::PostId;
    for (name, store, _dir) in stores().await {
        let run = ozbridge::store::RunRecord {
            post_first: true,
            ..new_run(&store, name)
        };
        store.insert_run(&run).await.unwrap();
        let lease = Duration::from_secs(30);
        let claimed = store
            .claim_run_to_notify("a", lease)
            .await
            .unwrap()
            .unwrap();
        let doubt_until = store.clock().now_ms() + 60_000;
        assert!(
            store
                .note_post_attempt(&run.id, "a", doubt_until, lease)
                .await
                .unwrap()
        );
        store
            .mark_posted(
                &run.id,
                claimed.version,
                &PostId::GithubComment { id: 9 },
                "d",
                true,
            )
            .await
            .unwrap();
        // A change comes in; another worker claims the run right away.
        let view = ozbridge::domain::RunView {
            note: Some("changed".into()),
            ..claimed.view.clone()
        };
        store
            .edit_run(&claimed, |_| {
                Some(ozbridge::store::RunEdit::View(view.clone()))
            })
            .await
            .unwrap();
        let next = store
            .claim_run_to_notify("b", lease)
            .await
            .unwrap()
            .unwrap();
        assert!(
            next.post_lookup_after
                .is_none_or(|at| at <= store.clock().now_ms()),
            "{name}: the create still counts as in doubt: {:?}",
            next.post_lookup_after
        );
    }
}

/// A change decided from an older copy of a run is refused, not stored over what
/// another writer recorded since: the tracker's "succeeded" survives a note decided
/// from the copy read before it, and the note, decided again, lands beside it.
#[tokio::test]
async fn a_change_decided_from_an_older_copy_is_refused() {
    use ozbridge::domain::RunView;
    use ozbridge::oz::types::RunState;
    use ozbridge::store::{RunEdit, RunPhase, Written};
    for (name, store, _dir) in stores().await {
        let run = new_run(&store, name);
        assert!(store.insert_run(&run).await.unwrap());
        let copy = store.get_run(&run.id).await.unwrap().unwrap();
        let finished = RunView {
            state: Some(RunState::Succeeded),
            ..copy.view.clone()
        };
        let oz_updated_at = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00.123456Z")
            .unwrap()
            .to_utc();
        let first = store
            .update_run(&copy, RunPhase::Done, &finished, true, Some(oz_updated_at))
            .await
            .unwrap();
        assert_eq!(first, Written::Stored, "{name}");
        let stored = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(
            stored.oz_updated_at,
            Some(oz_updated_at),
            "{name}: when Oz last updated it, to the microsecond"
        );
        // An older answer of Oz is neither noted nor stored, even from a current copy.
        let older = oz_updated_at - chrono::Duration::microseconds(1);
        store.note_oz_answer(&run.id, 9.0, older).await.unwrap();
        let refused = store
            .update_run(&stored, RunPhase::Active, &copy.view, true, Some(older))
            .await
            .unwrap();
        assert_eq!(refused, Written::Outdated, "{name}: an older answer");
        let stored = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(stored.oz_updated_at, Some(oz_updated_at), "{name}");
        assert_eq!(
            (stored.phase, stored.cost),
            (RunPhase::Done, 0.0),
            "{name}: nothing of the older answer was kept"
        );
        let noted = RunView {
            note: Some("noted".into()),
            ..copy.view.clone()
        };
        let second = store
            .update_run(&copy, RunPhase::Active, &noted, true, None)
            .await
            .unwrap();
        assert_eq!(
            second,
            Written::Outdated,
            "{name}: the older copy is refused"
        );
        // Decided first from the older copy: refused, then decided again from the run
        // as it is now.
        let decided_from = store
            .edit_run(&copy, |latest| {
                Some(RunEdit::View(RunView {
                    note: Some("noted".into()),
                    ..latest.view.clone()
                }))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(decided_from.view.state, Some(RunState::Succeeded), "{name}");
        let stored = store.get_run(&run.id).await.unwrap().unwrap();
        assert_eq!(stored.phase, RunPhase::Done, "{name}");
        assert_eq!(stored.view.state, Some(RunState::Succeeded), "{name}");
        assert_eq!(stored.view.note.as_deref(), Some("noted"), "{name}");
    }
}

/// Many writers changing one run at once (queue lines added by dispatchers on several
/// replicas) each see their change stored: none puts back a view another replaced.
#[tokio::test]
async fn concurrent_edits_of_one_run_all_land() {
    use ozbridge::domain::{QueuedNote, RunView};
    use ozbridge::store::RunEdit;
    for (name, store, _dir) in stores().await {
        let run = new_run(&store, name);
        assert!(store.insert_run(&run).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..24 {
            let store = store.clone();
            // Every writer starts from the same copy: all but one are refused at first.
            let copy = run.clone();
            tasks.push(tokio::spawn(async move {
                let note = QueuedNote {
                    who: format!("writer {i}"),
                    asked: "also this".into(),
                };
                store
                    .edit_run(&copy, |latest| {
                        let mut queued = latest.view.queued.clone();
                        queued.push(note.clone());
                        Some(RunEdit::View(RunView {
                            queued,
                            ..latest.view.clone()
                        }))
                    })
                    .await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some(), "{name}");
        }
        let stored = store.get_run(&run.id).await.unwrap().unwrap();
        let mut writers: Vec<String> = stored.view.queued.iter().map(|n| n.who.clone()).collect();
        writers.sort();
        writers.dedup();
        assert_eq!(writers.len(), 24, "{name}: every edit landed: {writers:?}");
    }
}

/// A database written by the previous versions: bare status post ids, artifacts and Oz
/// states only inside the runs' views. Migrating types the post ids, gives the
/// artifacts rows and copies the active runs' states out for the gauges.
#[tokio::test]
async fn migration_types_old_post_ids_and_lists_old_artifacts() {
    use sqlx::Connection;
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = common::database_url(&dir, postgres).await else {
            continue;
        };
        let store = Store::connect(&url).await.unwrap();
        let run = new_run(&store, "old");
        store.insert_run(&run).await.unwrap();
        store.close().await;
        // Turn the row back into what the previous version wrote.
        let raw_url = if postgres {
            url.clone()
        } else {
            format!("{url}?mode=rw")
        };
        let mut conn = sqlx::AnyConnection::connect(&raw_url).await.unwrap();
        let view = r#"{"state":"SUCCEEDED","oz_run_id":"oz-1","conversation_id":null,"session_link":null,"artifacts":[{"artifact_type":"SCREENSHOT","created_at":null,"data":{"artifact_uid":"shot-old","mime_type":"image/png"}}],"status_message":null,"summary":null,"start_error":null}"#;
        for statement in [
            format!("UPDATE runs SET status_post = '123', view = '{view}', phase = 'active'"),
            "DELETE FROM artifacts".to_owned(),
            "DELETE FROM ozbridge_schema WHERE version >= 3".to_owned(),
            // What versions 7 to 11 added, which the previous version did not have either.
            "DROP INDEX IF EXISTS runs_active_state".to_owned(),
            "ALTER TABLE runs DROP COLUMN oz_state".to_owned(),
            "ALTER TABLE runs DROP COLUMN view_rev".to_owned(),
            "ALTER TABLE runs DROP COLUMN oz_updated_us".to_owned(),
            "ALTER TABLE leases DROP COLUMN term".to_owned(),
            "DROP TABLE inbox".to_owned(),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();

        let store = Store::connect(&url).await.unwrap();
        let run = store
            .get_run(&ozbridge::ids::RunRef("run-old".into()))
            .await
            .unwrap()
            .expect("the run");
        assert_eq!(
            run.status_post,
            Some(ozbridge::domain::PostId::GithubComment { id: 123 })
        );
        assert!(store.artifact_known("shot-old").await.unwrap());
        assert!(!store.artifact_known("shot-new").await.unwrap());
        // The active run's state was copied out of its view for the gauges.
        let states = store.active_states().await.unwrap();
        assert_eq!(states.get("SUCCEEDED"), Some(&1), "{states:?}");
    }
}
