//! GitHub depth (issue 11) through the real router against the fake GitHub: answers in
//! review threads, the review-body, opening-body and label triggers, the thread as the
//! prompt's context, approval of outsiders' requests, and `.github/ozbridge.toml`.

mod common;

use common::{Harness, REPO};
use ozbridge::clock::Clock;
use ozbridge::testkit::github::ReviewThreadPlace;
use serde_json::{Value, json};
use std::time::Duration;

/// A harness that reads repository files on every command (no cache), with `toml` as
/// the server's configuration file.
async fn harness(toml: &str) -> Harness {
    Harness::start_with(
        None,
        &[("CONFIG_TOML", toml), ("GITHUB_REPO_FILE_CACHE_SECS", "0")],
    )
    .await
    .expect("sqlite harness")
}

fn user(login: &str) -> Value {
    let id = if login == "alice" { 1001 } else { 2002 };
    json!({ "login": login, "id": id, "type": "User" })
}

fn pull_request(number: u64) -> Value {
    json!({
        "number": number, "title": "Refactor the login flow", "body": "Splits the handler.",
        "html_url": format!("https://github.com/{REPO}/pull/{number}"),
        "head": { "ref": "refactor-login" }, "base": { "ref": "main" },
        "labels": [{ "name": "refactor" }],
        "user": user("alice"),
    })
}

/// What GitHub holds of [`pull_request`]'s pull request.
fn add_pull_description(h: &Harness, number: u64) {
    let description = Some("Splits the handler.");
    (h.github).add_issue(
        REPO,
        number,
        "Refactor the login flow",
        description,
        &["refactor"],
    );
}

fn repository() -> Value {
    json!({ "full_name": REPO, "owner": { "login": "acme" } })
}

/// A `pull_request_review_comment` delivery for a comment already on the fake.
fn review_comment_payload(
    number: u64,
    id: u64,
    author: &str,
    body: &str,
    root: Option<u64>,
) -> String {
    json!({
        "action": "created",
        "comment": {
            "id": id, "body": body, "user": user(author), "in_reply_to_id": root,
            "path": "src/login.rs", "line": 42, "original_line": 40,
            "diff_hunk": "@@ -38,6 +38,8 @@ fn login() {\n-    retry(3)\n+    retry(5)",
        },
        "pull_request": pull_request(number),
        "repository": repository(),
        "sender": user(author),
    })
    .to_string()
}

fn last_prompt(h: &Harness) -> String {
    h.sim
        .create_requests()
        .last()
        .and_then(|r| r.prompt.clone())
        .expect("a run was created")
}

#[tokio::test]
async fn a_review_comment_is_answered_in_its_review_thread() {
    let h = harness("").await;
    h.github.add_pull(REPO, 30, "refactor-login", "main");
    add_pull_description(&h, 30);
    h.github
        .set_pull_files(REPO, 30, &["src/login.rs", "src/retry.rs"]);
    let root = h
        .github
        .add_review_comment(REPO, 30, "alice", "Why five retries?", None);
    let earlier =
        h.github
            .add_review_comment(REPO, 30, "mallory", "It used to be three.", Some(root));
    let command = h.github.add_review_comment(
        REPO,
        30,
        "alice",
        "/oz make the retry count a setting",
        Some(root),
    );
    let payload = review_comment_payload(
        30,
        command,
        "alice",
        "/oz make the retry count a setting",
        Some(root),
    );
    assert_eq!(
        h.deliver("pull_request_review_comment", &payload)
            .await
            .status(),
        202
    );
    let status = h.wait_status_contains(30, "✅ Done").await;
    // The status comment is a reply in the review thread, edited there.
    assert_eq!(
        status.review,
        Some(ReviewThreadPlace {
            in_reply_to: Some(root)
        }),
        "{status:?}"
    );
    assert!(status.revisions.len() > 1, "edited in place: {status:?}");
    assert!(
        h.github
            .requests()
            .iter()
            .any(|r| r == &format!("POST /repos/{REPO}/pulls/30/comments/{root}/replies")),
        "replied through GitHub's replies endpoint"
    );
    assert!(
        h.github
            .requests()
            .iter()
            .any(|r| r.starts_with(&format!("PATCH /repos/{REPO}/pulls/comments/"))),
        "edited as a review comment"
    );
    // The reaction is on the review comment; nothing went to the conversation.
    h.wait_reaction(command, "eyes").await;
    assert!(
        h.github
            .comments(REPO, 30)
            .iter()
            .all(|c| c.review.is_some())
    );
    // The finish notice is in the thread too, and links the status comment there.
    let notice = h
        .github
        .comments(REPO, 30)
        .into_iter()
        .find(|c| c.body.contains("the Oz agent finished"))
        .expect("a finish notice");
    assert_eq!(notice.review, status.review);
    assert!(
        notice
            .body
            .contains(&format!("pull/30#discussion_r{}", status.id)),
        "{}",
        notice.body
    );
    // The prompt carries the diff spot, the thread's earlier replies, labels and files.
    let prompt = last_prompt(&h);
    assert!(
        prompt.contains("review comment on `src/login.rs`, line 42"),
        "{prompt}"
    );
    assert!(prompt.contains("+    retry(5)"), "{prompt}");
    assert!(
        prompt.contains("@mallory (no write access):\nIt used to be three."),
        "{prompt}"
    );
    assert!(
        prompt.contains("@alice (has write access):\nWhy five retries?"),
        "{prompt}"
    );
    assert!(prompt.contains("Labels: refactor"), "{prompt}");
    assert!(
        prompt.contains("- src/login.rs\n- src/retry.rs"),
        "{prompt}"
    );
    let _ = earlier;

    // A second command while a run works: the busy answer stays in the thread.
    h.sim
        .push_scenario(ozbridge::testkit::oz::Scenario::Endless);
    let again = h
        .github
        .add_review_comment(REPO, 30, "alice", "/oz also log it", Some(root));
    let payload = review_comment_payload(30, again, "alice", "/oz also log it", Some(root));
    h.deliver("pull_request_review_comment", &payload).await;
    h.wait_for("a second status in the thread", || {
        h.status_comments(30).len() == 2
    })
    .await;
    let busy = h
        .github
        .add_review_comment(REPO, 30, "alice", "/oz one more", Some(root));
    let payload = review_comment_payload(30, busy, "alice", "/oz one more", Some(root));
    h.deliver("pull_request_review_comment", &payload).await;
    let reply = h.wait_reply_contains(30, "queued").await;
    let reply = h
        .github
        .comments(REPO, 30)
        .into_iter()
        .find(|c| c.body == reply)
        .expect("the reply");
    assert_eq!(
        reply.review, status.review,
        "the queue note is in the review thread"
    );
}

#[tokio::test]
async fn the_conversation_is_read_across_pages_and_a_failed_read_degrades() {
    let h = harness("").await;
    for i in 0..130 {
        let author = if i % 2 == 0 { "alice" } else { "mallory" };
        h.github
            .add_user_comment(REPO, 31, author, &format!("note {i}"));
    }
    h.github.add_user_comment(
        REPO,
        31,
        "ozbridge[bot]",
        "<!-- ozbridge:reply:x -->\nan earlier answer",
    );
    let mut h = h;
    h.command(31, "alice", "/oz sum up the discussion").await;
    h.wait_status_contains(31, "✅ Done").await;
    let prompt = last_prompt(&h);
    // The last 20 earlier comments, oldest first, found on the last page of two.
    assert!(prompt.contains("note 110"), "{prompt}");
    assert!(prompt.contains("note 129"), "{prompt}");
    assert!(!prompt.contains("note 109\n"), "{prompt}");
    assert!(
        !prompt.contains("an earlier answer"),
        "the bridge's own comments are left out"
    );
    assert!(prompt.find("note 110") < prompt.find("note 129"));
    assert!(
        h.github
            .requests()
            .iter()
            .any(|r| r == &format!("GET /repos/{REPO}/issues/31/comments")),
    );

    // GitHub refuses the listing: the run starts with the title and body alone.
    h.github.refuse_reads_containing("/issues/32/comments", 502);
    h.command(32, "alice", "/oz fix it anyway").await;
    h.wait_status_contains(32, "✅ Done").await;
    let prompt = last_prompt(&h);
    assert!(
        prompt.contains("(no labels, changed files or earlier comments)"),
        "{prompt}"
    );
}

/// The description is read from GitHub when the run is recorded, not kept from the
/// webhook: the run sees the issue as it reads then, and while GitHub cannot give it
/// the command waits instead of starting without it.
#[tokio::test]
async fn the_description_is_read_when_the_run_is_recorded_and_waited_for() {
    let mut h = harness("").await;
    h.github.refuse_reads_containing("/issues/33", 502);
    h.command(33, "alice", "/oz fix it").await;
    let read = format!("GET /repos/{REPO}/issues/33");
    h.wait_for("the issue to be read", || {
        h.github.requests().iter().any(|r| r == &read)
    })
    .await;
    assert_eq!(h.sim.run_count(), 0, "no run without the description");
    let edited = "Edited: it fails one run in three.";
    (h.github).add_issue(REPO, 33, "Login test is flaky", Some(edited), &["bug"]);
    h.github.answer_reads_again();
    h.wait_status_contains(33, "✅ Done").await;
    let prompt = last_prompt(&h);
    assert!(
        prompt.contains(edited) && prompt.contains("Labels: bug"),
        "{prompt}"
    );
    assert!(!prompt.contains("one run in five"), "{prompt}");
    assert_eq!(h.sim.run_count(), 1);
}

fn review_payload(number: u64, review_id: u64, author: &str, body: &str) -> String {
    json!({
        "action": "submitted",
        "review": { "id": review_id, "body": body, "state": "commented", "user": user(author) },
        "pull_request": pull_request(number),
        "repository": repository(),
        "sender": user(author),
    })
    .to_string()
}

fn issue_payload(
    action: &str,
    number: u64,
    body: &str,
    label: Option<&str>,
    sender: &str,
) -> String {
    let mut value = json!({
        "action": action,
        "issue": {
            "number": number, "title": "Dark mode", "body": body,
            "html_url": format!("https://github.com/{REPO}/issues/{number}"),
            "labels": [{ "name": "enhancement" }], "user": user("alice"),
            "updated_at": "2026-12-06T10:00:00Z",
        },
        "repository": repository(),
        "sender": user(sender),
    });
    if let Some(label) = label {
        value["label"] = json!({ "name": label });
    }
    value.to_string()
}

#[tokio::test]
async fn review_bodies_opening_bodies_and_labels_start_runs_where_they_are_on() {
    let h =
        harness("[github.repos.\"acme/widgets\".triggers]\nopening_body = true\nlabel = \"oz\"\n")
            .await;
    // A submitted review's body: on by default; answered in the conversation.
    h.github.add_pull(REPO, 40, "refactor-login", "main");
    add_pull_description(&h, 40);
    let review = review_payload(
        40,
        7001,
        "alice",
        "Looks close.\n/oz rename `retry` to `attempts`",
    );
    assert_eq!(
        h.deliver("pull_request_review", &review).await.status(),
        202
    );
    let status = h.wait_status_contains(40, "✅ Done").await;
    assert_eq!(status.review, None);
    assert!(status.body.contains("rename"), "{}", status.body);
    // Redelivered: the same command, not a second run.
    assert_eq!(
        h.deliver("pull_request_review", &review).await.status(),
        200
    );

    // An issue opened with a command in its body; the reaction goes on the issue.
    let opening = "Please add it.\n\n/oz add a dark mode toggle";
    let opened = issue_payload("opened", 41, opening, None, "alice");
    (h.github).add_issue(REPO, 41, "Dark mode", Some(opening), &["enhancement"]);
    assert_eq!(h.deliver("issues", &opened).await.status(), 202);
    h.wait_status_contains(41, "✅ Done").await;
    assert!(
        h.github
            .issue_reactions(REPO, 41)
            .contains(&"eyes".to_owned())
    );

    // The configured label: a run whose request is the issue itself.
    let labeled = issue_payload("labeled", 42, "Toggle between themes.", Some("oz"), "alice");
    let labels = ["enhancement", "oz"];
    (h.github).add_issue(
        REPO,
        42,
        "Dark mode",
        Some("Toggle between themes."),
        &labels,
    );
    assert_eq!(h.deliver("issues", &labeled).await.status(), 202);
    let status = h.wait_status_contains(42, "✅ Done").await;
    assert!(status.body.contains("label `oz` added"), "{}", status.body);
    let prompt = last_prompt(&h);
    assert!(prompt.contains("The label `oz` was added"), "{prompt}");
    assert!(prompt.contains("Toggle between themes."), "{prompt}");
    // Another label starts nothing (the repository's file could name it, so it is
    // judged once the file is read).
    let other = issue_payload("labeled", 43, "x", Some("bug"), "alice");
    assert_eq!(h.deliver("issues", &other).await.status(), 202);
    h.settle().await;
    assert_eq!(h.sim.run_count(), 3);
    assert!(h.bot_comments(43).is_empty());
    assert!(h.github.issue_reactions(REPO, 43).is_empty());
}

#[tokio::test]
async fn labels_no_one_can_name_are_not_even_stored() {
    let h = harness("[github]\nrepo_overrides = []\n[github.defaults.triggers]\nlabel = \"oz\"\n")
        .await;
    let other = issue_payload("labeled", 46, "x", Some("bug"), "alice");
    let answer = h.deliver("issues", &other).await;
    assert_eq!(answer.status(), 202);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("label starts nothing")
    );
    let oz = issue_payload("labeled", 46, "x", Some("OZ"), "alice");
    assert!(
        h.deliver("issues", &oz)
            .await
            .text()
            .await
            .unwrap()
            .contains("accepted")
    );
    h.wait_status_contains(46, "✅ Done").await;
}

#[tokio::test]
async fn triggers_that_are_off_start_nothing() {
    let h = harness("").await;
    h.github.set_file(
        REPO,
        ".github/ozbridge.toml",
        Some("[triggers]\nreview_body = false\n"),
    );
    h.github.add_pull(REPO, 44, "x", "main");
    let review = review_payload(44, 7002, "alice", "/oz do it");
    h.deliver("pull_request_review", &review).await;
    // Off by default: an opening body.
    let opened = issue_payload("opened", 45, "/oz add a toggle", None, "alice");
    h.deliver("issues", &opened).await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    assert!(h.bot_comments(44).is_empty() && h.bot_comments(45).is_empty());
}

#[tokio::test]
async fn an_outsiders_request_waits_for_approval_across_a_restart() {
    let mut h = harness("").await;
    h.command(50, "mallory", "/oz fix the typo in the README")
        .await;
    let waiting = h
        .wait_reply_contains(
            50,
            "Waiting for someone with write access to reply `/oz approve`",
        )
        .await;
    assert!(waiting.contains("@mallory"), "{waiting}");
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    // A second request from the same outsider replaces the first.
    h.command(
        50,
        "mallory",
        "/oz fix the typo in the README and the license",
    )
    .await;
    h.wait_for("two waiting notes", || {
        h.replies(50)
            .iter()
            .filter(|r| r.contains("Waiting for"))
            .count()
            == 2
    })
    .await;
    // The outsider cannot approve their own request.
    h.command(50, "mallory", "/oz approve").await;
    h.wait_reply_contains(50, "Only people with write access can use this command")
        .await;
    h.crash_and_restart().await;
    h.command(50, "alice", "/oz approve").await;
    h.wait_reply_contains(50, "@alice approved the request of @mallory")
        .await;
    let status = h.wait_status_contains(50, "✅ Done").await;
    assert!(status.body.contains("@mallory asked"), "{}", status.body);
    assert!(
        status.body.contains("(approved by @alice)"),
        "{}",
        status.body
    );
    assert!(
        status.body.contains("and the license"),
        "the newer request ran: {}",
        status.body
    );
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1, "only the newer request ran");
    // The outsider's text stays fenced as untrusted in the prompt.
    let prompt = last_prompt(&h);
    assert!(
        prompt
            .contains("<untrusted source=\"request\">\nfix the typo in the README and the license"),
        "{prompt}"
    );
}

#[tokio::test]
async fn denied_or_expired_requests_end_with_a_note() {
    let mut h = harness("").await;
    h.command(51, "mallory", "/oz rewrite everything").await;
    h.wait_reply_contains(51, "Waiting for").await;
    h.command(51, "alice", "/oz deny").await;
    h.wait_reply_contains(51, "@mallory, @alice turned this request down")
        .await;
    h.command(51, "alice", "/oz approve").await;
    h.wait_reply_contains(51, "there is no request waiting for approval")
        .await;

    h.command(52, "mallory", "/oz add tests").await;
    h.wait_reply_contains(52, "Waiting for").await;
    h.settle().await;
    h.clock.advance(Duration::from_secs(7 * 86_400 + 60));
    h.wait_reply_contains(
        52,
        "nobody with write access approved your request within 7 days",
    )
    .await;
    h.command(52, "alice", "/oz approve").await;
    h.wait_reply_contains(52, "there is no request waiting for approval")
        .await;
    h.settle().await;
    assert_eq!(h.sim.run_count(), 0);
    let _: &Clock = &h.clock;
}

#[tokio::test]
async fn outsiders_are_refused_where_the_repository_says_so() {
    let mut h = harness("[github.defaults]\noutsiders = \"refuse\"\n").await;
    h.command(53, "mallory", "/oz fix it").await;
    let reply = h
        .wait_reply_contains(53, "a maintainer can run the command for you")
        .await;
    assert!(!reply.contains("approve"), "{reply}");
    h.settle().await;
    assert!(
        h.store()
            .awaiting_in_thread(&ozbridge::ids::ThreadKey(format!("github:{REPO}#53")))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_repository_file_sets_defaults_and_a_broken_one_stops_everything() {
    let mut h = harness("[github]\nrepo_overrides = [\"model_id\", \"triggers\"]\n").await;
    h.github.set_file(
        REPO,
        ".github/ozbridge.toml",
        Some("model_id = \"claude-4-sonnet\"\nallow_users = [\"mallory\"]\n"),
    );
    h.command(60, "alice", "/oz fix it").await;
    h.wait_status_contains(60, "✅ Done").await;
    let request = h.sim.create_requests().last().cloned().expect("a run");
    assert_eq!(
        request.config.as_ref().and_then(|c| c.model_id.as_deref()),
        Some("claude-4-sonnet")
    );
    // A key the server does not let the repository set is ignored, and said so.
    h.command(60, "alice", "/oz status").await;
    let status = h.wait_reply_contains(60, "`allow_users`").await;
    assert!(status.contains("ignored"), "{status}");
    h.command(61, "mallory", "/oz fix it").await;
    h.wait_reply_contains(61, "Waiting for").await;

    // Broken: one reply naming the file, the line and the problem; nothing starts.
    h.github.set_file(
        REPO,
        ".github/ozbridge.toml",
        Some("model_id = \"claude-4-sonnet\"\n[triggers]\nlabel = 7\n"),
    );
    h.command(62, "alice", "/oz fix it").await;
    let refusal = h.wait_reply_contains(62, "settings file is fixed").await;
    assert!(
        refusal.contains("`.github/ozbridge.toml` line 3"),
        "{refusal}"
    );
    h.settle().await;
    assert_eq!(h.sim.run_count(), 1);
    // Fixed: the next command runs. An unchanged file is asked for conditionally.
    h.github.set_file(
        REPO,
        ".github/ozbridge.toml",
        Some("model_id = \"gpt-5\"\n"),
    );
    h.command(62, "alice", "/oz fix it").await;
    h.wait_status_contains(62, "✅ Done").await;
    let request = h.sim.create_requests().last().cloned().expect("a run");
    assert_eq!(
        request.config.as_ref().and_then(|c| c.model_id.as_deref()),
        Some("gpt-5")
    );
    assert!(
        h.github.not_modified_answers() > 0,
        "an unchanged file came back as 304"
    );
}

#[tokio::test]
async fn check_config_shows_a_repositorys_merged_settings() {
    let h = harness("").await;
    h.github.set_file(
        REPO,
        ".github/ozbridge.toml",
        Some("environment_id = \"env-web\"\n[triggers]\nlabel = \"oz\"\n"),
    );
    let run = |args: Vec<&'static str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ozbridge"));
        command
            .args(args)
            .env_clear()
            .env("GITHUB_API_URL", &h.config.github.api_url)
            .env("GITHUB_TOKEN", "test-github-token");
        async move {
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        }
    };
    let (_, text) = run(vec!["check-config", "--online", "--repo", "acme/widgets"]).await;
    assert!(
        text.contains("Repository acme/widgets: ok (.github/ozbridge.toml (blob "),
        "{text}"
    );
    assert!(text.contains("environment_id: env-web"), "{text}");
    assert!(text.contains("triggers.label: oz"), "{text}");
    assert!(text.contains("outsiders: approval"), "{text}");
    h.github
        .set_file(REPO, ".github/ozbridge.toml", Some("harness = \"codex\"\n"));
    let (ok, text) = run(vec!["check-config", "--online", "--repo", "acme/widgets"]).await;
    assert!(!ok);
    assert!(
        text.contains("Repository acme/widgets: FAILED: `.github/ozbridge.toml` line 1"),
        "{text}"
    );
}
