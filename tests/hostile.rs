//! Hostile and malformed requests through the real router: shapes GitHub never sends,
//! NUL characters, edits by someone else, and buttons pressed on the wrong message.

mod common;

use common::{CHANNEL, Harness, REPO, database_url};
use ozbridge::github::fake::CommentEventSpec;
use ozbridge::oz::sim::Scenario;
use ozbridge::slack::render::ACTION_CANCEL;

#[tokio::test]
async fn structs_sent_as_arrays_are_refused_and_start_nothing() {
    let mut h = Harness::start().await;
    for (field, shape) in [
        ("issue", serde_json::json!([1])),
        ("installation", serde_json::json!([1])),
    ] {
        let (_, payload) = h.comment(70, "alice", "/oz fix it");
        let mut value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        value[field] = shape;
        let response = h.deliver("issue_comment", &value.to_string()).await;
        assert_eq!(response.status(), 400, "{field} as an array");
    }
    assert_eq!(h.store().pending_command_count().await.unwrap(), 0);
    assert_eq!(h.sim.run_count(), 0);
}

#[tokio::test]
async fn an_edit_by_someone_without_write_access_starts_nothing() {
    let h = Harness::start().await;
    let id = h.github.add_user_comment(REPO, 71, "alice", "please look");
    let edit = CommentEventSpec {
        action: "edited",
        previous_body: Some("please look"),
        ..CommentEventSpec::created(REPO, 71, id, "alice", "please look\n/oz delete the repo")
    };
    let mut value = edit.payload();
    value["sender"] = serde_json::json!({ "login": "mallory", "id": 2002, "type": "User" });
    assert_eq!(
        h.deliver("issue_comment", &value.to_string())
            .await
            .status(),
        202
    );
    let reply = h
        .wait_reply_contains(71, "Only people with write access")
        .await;
    assert!(reply.contains("@mallory"), "{reply}");
    // The refusal is the command's final outcome: nothing else comes of it.
    assert_eq!(h.sim.run_count(), 0);
}

#[tokio::test]
async fn a_button_acts_only_on_the_message_it_was_pressed_on() {
    let h = Harness::start().await;
    h.sim.push_scenario(Scenario::Endless);
    let root = h.slack.add_user_message(CHANNEL, None, "U2", "topic");
    h.mention(CHANNEL, "U1", "<@UOZBOT> long job", Some(&root))
        .await;
    h.wait_in_thread(CHANNEL, &root, "Working").await;
    let status = h.thread_status(CHANNEL, &root).unwrap();
    let run = status
        .metadata
        .pointer("/event_payload/key")
        .and_then(|k| k.as_str())
        .unwrap()
        .trim_start_matches("run:")
        .to_owned();
    // The same run named from a message of another thread.
    let elsewhere = h.slack.add_user_message(CHANNEL, None, "U3", "other topic");
    assert_eq!(
        h.press(ACTION_CANCEL, &run, CHANNEL, "U3", &elsewhere, None)
            .await
            .status(),
        200
    );
    h.wait_private("does not belong to a run of this message")
        .await;
    assert_eq!(h.sim.calls("POST /agent/runs/{id}/cancel"), 0);
    assert!(!h.sim.run(&h.sim_run_id(0)).unwrap().state.is_terminal());
}

/// NUL characters on both databases: an identifier holding one is refused with a 400
/// (never a 503 that would be redelivered forever); a task holding one runs.
#[tokio::test]
async fn nul_characters_are_refused_in_ids_and_cleaned_in_text() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = database_url(&dir, postgres).await else {
            continue;
        };
        let mut h = Harness::start_with(Some(url), &[]).await.unwrap();
        let (_, payload) = h.comment(72, "alice", "/oz fix it");
        let mut value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        value["repository"]["full_name"] = format!("acme/wid{}gets", '\0').into();
        let response = h.deliver("issue_comment", &value.to_string()).await;
        assert_eq!(response.status(), 400, "postgres={postgres}");
        let slash = ozbridge::slack::fake::slash_command_body(
            &format!("C{}1", '\0'),
            "U1",
            "fix",
            &h.response_url,
            "trig-nul",
        );
        let response = h
            .slack_request(
                "/slack/commands",
                &slash,
                "application/x-www-form-urlencoded",
                common::SLACK_SECRET,
                chrono::Utc::now().timestamp(),
            )
            .await;
        assert_eq!(response.status(), 400, "postgres={postgres}");
        let comment = h
            .command(73, "alice", &format!("/oz fix{} the test", '\0'))
            .await;
        h.wait_reaction(comment, "rocket").await;
        let status = h.wait_status_contains(73, "✅ Done").await;
        assert!(!status.body.contains('\0'));
        assert!(!status.body.to_lowercase().contains("byte sequence"));
        assert_eq!(h.sim.run_count(), 1, "postgres={postgres}");
    }
}
