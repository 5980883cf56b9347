//! End-to-end on Slack: signed slash commands, events and button presses through the real
//! router and workers, against the Oz simulator and the fake Slack Web API.

mod common;

use common::{CHANNEL, Harness, NO_BOT_CHANNEL, SLACK_OLD_SECRET, SLACK_SECRET};
use ozbridge::slack::render::{ACTION_CANCEL, ACTION_RETRY};
use ozbridge::testkit::oz::Scenario;
use ozbridge::testkit::payloads::slack::{direct_message_event, mention_event, slash_command_body};

fn text_of(message: &ozbridge::testkit::slack::FakeMessage) -> String {
    message.shown().to_owned()
}

#[tokio::test]
async fn slash_command_posts_a_root_message_kept_current_with_thread_replies() {
    let h = Harness::start().await;
    let first_post = h.next_message(CHANNEL);
    let response = h
        .slash(CHANNEL, "U1", "fix the flaky login test --env prod-mirror")
        .await;
    assert_eq!(response.status(), 200);
    // The first thing the bot posts is the run's status, as a new root message.
    let first = first_post.await;
    assert!(
        first.thread_ts.is_none() && first.text.starts_with("Oz agent"),
        "{first:?}"
    );
    let ack: serde_json::Value = response.json().await.unwrap();
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(
        ack["text"]
            .as_str()
            .unwrap()
            .contains("fix the flaky login test")
    );
    h.wait_for("the root message to show success", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| text_of(m).contains("✅ Done"))
    })
    .await;
    let root = h.slack_roots(CHANNEL).remove(0);
    let body = text_of(&root);
    assert!(
        body.contains("<@U1> asked: fix the flaky login test"),
        "{body}"
    );
    assert!(body.contains("[Open session]"), "{body}");
    assert!(body.contains("Pull request:"), "{body}");
    // The whole final message, text and blocks, as a readable snapshot.
    insta::with_settings!({ filters => common::SNAPSHOT_FILTERS.to_vec() }, {
        insta::assert_json_snapshot!(
            "final_status_message",
            serde_json::json!({ "text": root.text, "blocks": root.blocks })
        );
    });
    // Edited in place, not posted again (a busy notifier may fold "Working" into the
    // final edit, so the states in between are not asserted one by one).
    assert!(root.revisions.len() >= 2, "the root was updated in place");
    // While it worked, the root showed the run's steps as the bridge read them.
    assert!(
        root.revisions.iter().any(|r| r.contains("*Progress*")
            && r.contains(":white_check_mark: Read the issue and the failing test")),
        "{:?}",
        root.revisions
    );
    assert!(root.revisions[0].contains("Starting") || root.revisions[0].contains("Queued"));
    h.wait_in_thread(CHANNEL, &root.ts, "the agent finished")
        .await;
    let thread: Vec<String> = h
        .slack
        .thread(CHANNEL, &root.ts)
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert!(
        thread.iter().any(|t| t.contains("started working")),
        "{thread:?}"
    );
    assert!(
        thread.iter().any(|t| t.contains("Opened a pull request")),
        "{thread:?}"
    );
    assert_eq!(h.slack_roots(CHANNEL).len(), 1);
    let request = &h.sim.create_requests()[0];
    assert_eq!(
        request
            .config
            .as_ref()
            .and_then(|c| c.environment_id.as_deref()),
        Some("prod-mirror")
    );
    assert!(
        request
            .title
            .as_deref()
            .unwrap_or_default()
            .starts_with("Slack #eng: fix the flaky login test")
    );
    assert_eq!(
        h.slack.posts_without_charset(),
        0,
        "every JSON post to Slack says it is UTF-8"
    );
}

#[tokio::test]
async fn a_thread_mention_carries_the_thread_and_a_follow_up_continues_it() {
    let h = Harness::start().await;
    let root = h.slack.add_user_message(
        CHANNEL,
        None,
        "U2",
        "Login breaks when the session cookie expires",
    );
    h.slack.add_user_message(
        CHANNEL,
        Some(&root),
        "U3",
        "Seen it on Safari only <!channel>",
    );
    let ask = h
        .mention(
            CHANNEL,
            "U1",
            "<@UOZBOT> summarize this thread and open an issue",
            Some(&root),
        )
        .await;
    h.wait_for("the success reaction", || {
        h.slack
            .reactions(CHANNEL, &ask)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    assert!(
        h.slack
            .reactions(CHANNEL, &ask)
            .contains(&"eyes".to_owned())
    );
    let prompt = h.sim.create_requests()[0]
        .prompt
        .clone()
        .unwrap_or_default();
    assert!(
        prompt.contains("summarize this thread and open an issue"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<@U2>: Login breaks when the session cookie expires"),
        "{prompt}"
    );
    assert!(prompt.contains("<untrusted source=\"thread\">"), "{prompt}");
    // The reaction and the status update go out on separate paths: wait for each.
    let status = h.wait_in_thread(CHANNEL, &root, "✅ Done").await;
    assert!(
        status.text.starts_with("Oz agent"),
        "the status reply says Done"
    );
    let again = h
        .mention(CHANNEL, "U1", "<@UOZBOT> now fix it", Some(&root))
        .await;
    h.wait_for("the follow-up to finish", || {
        h.slack
            .reactions(CHANNEL, &again)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    let requests = h.sim.create_requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].conversation_id.is_some(),
        "the follow-up continues the conversation"
    );
    assert_eq!(
        requests[1].conversation_id,
        h.sim.run(&h.sim_run_id(0)).and_then(|r| r.conversation_id)
    );
}

#[tokio::test]
async fn a_busy_thread_queues_the_next_request_and_the_cancel_button_stops_the_run() {
    let h = Harness::start().await;
    h.sim.push_scenario(Scenario::SlowStart);
    let root = h.slack.add_user_message(CHANNEL, None, "U2", "topic");
    h.mention(CHANNEL, "U1", "<@UOZBOT> long job", Some(&root))
        .await;
    h.wait_in_thread(CHANNEL, &root, "Oz agent").await;
    h.mention(CHANNEL, "U1", "<@UOZBOT> another", Some(&root))
        .await;
    h.wait_in_thread(
        CHANNEL,
        &root,
        "queued: this starts when the current run ends",
    )
    .await;
    let status = h.thread_status(CHANNEL, &root).unwrap();
    let run = h.thread_run_ref(CHANNEL, &root);
    assert_eq!(
        h.press(ACTION_CANCEL, &run, CHANNEL, "U1", &status.ts, Some(&root))
            .await
            .status(),
        200
    );
    let updated = h.wait_in_thread(CHANNEL, &root, "🚫 Cancelled").await;
    assert_eq!(
        updated.ts, status.ts,
        "the status message itself shows the cancel"
    );
    assert!(
        updated
            .revisions
            .iter()
            .any(|r| r.contains("Cancel requested by <@U1>")),
        "{:?}",
        updated.revisions
    );
    assert!(
        h.sim.calls("POST /agent/runs/{id}/cancel") >= 2,
        "the 409 of a PENDING run was retried"
    );
    // The queued request starts once the cancelled run has ended.
    h.wait_for("the queued request to start", || h.sim.run_count() == 2)
        .await;
    let second = h.sim.create_requests()[1]
        .prompt
        .clone()
        .unwrap_or_default();
    assert!(second.contains("another"), "{second}");
}

#[tokio::test]
async fn the_retry_button_restarts_a_retryable_failure() {
    let h = Harness::start().await;
    h.sim.push_scenario(Scenario::Error);
    h.slash(CHANNEL, "U1", "deploy the preview").await;
    h.wait_for("the error", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| text_of(m).contains("⚠️ Errored"))
    })
    .await;
    let root = h.slack_roots(CHANNEL).remove(0);
    assert!(text_of(&root).contains("[Retry]"), "{}", text_of(&root));
    let run = root
        .metadata
        .pointer("/event_payload/key")
        .and_then(|k| k.as_str())
        .unwrap()
        .trim_start_matches("run:")
        .to_owned();
    assert_eq!(
        h.press(ACTION_RETRY, &run, CHANNEL, "U1", &root.ts, None)
            .await
            .status(),
        200
    );
    h.wait_in_thread(CHANNEL, &root.ts, "✅ Done").await;
    assert_eq!(h.sim.run_count(), 2);
    let requests = h.sim.create_requests();
    assert_ne!(
        requests[0].prompt, requests[1].prompt,
        "the retry carries its own reference"
    );
    h.wait_for("the root's note", || {
        h.slack_roots(CHANNEL)[0]
            .revisions
            .iter()
            .any(|r| r.contains("Retried by <@U1>"))
    })
    .await;
}

#[tokio::test]
async fn signatures_from_the_past_the_future_or_with_a_wrong_secret_are_refused() {
    let h = Harness::start().await;
    let body = slash_command_body(CHANNEL, "U1", "fix it", &h.response_url, "trig-x");
    let now = chrono::Utc::now().timestamp();
    let form = "application/x-www-form-urlencoded";
    assert_eq!(
        h.slack_request("/slack/commands", &body, form, SLACK_SECRET, now - 400)
            .await
            .status(),
        401
    );
    assert_eq!(
        h.slack_request("/slack/commands", &body, form, SLACK_SECRET, now + 400)
            .await
            .status(),
        401
    );
    assert_eq!(
        h.slack_request("/slack/commands", &body, form, "wrong", now)
            .await
            .status(),
        401
    );
    let unsigned = h
        .http
        .post(h.url("/slack/commands"))
        .header("Content-Type", form)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    h.settle().await;
    assert_eq!(h.store().pending_command_count().await.unwrap(), 0);
    assert_eq!(
        h.slack_request("/slack/commands", &body, form, SLACK_OLD_SECRET, now)
            .await
            .status(),
        200,
        "second secret"
    );
}

#[tokio::test]
async fn ssl_check_is_answered_empty_and_a_smuggled_payload_is_ignored() {
    let h = Harness::start().await;
    let smuggled = format!(
        "ssl_check=1&{}",
        slash_command_body(CHANNEL, "U1", "delete prod", &h.response_url, "trig-s")
    );
    let response = h
        .http
        .post(h.url("/slack/commands"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(smuggled)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().is_empty());
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert!(h.slack_roots(CHANNEL).is_empty());
}

#[tokio::test]
async fn url_verification_retries_and_resends_start_one_run() {
    let h = Harness::start().await;
    let challenge =
        serde_json::json!({ "type": "url_verification", "challenge": "c-123", "token": "t" });
    let answer: serde_json::Value = h.slack_event(&challenge).await.json().await.unwrap();
    assert_eq!(answer["challenge"], "c-123");
    let ts = h
        .slack
        .add_user_message(CHANNEL, None, "U1", "<@UOZBOT> fix it");
    let event = mention_event("Ev1", CHANNEL, "U1", "<@UOZBOT> fix it", &ts, None);
    h.slack_event(&event).await;
    // Slack's retry of the same delivery, and the same message under a new event_id.
    let retry = h
        .http
        .post(h.url("/slack/events"))
        .header("Content-Type", "application/json")
        .header("X-Slack-Retry-Num", "1")
        .header("X-Slack-Retry-Reason", "http_timeout")
        .header(
            "X-Slack-Request-Timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header(
            "X-Slack-Signature",
            ozbridge::slack::intake::sign(
                SLACK_SECRET,
                chrono::Utc::now().timestamp(),
                event.to_string().as_bytes(),
            ),
        )
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let resent = mention_event("Ev2", CHANNEL, "U1", "<@UOZBOT> fix it", &ts, None);
    let answer: serde_json::Value = h.slack_event(&resent).await.json().await.unwrap();
    assert_eq!(answer["duplicate"], true);
    h.wait_for("the run to finish", || {
        h.slack
            .reactions(CHANNEL, &ts)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn refused_users_and_channels_get_a_private_explanation() {
    let policy = "[slack]\nallowed_users = [\"U1\"]\nallowed_channels = [\"CENG\"]\nallow_direct_messages = false\n";
    let h = Harness::start_with(None, &[("CONFIG_TOML", policy)])
        .await
        .unwrap();
    h.slash(CHANNEL, "U9", "fix it").await;
    h.wait_private("not on the list").await;
    h.slack.add_channel("COTHER", true);
    let ts = h.mention("COTHER", "U1", "<@UOZBOT> fix it", None).await;
    h.wait_for("the ephemeral refusal", || {
        h.slack
            .ephemerals("U1")
            .iter()
            .any(|t| t.contains("cannot be started from this channel"))
    })
    .await;
    h.slack.add_channel("D1", true);
    let dm_ts = h.slack.add_user_message("D1", None, "U1", "fix it");
    h.slack_event(&direct_message_event("Ev9", "D1", "U1", "fix it", &dm_ts))
        .await;
    h.wait_for("the DM refusal", || {
        h.slack
            .ephemerals("U1")
            .iter()
            .any(|t| t.contains("direct messages"))
    })
    .await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert!(
        h.slack.thread("COTHER", &ts).is_empty(),
        "nothing public was posted"
    );
}

#[tokio::test]
async fn a_bot_outside_the_channel_tells_the_user_privately_and_starts_nothing() {
    let h = Harness::start().await;
    h.slash(NO_BOT_CHANNEL, "U1", "fix it").await;
    h.wait_private("/invite @oz").await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
}

#[tokio::test]
async fn a_slash_command_in_a_direct_message_between_people_gets_advice_that_fits() {
    let h = Harness::start().await;
    // Slack sends `/oz` typed in a DM between two people with that DM's id; the bot
    // cannot join it, so Slack answers its post with channel_not_found.
    h.slash("D0PEOPLE1", "U1", "fix it").await;
    h.wait_private("direct message between other people").await;
    h.settle().await;
    assert!(
        h.slack.responses().iter().all(|r| !r.contains("/invite")),
        "{:?}",
        h.slack.responses()
    );
    assert_eq!(h.sim.run_count(), 0);
}

#[tokio::test]
async fn a_mention_inside_a_sentence_starts_nothing() {
    let h = Harness::start().await;
    let named = h
        .mention(
            CHANNEL,
            "U1",
            "for reviews you can count on <@UOZBOT>",
            None,
        )
        .await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert!(h.slack.reactions(CHANNEL, &named).is_empty(), "not even 👀");
    // The same message addressing the bot on a line of its own is a request.
    let asked = h
        .mention(
            CHANNEL,
            "U1",
            "thanks!\n<@UOZBOT> fix the flaky login test",
            None,
        )
        .await;
    h.wait_for("the run", || {
        h.slack
            .reactions(CHANNEL, &asked)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
    assert_eq!(h.sim.run_count(), 1);
    let prompt = h.sim.create_requests()[0]
        .prompt
        .clone()
        .unwrap_or_default();
    assert!(prompt.contains("fix the flaky login test"), "{prompt}");
}

#[tokio::test]
async fn a_slack_429_is_honoured() {
    let h = Harness::start().await;
    h.slack.rate_limit("chat.postMessage", 1, 1);
    h.slash(CHANNEL, "U1", "fix it").await;
    h.wait_for("the root message", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| text_of(m).contains("✅ Done"))
    })
    .await;
    assert_eq!(h.slack_roots(CHANNEL).len(), 1);
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_restart_between_acknowledgement_and_posting_loses_nothing() {
    let mut h = Harness::start().await;
    assert_eq!(h.slash(CHANNEL, "U1", "fix it").await.status(), 200);
    h.crash_and_restart().await;
    h.wait_for("the root message", || {
        h.slack_roots(CHANNEL)
            .first()
            .is_some_and(|m| text_of(m).contains("✅ Done"))
    })
    .await;
    h.crash_and_restart().await;
    h.settle().await;
    assert_eq!(h.slack_roots(CHANNEL).len(), 1, "posted once");
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn informational_slash_commands_answer_privately() {
    let h = Harness::start().await;
    h.slash(CHANNEL, "U1", "help").await;
    h.wait_private("*Oz agent commands*").await;
    h.slash(CHANNEL, "U1", "fix --modle x").await;
    h.wait_private("Did you mean `--model`?").await;
    h.slash(CHANNEL, "U1", "status").await;
    h.wait_private("No Oz agent has run").await;
    assert!(h.slack_roots(CHANNEL).is_empty());
    assert!(
        !h.slack.responses().is_empty(),
        "answered through response_url"
    );
    assert_eq!(h.slack.posts_without_charset(), 0, "JSON says it is UTF-8");
}

#[tokio::test]
async fn a_direct_message_starts_a_run_in_its_thread() {
    let h = Harness::start().await;
    h.slack.add_channel("D7", true);
    let ts = h.slack.add_user_message("D7", None, "U1", "fix the build");
    let response = h
        .slack_event(&direct_message_event(
            "Ev7",
            "D7",
            "U1",
            "fix the build",
            &ts,
        ))
        .await;
    assert_eq!(response.status(), 200);
    // The reaction and the status message go out on separate paths, in either order:
    // each is awaited on its own.
    h.wait_for("the status in the DM thread to say Done", || {
        h.thread_status("D7", &ts)
            .is_some_and(|status| text_of(&status).contains("✅ Done"))
    })
    .await;
    h.wait_for("the run's final reaction", || {
        h.slack
            .reactions("D7", &ts)
            .contains(&"white_check_mark".to_owned())
    })
    .await;
}

#[tokio::test]
async fn channel_defaults_apply_and_options_override_them() {
    use ozbridge::oz::types::{HarnessKind, PublicAccess};
    let settings = "[oz]\nharness = \"gemini\"\n[slack.channels.CENG]\nenvironment_id = \"env-web\"\nmodel_id = \"gpt-5\"\nharness = \"claude\"\nsession_access = \"viewer\"\n";
    let h = Harness::start_with(None, &[("CONFIG_TOML", settings)])
        .await
        .unwrap();
    h.slash(CHANNEL, "U1", "fix it --model claude-4-opus").await;
    h.wait_for("the run", || h.sim.run_count() == 1).await;
    let config = h.sim.create_requests()[0].config.clone().unwrap();
    assert_eq!(config.environment_id.as_deref(), Some("env-web"));
    assert_eq!(config.model_id.as_deref(), Some("claude-4-opus"));
    assert_eq!(config.harness.map(|h| h.kind), Some(HarnessKind::Claude));
    assert_eq!(
        config.session_sharing.and_then(|s| s.public_access),
        Some(PublicAccess::Viewer)
    );
    // The command's option beats the channel's harness.
    h.slash(CHANNEL, "U1", "and the docs --harness oz").await;
    h.wait_for("the second run", || h.sim.run_count() == 2)
        .await;
    let config = h.sim.create_requests()[1].config.clone().unwrap();
    assert_eq!(config.harness.map(|h| h.kind), Some(HarnessKind::Oz));
    // Elsewhere the service's default applies, and sessions are not shared.
    h.slack.add_channel("COTHER", true);
    h.slash("COTHER", "U1", "fix it").await;
    h.wait_for("the third run", || h.sim.run_count() == 3).await;
    let config = h.sim.create_requests()[2].config.clone().unwrap();
    assert_eq!(config.harness.map(|h| h.kind), Some(HarnessKind::Gemini));
    assert_eq!(config.session_sharing, None);
}

#[tokio::test]
async fn oversized_slack_bodies_are_refused() {
    let h = Harness::start().await;
    let huge = format!("text={}", "x".repeat(1024 * 1024 + 10));
    let response = h
        .slack_request(
            "/slack/commands",
            &huge,
            "application/x-www-form-urlencoded",
            SLACK_SECRET,
            chrono::Utc::now().timestamp(),
        )
        .await;
    assert_eq!(response.status(), 413);
}

/// A posted message is found past the first page of a busy channel or a long thread
/// (a lookup that stopped at one page would post it a second time).
#[tokio::test]
async fn a_posted_message_is_found_past_the_first_page() {
    let slack = ozbridge::testkit::slack::FakeSlack::new("xoxb-test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let (api, hooks) = slack.serve(listener).await.expect("fake Slack");
    slack.add_channel("C9", true);
    let client = ozbridge::slack::SlackClient::new(
        &api,
        "xoxb-test".to_owned().into(),
        &hooks,
        std::time::Duration::from_secs(5),
    )
    .expect("client");
    let posted = client
        .post_message("C9", None, "status", None, "status:run-1")
        .await
        .expect("posted");
    for i in 0..450 {
        slack.add_user_message("C9", None, "U1", &format!("chatter {i}"));
    }
    let found = client.find_posted("C9", None, "status:run-1", "0").await;
    assert_eq!(found.expect("lookup"), Some(posted.clone()));

    // In a thread: 450 replies before the bot's.
    for i in 0..450 {
        slack.add_user_message("C9", Some(&posted), "U1", &format!("reply {i}"));
    }
    let reply = client
        .post_message("C9", Some(&posted), "status", None, "status:run-2")
        .await
        .expect("posted");
    let found = client
        .find_posted("C9", Some(&posted), "status:run-2", "0")
        .await;
    assert_eq!(found.expect("lookup"), Some(reply));
    let missing = client.find_posted("C9", None, "status:run-3", "0").await;
    assert_eq!(missing.expect("lookup"), None);
}
