//! Hostile and malformed requests through the real router: shapes GitHub never sends,
//! NUL characters, edits by someone else, and buttons pressed on the wrong message.

mod common;

use common::{CHANNEL, Harness, REPO, database_url};
use ozbridge::slack::render::ACTION_CANCEL;
use ozbridge::testkit::oz::Scenario;
use ozbridge::testkit::payloads::github::CommentEventSpec;

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
    let run = h.thread_run_ref(CHANNEL, &root);
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
        let slash = ozbridge::testkit::payloads::slack::slash_command_body(
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

/// A signed or unsigned raw request and the answers it may get.
struct Hostile {
    what: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    expect: &'static [u16],
}

fn github(
    what: &'static str,
    event: &str,
    body: Vec<u8>,
    signature: Option<String>,
    expect: &'static [u16],
) -> Hostile {
    let mut headers = vec![
        ("X-GitHub-Event", event.to_owned()),
        ("Content-Type", "application/json".to_owned()),
    ];
    if let Some(signature) = signature {
        headers.push(("X-Hub-Signature-256", signature));
    }
    Hostile {
        what,
        path: "/github/webhook",
        headers,
        body,
        expect,
    }
}

fn slack(
    what: &'static str,
    path: &'static str,
    body: Vec<u8>,
    secret: Option<&str>,
    at: i64,
    expect: &'static [u16],
) -> Hostile {
    let mut headers = vec![
        (
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("X-Slack-Request-Timestamp", at.to_string()),
    ];
    if let Some(secret) = secret {
        headers.push((
            "X-Slack-Signature",
            ozbridge::slack::intake::sign(secret, at, &body),
        ));
    }
    Hostile {
        what,
        path,
        headers,
        body,
        expect,
    }
}

#[tokio::test]
async fn a_corpus_of_hostile_requests_gets_clear_answers_and_touches_nothing() {
    use common::{SECRET, SLACK_SECRET};
    use ozbridge::intake::signature::sign_github;
    let mut h = Harness::start().await;
    let sign = |body: &[u8]| Some(sign_github(SECRET, body));
    let (_, valid) = h.comment(80, "alice", "/oz fix it");
    let valid = valid.into_bytes();
    let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value = serde_json::from_slice(&valid).unwrap();
        f(&mut value);
        value.to_string().into_bytes()
    };
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes();
    let nul_repo = mutate(&|v| v["repository"]["full_name"] = format!("acme/w{}", '\0').into());
    let issue_array = mutate(&|v| v["issue"] = serde_json::json!([80]));
    let duplicate_keys = {
        let text = String::from_utf8(valid.clone()).unwrap();
        text.replacen("{", "{\"action\":\"deleted\",", 1)
            .into_bytes()
    };
    let mut invalid_utf8 = valid.clone();
    invalid_utf8.splice(10..10, [0xff, 0xfe, 0xc0]);
    let form = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(&valid).collect::<String>()
    )
    .into_bytes();
    let oversized = vec![b' '; 1024 * 1024 + 10];
    let no_command = mutate(&|v| v["comment"]["body"] = "thanks, looks good".into());
    let mut corpus = vec![
        github("unsigned", "issue_comment", valid.clone(), None, &[401]),
        github(
            "signed with another secret",
            "issue_comment",
            valid.clone(),
            Some(sign_github("nope", &valid)),
            &[401],
        ),
        github(
            "signature of another body",
            "issue_comment",
            valid.clone(),
            sign(b"{}"),
            &[401],
        ),
        github(
            "malformed signature",
            "issue_comment",
            valid.clone(),
            Some("sha256=zz".into()),
            &[401],
        ),
        github(
            "not JSON",
            "issue_comment",
            b"{\"action\":".to_vec(),
            sign(b"{\"action\":"),
            &[400],
        ),
        github(
            "invalid UTF-8",
            "issue_comment",
            invalid_utf8.clone(),
            sign(&invalid_utf8),
            &[400],
        ),
        github(
            "deep nesting",
            "issue_comment",
            deep.clone(),
            sign(&deep),
            &[400],
        ),
        github(
            "duplicate keys",
            "issue_comment",
            duplicate_keys.clone(),
            sign(&duplicate_keys),
            &[400],
        ),
        github(
            "NUL in the repository",
            "issue_comment",
            nul_repo.clone(),
            sign(&nul_repo),
            &[400],
        ),
        github(
            "an issue as an array",
            "issue_comment",
            issue_array.clone(),
            sign(&issue_array),
            &[400],
        ),
        github(
            "form-encoded instead of JSON",
            "issue_comment",
            form.clone(),
            sign(&form),
            &[400],
        ),
        github(
            "oversized",
            "issue_comment",
            oversized.clone(),
            sign(&oversized),
            &[413],
        ),
        github(
            "an event not handled",
            "push",
            b"{}".to_vec(),
            sign(b"{}"),
            &[202],
        ),
        github(
            "a comment without a command",
            "issue_comment",
            no_command.clone(),
            sign(&no_command),
            &[202],
        ),
    ];
    let now = chrono::Utc::now().timestamp();
    let slash = ozbridge::testkit::payloads::slack::slash_command_body(
        "CENG",
        "U1",
        "fix it",
        &h.response_url,
        "trig-h",
    )
    .into_bytes();
    let nul_slash = ozbridge::testkit::payloads::slack::slash_command_body(
        &format!("C{}", '\0'),
        "U1",
        "fix",
        &h.response_url,
        "trig-n",
    )
    .into_bytes();
    let bot_event = {
        let mut event = ozbridge::testkit::payloads::slack::mention_event(
            "Ev9",
            "CENG",
            "U1",
            "<@UOZBOT> hi",
            "9.9",
            None,
        );
        event["event"]["bot_id"] = "B1".into();
        event.to_string().into_bytes()
    };
    let unknown_envelope = br#"{"type":"app_rate_limited"}"#.to_vec();
    corpus.extend([
        slack(
            "slash command unsigned",
            "/slack/commands",
            slash.clone(),
            None,
            now,
            &[401],
        ),
        slack(
            "slash command replayed (stale)",
            "/slack/commands",
            slash.clone(),
            Some(SLACK_SECRET),
            now - 400,
            &[401],
        ),
        slack(
            "slash command from the future",
            "/slack/commands",
            slash.clone(),
            Some(SLACK_SECRET),
            now + 400,
            &[401],
        ),
        slack(
            "slash command signed with another secret",
            "/slack/commands",
            slash.clone(),
            Some("nope"),
            now,
            &[401],
        ),
        slack(
            "slash command with a NUL channel",
            "/slack/commands",
            nul_slash.clone(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "event not JSON",
            "/slack/events",
            b"{\"type\":".to_vec(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "event deeply nested",
            "/slack/events",
            deep.clone(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "event invalid UTF-8",
            "/slack/events",
            invalid_utf8.clone(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "event by a bot",
            "/slack/events",
            bot_event.clone(),
            Some(SLACK_SECRET),
            now,
            &[200],
        ),
        slack(
            "unknown envelope",
            "/slack/events",
            unknown_envelope.clone(),
            Some(SLACK_SECRET),
            now,
            &[200],
        ),
        slack(
            "interaction without payload",
            "/slack/interactions",
            b"a=b".to_vec(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "interaction payload not JSON",
            "/slack/interactions",
            b"payload=%7Bnope".to_vec(),
            Some(SLACK_SECRET),
            now,
            &[400],
        ),
        slack(
            "oversized",
            "/slack/events",
            oversized.clone(),
            Some(SLACK_SECRET),
            now,
            &[413],
        ),
    ]);
    // Slack's unsigned SSL check is answered empty and reads nothing else.
    corpus.push(slack(
        "ssl_check with a smuggled command",
        "/slack/commands",
        [b"ssl_check=1&".as_slice(), &slash].concat(),
        None,
        now,
        &[200],
    ));
    for case in corpus {
        let mut request = h.http.post(h.url(case.path)).body(case.body.clone());
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            case.expect.contains(&status),
            "{}: answered {status}, expected {:?}",
            case.what,
            case.expect
        );
    }
    assert_eq!(
        h.store().command_count().await.unwrap(),
        0,
        "the database stored nothing"
    );
    assert_eq!(h.sim.total_calls(), 0, "Oz was not called");
    assert!(
        h.github.requests().is_empty(),
        "GitHub was not called: {:?}",
        h.github.requests()
    );
    assert_eq!(h.slack.total_calls(), 0, "Slack was not called");
}
