//! End-to-end: signed GitHub webhooks through the real router and workers, against the
//! Oz simulator and the fake GitHub.

mod common;

use common::{Harness, OLD_SECRET, REPO};
use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::oz::{Fault, FaultKind, Scenario};
use ozbridge::testkit::payloads::github::CommentEventSpec;

#[tokio::test]
async fn issue_command_runs_to_success_in_one_status_comment() {
    let mut h = Harness::start().await;
    let comment = h.command(42, "alice", "/oz fix the flaky login test").await;
    h.wait_reaction(comment, "eyes").await;
    let status = h.wait_status_contains(42, "✅ Done").await;
    h.wait_reaction(comment, "rocket").await;
    assert!(
        status
            .body
            .contains("Live session: [open in Warp](https://app.warp.dev/session/"),
        "{}",
        status.body
    );
    assert!(
        status
            .body
            .contains("Pull request: https://github.com/acme/widgets/pull/"),
        "{}",
        status.body
    );
    assert!(status.body.contains("### Summary"));
    // The whole comment, and the prompt Oz got, as readable snapshots (ids vary per run).
    insta::with_settings!({ filters => common::SNAPSHOT_FILTERS.to_vec() }, {
        insta::assert_snapshot!("final_status_comment", status.body);
        insta::assert_snapshot!(
            "prompt_of_an_issue_command",
            h.sim.create_requests()[0].prompt.clone().unwrap_or_default()
        );
    });
    assert!(
        status.revisions.iter().any(|r| r.contains("🏃 Working")),
        "the comment was edited through the run"
    );
    assert_eq!(
        h.status_comments(42).len(),
        1,
        "one status comment, edited in place"
    );
    // GitHub notifies nobody of an edit: the end is told in one new comment that
    // mentions the requester and links the status comment.
    let notice = h
        .wait_reply_contains(42, "@alice, the Oz agent finished: **✅ Done**")
        .await;
    assert!(
        notice.contains(&format!(
            "({}/acme/widgets/issues/42#issuecomment-{})",
            h.config.github.api_url.trim_end_matches('/'),
            status.id
        )),
        "{notice}"
    );
    assert_eq!(h.bot_comments(42).len(), 2, "the status and the one notice");
    let requests = h.sim.create_requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        request.title.as_deref(),
        Some("acme/widgets#42: Login test is flaky")
    );
    let config = request.config.as_ref().expect("config");
    assert_eq!(config.name.as_deref(), Some("ozbridge"));
    let prompt = request.prompt.as_deref().unwrap_or_default();
    assert!(
        prompt.contains("fix the flaky login test") && prompt.contains("It fails one run in five.")
    );
    assert!(prompt.contains("<untrusted"));
    // Every revision is a real change.
    let revisions = &status.revisions;
    assert!(
        revisions.windows(2).all(|w| w[0] != w[1]),
        "an edit without a visible change was sent"
    );
    // Cost and time are shown once the run ended, and by `/oz status`.
    assert!(
        revisions[..revisions.len() - 1]
            .iter()
            .all(|r| !r.contains("cost ")),
        "no edit for cost while the run works"
    );
    h.command(42, "alice", "/oz status").await;
    let answer = h.wait_reply_contains(42, "The latest Oz run here").await;
    assert!(
        answer.contains("Took less than a second · cost 0.21 (inference 0.14, compute 0.07)"),
        "{answer}"
    );
}

#[tokio::test]
async fn pull_request_command_carries_branches() {
    let h = Harness::start().await;
    h.github.add_pull(REPO, 7, "feature/login", "main");
    let description = "Moves login into its own module.";
    (h.github).add_issue(REPO, 7, "Refactor login", Some(description), &[]);
    let id = h
        .github
        .add_user_comment(REPO, 7, "alice", "/oz review this --model gpt-5");
    let payload = CommentEventSpec {
        title: "Refactor login",
        issue_body: description,
        is_pull_request: true,
        ..CommentEventSpec::created(REPO, 7, id, "alice", "/oz review this --model gpt-5")
    }
    .payload()
    .to_string();
    assert_eq!(h.deliver("issue_comment", &payload).await.status(), 202);
    h.wait_status_contains(7, "✅ Done").await;
    let request = &h.sim.create_requests()[0];
    let prompt = request.prompt.as_deref().unwrap_or_default();
    assert!(
        prompt.contains("pull request #7")
            && prompt.contains("`feature/login` into `main`")
            && prompt.contains(description),
        "{prompt}"
    );
    assert_eq!(
        request.config.as_ref().and_then(|c| c.model_id.as_deref()),
        Some("gpt-5")
    );
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_store_nothing() {
    let mut h = Harness::start().await;
    let (comment, payload) = h.comment(1, "alice", "/oz fix");
    let wrong = h
        .post(
            "issue_comment",
            &payload,
            Some(sign_github("not-the-secret", payload.as_bytes())),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(h.post("issue_comment", &payload, None).await.status(), 401);
    let tampered = h
        .post(
            "issue_comment",
            &payload.replace("fix", "rm -rf"),
            Some(sign_github(common::SECRET, payload.as_bytes())),
        )
        .await;
    assert_eq!(tampered.status(), 401);
    h.settle().await;
    assert_eq!(h.store().pending_command_count().await.unwrap(), 0);
    assert!(h.github.reactions(comment).is_empty());
    assert_eq!(h.sim.run_count(), 0);
}

#[tokio::test]
async fn a_second_secret_is_accepted_during_rotation() {
    let mut h = Harness::start().await;
    let (comment, payload) = h.comment(2, "alice", "/oz fix");
    let response = h
        .post(
            "issue_comment",
            &payload,
            Some(sign_github(OLD_SECRET, payload.as_bytes())),
        )
        .await;
    assert_eq!(response.status(), 202);
    h.wait_reaction(comment, "rocket").await;
}

#[tokio::test]
async fn redelivery_never_starts_a_second_run() {
    let mut h = Harness::start().await;
    let (comment, payload) = h.comment(3, "alice", "/oz fix");
    assert_eq!(h.deliver("issue_comment", &payload).await.status(), 202);
    let again = h.deliver("issue_comment", &payload).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.deliver("issue_comment", &payload).await.status(), 200);
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(h.status_comments(3).len(), 1);
}

#[tokio::test]
async fn an_edit_runs_only_a_new_command() {
    let h = Harness::start().await;
    let id = h.github.add_user_comment(REPO, 4, "alice", "please look");
    let spec = |body: &'static str, previous: Option<&'static str>, action: &'static str| {
        CommentEventSpec {
            action,
            title: "t",
            previous_body: previous,
            ..CommentEventSpec::created(REPO, 4, id, "alice", body)
        }
        .payload()
        .to_string()
    };
    // GitHub's no-change edit before a created event is ignored.
    assert_eq!(
        h.deliver("issue_comment", &spec("please look", None, "edited"))
            .await
            .status(),
        202
    );
    let added = spec("please look\n/oz fix it", Some("please look"), "edited");
    assert_eq!(h.deliver("issue_comment", &added).await.status(), 202);
    h.wait_reaction(id, "rocket").await;
    let same = spec(
        "please look!\n/oz fix it",
        Some("please look\n/oz fix it"),
        "edited",
    );
    let response = h.deliver("issue_comment", &same).await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["ignored"],
        "edit kept the same command"
    );
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn outsiders_get_one_polite_reply_and_no_run() {
    let mut h = Harness::start().await;
    let (comment, payload) = h.comment(5, "mallory", "/oz delete everything");
    let next = h.next_comment(5);
    assert!(
        h.deliver("issue_comment", &payload)
            .await
            .status()
            .is_success()
    );
    // The bot's first comment in the thread is the refusal.
    let reply = next.await.body;
    assert!(reply.contains("Only people with write access"), "{reply}");
    assert!(reply.contains("@mallory"));
    h.command(5, "stranger", "/oz fix").await;
    h.wait_reply_contains(5, "@stranger").await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert_eq!(h.replies(5).len(), 2);
    assert!(h.github.reactions(comment).contains(&"eyes".to_owned()));
}

#[tokio::test]
async fn bots_code_blocks_and_quotes_are_ignored() {
    let mut h = Harness::start().await;
    let id = h
        .github
        .add_user_comment(REPO, 6, "dependabot[bot]", "/oz merge");
    let bot = CommentEventSpec {
        title: "t",
        author_id: 49699333,
        author_type: "Bot",
        ..CommentEventSpec::created(REPO, 6, id, "dependabot[bot]", "/oz merge")
    }
    .payload()
    .to_string();
    let response = h.deliver("issue_comment", &bot).await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["ignored"],
        "comment by a bot"
    );
    let (_, fenced) = h.comment(6, "alice", "Try this:\n```\n/oz fix it\n```");
    let response = h.deliver("issue_comment", &fenced).await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["ignored"],
        "no command"
    );
    let (_, quoted) = h.comment(6, "alice", "> /oz fix it\nWhy did this run?");
    let response = h.deliver("issue_comment", &quoted).await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["ignored"],
        "no command"
    );
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert!(h.bot_comments(6).is_empty());
}

#[tokio::test]
async fn a_follow_up_continues_the_conversation_unless_new() {
    let mut h = Harness::start().await;
    let first = h.command(8, "alice", "/oz fix the test").await;
    h.wait_reaction(first, "rocket").await;
    let second = h.command(8, "alice", "/oz also update the changelog").await;
    h.wait_reaction(second, "rocket").await;
    let third = h.command(8, "alice", "/oz start over --new").await;
    h.wait_reaction(third, "rocket").await;
    let requests = h.sim.create_requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[0].conversation_id.is_none());
    let first_run = h.sim.run(&"run-000001".into());
    let _ = first_run; // ids carry a random suffix; compare through the conversation instead
    assert!(
        requests[1].conversation_id.is_some(),
        "the follow-up continues the thread's conversation"
    );
    assert!(
        requests[2].conversation_id.is_none(),
        "--new starts a fresh conversation"
    );
    assert_eq!(
        h.bot_comments(8)
            .iter()
            .filter(|c| c.body.contains("ozbridge:run:"))
            .count(),
        3
    );
}

#[tokio::test]
async fn an_active_run_queues_a_second_and_cancel_stops_it_after_a_409() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::SlowStart);
    let first = h.command(9, "alice", "/oz long job").await;
    h.wait_status_contains(9, "Oz run `").await;
    let queued = h.command(9, "alice", "/oz another job").await;
    h.wait_reply_contains(9, "queued: this starts when the current run ends")
        .await;
    // The run is PENDING: Oz answers 409 and the cancel is retried until it lands.
    let cancel = h.command(9, "alice", "/oz cancel").await;
    h.wait_status_contains(9, "🚫 Cancelled").await;
    h.wait_reaction(first, "-1").await;
    h.wait_reaction(cancel, "+1").await;
    assert!(
        h.sim.calls("POST /agent/runs/{id}/cancel") >= 2,
        "the 409 was retried"
    );
    // Then the queued job runs, as its own run.
    h.wait_reaction(queued, "rocket").await;
    assert_eq!(h.sim.run_count(), 2);
}

#[tokio::test]
async fn cancel_explains_a_422_and_an_empty_thread() {
    let mut h = Harness::start().await;
    h.command(10, "alice", "/oz cancel").await;
    h.wait_reply_contains(10, "no active Oz run").await;
    h.sim.push_scenario(Scenario::Unsupported);
    h.command(10, "alice", "/oz run on my own worker").await;
    h.wait_status_contains(10, "🏃 Working").await;
    h.command(10, "alice", "/oz cancel").await;
    h.wait_reply_contains(10, "cannot be cancelled through the API")
        .await;
}

#[tokio::test]
async fn failed_error_and_blocked_runs_are_rendered() {
    let mut h = Harness::start().await;
    h.sim.push_scenario(Scenario::Fail);
    let failed = h.command(11, "alice", "/oz fix the missing test").await;
    let status = h.wait_status_contains(11, "❌ Failed").await;
    h.wait_reaction(failed, "confused").await;
    assert!(
        status.body.contains("could not find the test") && status.body.contains("will not help"),
        "{}",
        status.body
    );

    h.sim.push_scenario(Scenario::Error);
    let errored = h.command(12, "alice", "/oz fix").await;
    let status = h.wait_status_contains(12, "⚠️ Errored").await;
    h.wait_reaction(errored, "confused").await;
    assert!(
        status.body.contains("environment_setup_failed")
            && status.body.contains("Retrying may help"),
        "{}",
        status.body
    );

    h.sim.push_scenario(Scenario::Blocked);
    h.command(13, "alice", "/oz publish").await;
    let status = h.wait_status_contains(13, "✋ Needs your input").await;
    assert!(
        status
            .body
            .contains("@alice, the Oz agent needs you: Approval needed"),
        "{}",
        status.body
    );
    h.wait_reply_contains(13, "@alice, the Oz agent needs you")
        .await;
}

#[tokio::test]
async fn retry_restarts_a_retryable_failure_and_says_why_not_otherwise() {
    let mut h = Harness::start().await;
    h.command(14, "alice", "/oz retry").await;
    h.wait_reply_contains(14, "nothing to retry").await;

    h.sim.push_scenario(Scenario::Fail);
    h.command(14, "alice", "/oz fix the missing test").await;
    h.wait_status_contains(14, "❌ Failed").await;
    h.command(14, "alice", "/oz retry").await;
    let refused = h
        .wait_reply_contains(
            14,
            "cannot be retried: its error is not one that retrying fixes",
        )
        .await;
    assert!(refused.contains("Oz said: "), "{refused}");
    assert_eq!(h.sim.run_count(), 1);

    h.sim.push_scenario(Scenario::Endless);
    h.command(16, "alice", "/oz keep going").await;
    h.wait_status_contains(16, "🏃 Working").await;
    h.command(16, "alice", "/oz retry").await;
    h.wait_reply_contains(16, "still going").await;
    assert_eq!(h.sim.run_count(), 2);

    h.sim.push_scenario(Scenario::Error);
    h.command(15, "alice", "/oz deploy the preview").await;
    h.wait_status_contains(15, "⚠️ Errored").await;
    let retry = h.command(15, "alice", "/oz retry").await;
    h.wait_for("the retried run to finish", || {
        h.bot_comments(15)
            .iter()
            .any(|c| c.body.contains("✅ Done"))
    })
    .await;
    h.wait_reaction(retry, "rocket").await;
    assert_eq!(h.sim.run_count(), 4);
    let requests = h.sim.create_requests();
    let (errored, retried) = (&requests[2], &requests[3]);
    assert_ne!(
        errored.prompt, retried.prompt,
        "the retry carries its own reference"
    );
    assert_eq!(errored.title, retried.title);
    h.wait_for("the failed run's note", || {
        h.bot_comments(15)
            .iter()
            .any(|c| c.body.contains("Retried by @alice"))
    })
    .await;
}

#[tokio::test]
async fn a_form_encoded_delivery_is_accepted_under_the_same_signature_rule() {
    let mut h = Harness::start().await;
    let (comment, payload) = h.comment(18, "alice", "/oz fix the form hook");
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload)
        .finish();
    let send = |signature: String| {
        h.http
            .post(h.url("/github/webhook"))
            .header("X-GitHub-Event", "issue_comment")
            .header("X-GitHub-Delivery", ozbridge::ids::new_uuid())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Hub-Signature-256", signature)
            .body(form.clone())
            .send()
    };
    // Signed over the JSON inside rather than the form as sent: refused.
    let wrong = send(ozbridge::intake::signature::sign_github(
        common::SECRET,
        payload.as_bytes(),
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = send(ozbridge::intake::signature::sign_github(
        common::SECRET,
        form.as_bytes(),
    ))
    .await
    .unwrap();
    assert_eq!(right.status(), 202);
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn a_repository_may_turn_the_finish_notice_off() {
    let settings = "[github.repos.\"acme/widgets\"]\nnotify_on_finish = false\n";
    let mut h = Harness::start_with(None, &[("CONFIG_TOML", settings)])
        .await
        .unwrap();
    let comment = h.command(17, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    h.settle().await;
    assert_eq!(h.bot_comments(17).len(), 1, "the status comment only");
}

#[tokio::test]
async fn artifacts_are_linked() {
    let mut h = Harness::start_with(
        None,
        &[("OZBRIDGE_PUBLIC_URL", "https://ozbridge.example.com")],
    )
    .await
    .unwrap();
    h.sim.push_scenario(Scenario::Artifacts);
    h.command(14, "alice", "/oz plan it").await;
    let status = h.wait_status_contains(14, "✅ Done").await;
    assert!(
        status
            .body
            .contains("Plan: [Fix plan](https://app.warp.dev/drive/notebook/"),
        "{}",
        status.body
    );
    assert!(
        status
            .body
            .contains("Screenshot: [screenshot](https://ozbridge.example.com/artifacts/shot-"),
        "{}",
        status.body
    );
    assert!(
        status
            .body
            .contains("File: [flaky.md](https://ozbridge.example.com/artifacts/file-"),
        "{}",
        status.body
    );
    // The artifact link redirects to a fresh download URL.
    let uid = status
        .body
        .split("/artifacts/")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(h.url(&format!("/artifacts/{uid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .contains("storage.oz-sim.invalid")
    );
}

#[tokio::test]
async fn informational_commands_and_bad_commands_are_answered() {
    let mut h = Harness::start().await;
    h.command(15, "alice", "/oz help").await;
    h.wait_reply_contains(15, "**Oz agent commands**").await;
    h.command(15, "alice", "/oz models").await;
    h.wait_reply_contains(15, "`claude-4-sonnet`").await;
    h.command(15, "alice", "/oz agents").await;
    h.wait_reply_contains(15, "acme/agents:.agents/skills/triage/SKILL.md")
        .await;
    h.command(15, "alice", "/oz status").await;
    h.wait_reply_contains(15, "No Oz agent has run").await;
    h.command(15, "alice", "/oz fix --modle gpt-5").await;
    h.wait_reply_contains(15, "Did you mean `--model`?").await;
    h.command(15, "alice", "/oz fix --model gpt5").await;
    h.wait_reply_contains(15, "`gpt5` is not a model I know. Did you mean `gpt-5`?")
        .await;
    h.command(
        15,
        "alice",
        "/oz fix --skill acme/agents:.agents/skills/triag/SKILL.md",
    )
    .await;
    h.wait_reply_contains(15, "is not a skill I know").await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0, "no bad command started a run");
}

#[tokio::test]
async fn ping_oversized_bodies_and_other_events() {
    let h = Harness::start().await;
    assert_eq!(
        h.deliver("ping", r#"{"zen":"Keep it logically awesome."}"#)
            .await
            .status(),
        200
    );
    assert_eq!(
        h.deliver("push", r#"{"ref":"refs/heads/main"}"#)
            .await
            .status(),
        202
    );
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 * 1024 + 10));
    assert_eq!(h.deliver("issue_comment", &huge).await.status(), 413);
    assert_eq!(h.deliver("issue_comment", "{not json").await.status(), 400);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mut h = Harness::start().await;
    assert_eq!(
        h.http
            .get(h.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(
        h.http.get(h.url("/readyz")).send().await.unwrap().status(),
        200
    );
    let comment = h.command(16, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    let metrics = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ozbridge_webhooks_total{source=\"github\",outcome=\"accepted\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ozbridge_outbound_requests_total{service=\"oz\""),
        "{metrics}"
    );
    assert!(metrics.contains("ozbridge_commands_total"), "{metrics}");
    // Histograms have buckets, so replicas' figures add up.
    let buckets = |name: &str, label: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket{{")) && l.contains(label))
            .count()
    };
    assert!(
        buckets(
            "ozbridge_http_request_duration_seconds",
            "route=\"/github/webhook\""
        ) > 5,
        "{metrics}"
    );
    assert!(
        buckets(
            "ozbridge_outbound_request_duration_seconds",
            "service=\"oz\""
        ) > 5,
        "{metrics}"
    );
    assert!(
        buckets("ozbridge_status_post_delay_seconds", "le=\"+Inf\"") == 1,
        "{metrics}"
    );
    assert!(
        buckets("ozbridge_run_cost", "place=\"github:acme/widgets\"") > 5,
        "the finished run's cost by repository: {metrics}"
    );
    assert!(
        buckets(
            "ozbridge_run_duration_seconds",
            "place=\"github:acme/widgets\""
        ) > 5,
        "{metrics}"
    );
    assert!(!metrics.contains(" summary\n"), "{metrics}");
    // Prometheus's naming: counters end in _total; the process's own figures are there.
    for line in metrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        {
            assert!(name.ends_with("_total"), "counter {name} lacks _total");
        }
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn oz_faults_are_retried_without_duplicates() {
    let mut h = Harness::start().await;
    h.sim.inject(Fault {
        method: Some(reqwest::Method::POST),
        path_prefix: "/api/v1/agent/runs".into(),
        kind: FaultKind::Status(500),
        times: 1,
    });
    h.sim.inject(Fault {
        method: Some(reqwest::Method::POST),
        path_prefix: "/api/v1/agent/runs".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 1,
        },
        times: 1,
    });
    h.sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: "/api/v1/agent/runs".into(),
        kind: FaultKind::Status(503),
        times: 2,
    });
    let comment = h.command(17, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(h.sim.faults_pending(), 0, "every injected fault was hit");
    assert_eq!(h.sim.run_count(), 1);
    assert_eq!(
        h.sim.calls("POST /agent/runs"),
        3,
        "500, 429, then the create that landed"
    );
}

#[tokio::test]
async fn a_lost_create_answer_is_found_again_not_created_twice() {
    let mut h = Harness::start().await;
    h.sim.inject(Fault {
        method: Some(reqwest::Method::POST),
        path_prefix: "/api/v1/agent/runs".into(),
        kind: FaultKind::CreateThenFail,
        times: 1,
    });
    let comment = h.command(18, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    assert_eq!(
        h.sim.run_count(),
        1,
        "the run created before the lost answer was adopted"
    );
    assert_eq!(h.sim.create_requests().len(), 1);
}

#[tokio::test]
async fn github_secondary_rate_limit_is_honoured() {
    let mut h = Harness::start().await;
    h.github.rate_limit_next_creates(1, 1);
    let comment = h.command(19, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(19, "✅ Done").await;
    assert_eq!(h.status_comments(19).len(), 1);
}

#[tokio::test]
async fn a_lost_comment_answer_is_found_by_its_marker() {
    let mut h = Harness::start().await;
    h.github.lose_next_create_answers(1);
    let comment = h.command(20, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(20, "✅ Done").await;
    assert_eq!(
        h.status_comments(20).len(),
        1,
        "the status comment was edited, not posted twice"
    );
}

#[tokio::test]
async fn github_app_auth_mints_and_caches_installation_tokens() {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pem"
    );
    let extra = [
        ("GITHUB_APP_ID", "4242"),
        ("GITHUB_APP_PRIVATE_KEY", key),
        ("GITHUB_TOKEN", ""),
    ];
    let mut h = Harness::start_with(None, &extra).await.unwrap();
    let public = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pub.pem"
    ))
    .unwrap();
    h.github.require_app(4242, &public).unwrap();
    let (comment, _) = h.comment(21, "alice", "/oz fix");
    let payload = CommentEventSpec {
        title: "t",
        installation: Some(77),
        ..CommentEventSpec::created(REPO, 21, comment, "alice", "/oz fix")
    }
    .payload()
    .to_string();
    assert_eq!(h.deliver("issue_comment", &payload).await.status(), 202);
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(21, "✅ Done").await;
    assert_eq!(
        h.github.tokens_minted(),
        1,
        "the installation token is cached"
    );
    assert!(
        h.github
            .requests()
            .iter()
            .any(|r| r == "POST /app/installations/77/access_tokens")
    );
}

#[tokio::test]
async fn check_config_online_checks_each_credential_and_redacts_secrets() {
    let h = Harness::start().await;
    // The child talks to the simulator served by this test's runtime: run it off-thread.
    let run = |mut command: std::process::Command| async move {
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    };
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
    command
        .args(["check-config", "--online"])
        .env_clear()
        .env("WARP_API_KEY", "test-oz-key")
        .env("OZ_API_URL", &h.config.oz.api_url)
        .env("GITHUB_API_URL", &h.config.github.api_url)
        .env("GITHUB_TOKEN", "test-github-token")
        .env("GITHUB_WEBHOOK_SECRET", common::SECRET)
        .env("SLACK_API_URL", &h.config.slack.api_url)
        .env("SLACK_BOT_TOKEN", common::SLACK_TOKEN)
        .env("SLACK_SIGNING_SECRET", common::SLACK_SECRET);
    let output = run(command).await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Database: ok (embedded SQLite)"), "{text}");
    assert!(text.contains("Oz API: ok (5 models available)"), "{text}");
    assert!(text.contains("GitHub: ok (token accepted"), "{text}");
    assert!(
        text.contains("Slack: ok (workspace Acme, bot user UOZBOT)"),
        "{text}"
    );
    for secret in [
        "test-oz-key",
        "test-github-token",
        common::SECRET,
        common::SLACK_TOKEN,
        common::SLACK_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
    command
        .args(["check-config", "--online"])
        .env_clear()
        .env("WARP_API_KEY", "wrong-key")
        .env("OZ_API_URL", &h.config.oz.api_url);
    let failing = run(command).await;
    let text = String::from_utf8_lossy(&failing.stdout);
    assert!(!failing.status.success());
    assert!(
        text.contains("Oz API: FAILED") && text.contains("not ready to serve"),
        "{text}"
    );
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
    command
        .args(["check-config"])
        .env_clear()
        .env("OZBRIDGE_LISTEN", "nowhere");
    let bad = run(command).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("OZBRIDGE_LISTEN"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
    command.args(["check-config"]).env_clear().env(
        "DATABASE_URL",
        "postgres://app:pg-password@db.example.com/ozbridge?sslmode=required",
    );
    let bad = run(command).await;
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        text.contains("DATABASE_URL") && text.contains("sslmode `required` is not one of"),
        "{text}"
    );
    assert!(!text.contains("pg-password"), "{text}");
}

#[tokio::test]
async fn slack_manifest_points_at_the_three_endpoints() {
    let output = tokio::task::spawn_blocking(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"))
            .args(["slack-manifest", "--url", "https://oz.example.com/"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        manifest.pointer("/features/slash_commands/0/url").unwrap(),
        "https://oz.example.com/slack/commands"
    );
    assert_eq!(
        manifest
            .pointer("/settings/event_subscriptions/request_url")
            .unwrap(),
        "https://oz.example.com/slack/events"
    );
    assert_eq!(
        manifest
            .pointer("/settings/interactivity/request_url")
            .unwrap(),
        "https://oz.example.com/slack/interactions"
    );
    let scopes = manifest
        .pointer("/oauth_config/scopes/bot")
        .unwrap()
        .to_string();
    for scope in [
        "commands",
        "chat:write",
        "app_mentions:read",
        "reactions:write",
        "channels:history",
    ] {
        assert!(scopes.contains(scope), "{scope} missing from {scopes}");
    }
}

#[tokio::test]
async fn github_server_errors_are_retried() {
    let mut h = Harness::start().await;
    h.github.fail_next(3);
    let comment = h.command(22, "alice", "/oz fix").await;
    h.wait_reaction(comment, "rocket").await;
    h.wait_status_contains(22, "✅ Done").await;
    assert_eq!(h.status_comments(22).len(), 1);
    assert_eq!(h.sim.run_count(), 1);
}

#[tokio::test]
async fn the_tracker_honours_retry_after_on_the_list_call() {
    let mut h = Harness::start().await;
    // A run that goes on, so that the tracker keeps listing.
    h.command(23, "alice", "/oz fix [sim:endless]").await;
    h.wait_status_contains(23, "Oz run `").await;
    // A long Retry-After on the list call: the tracker pauses instead of polling every tick.
    h.sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: "/agent/runs".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 2,
        },
        times: 1,
    });
    // The refused call is among the next two (one may have been under way already);
    // the call after it must wait out the 2 s.
    let before = usize::try_from(h.sim.calls("GET /agent/runs")).unwrap();
    h.wait_for("the refused list call and one after it", || {
        h.sim.calls("GET /agent/runs") >= u64::try_from(before + 3).unwrap()
    })
    .await;
    let times = h.sim.call_times("GET /agent/runs");
    let longest = times[before..]
        .windows(2)
        .map(|pair| std::time::Duration::from_millis((pair[1] - pair[0]).unsigned_abs()))
        .max()
        .unwrap();
    assert!(
        longest >= std::time::Duration::from_secs(2),
        "the longest pause between list calls was {longest:?}, though Oz asked for 2 s (tick is 0.1 s)"
    );
}

/// Finished work is deleted once it is older than the retention time (30 days by
/// default); a run still going on keeps everything it needs, and its thread still works.
#[tokio::test]
async fn finished_work_is_forgotten_after_its_retention_and_the_rest_is_kept() {
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = common::database_url(&dir, postgres).await else {
            continue;
        };
        let mut h = Harness::start_with(Some(url), &[]).await.unwrap();
        forget_finished_work(&mut h).await;
    }
}

async fn forget_finished_work(h: &mut Harness) {
    let done = h.command(60, "alice", "/oz fix it").await;
    h.wait_reaction(done, "rocket").await;
    h.command(61, "alice", "/oz keep going [sim:endless]").await;
    h.wait_status_contains(61, "🏃 Working").await;
    h.wait_status_contains(60, "✅ Done").await;
    h.run_until_idle().await;
    let (finished, going) = (h.sim_run_id(0), h.sim_run_id(1));
    let store = h.store().clone();
    assert_eq!(
        store
            .runs_by_oz_ids(std::slice::from_ref(&finished))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.pipeline().forget_finished().await,
        0,
        "nothing is old yet"
    );

    h.clock.advance(std::time::Duration::from_secs(31 * 86_400));
    assert!(h.pipeline().forget_finished().await > 0);
    assert!(store.runs_by_oz_ids(&[finished]).await.unwrap().is_empty());
    assert_eq!(store.runs_by_oz_ids(&[going]).await.unwrap().len(), 1);
    assert_eq!(store.command_count().await.unwrap(), 0, "both were handled");
    assert_eq!(
        h.pipeline().forget_finished().await,
        0,
        "all of it went at once"
    );
    // The going run is still followed and cancelled from its thread.
    h.command(61, "alice", "/oz cancel").await;
    h.wait_status_contains(61, "Cancelled").await;
}

/// A run the list no longer mentions (it has not changed for a long time) is fetched on
/// its own at most once per ten minutes, however long it runs and however often the
/// tracker ticks; each tick is one list call.
#[tokio::test]
async fn a_quiet_run_is_fetched_on_its_own_at_most_once_per_ten_minutes() {
    let mut h = Harness::start().await;
    h.command(24, "alice", "/oz keep going [sim:endless]").await;
    h.wait_status_contains(24, "🏃 Working").await;
    let (fetches, lists) = ("GET /agent/runs/{id}", "GET /agent/runs");
    let (fetched_before, listed_before) = (h.sim.calls(fetches), h.sim.calls(lists));
    // An hour of the held clock, with a tick every five seconds.
    let ticks = 720;
    for _ in 0..ticks {
        h.clock.advance(std::time::Duration::from_secs(5));
        h.run_until_idle().await;
    }
    let fetched = h.sim.calls(fetches) - fetched_before;
    assert!(
        (5..=7).contains(&fetched),
        "{fetched} fetches of the one quiet run in an hour"
    );
    assert_eq!(
        h.sim.calls(lists) - listed_before,
        ticks,
        "one list call per tick"
    );
    assert!(h.status_comment(24).unwrap().body.contains("🏃 Working"));
    let states = h.store().active_states().await.unwrap();
    assert_eq!(
        states.into_iter().collect::<Vec<_>>(),
        vec![("INPROGRESS".to_owned(), 1)]
    );
}

/// A comment without a command is answered from what the request holds: nothing is
/// written, and nobody is called.
#[tokio::test]
async fn a_comment_without_a_command_writes_nothing() {
    let mut h = Harness::start().await;
    let (_, payload) = h.comment(25, "alice", "Thanks, the fix works. Maybe /oz later?");
    let response = h.deliver("issue_comment", &payload).await;
    assert_eq!(response.status(), 202);
    let store = h.store();
    assert_eq!(store.command_count().await.unwrap(), 0);
    assert_eq!(store.pending_work().await.unwrap(), 0);
    h.settle().await;
    assert_eq!(h.sim.total_calls(), 0);
    assert!(h.bot_comments(25).is_empty());
}
