//! `ozbridge demo`: the whole flow on loopback with no credentials and no network: the
//! Oz simulator, a fake GitHub, a fake Slack, a temporary SQLite database, and real
//! signed requests: a GitHub `/oz` comment (and a second one, queued behind it), a
//! command in a pull request's review thread, an outsider's request approved by a
//! maintainer, a Slack `/oz` slash command and a follow-up `@oz` mention in the thread it
//! made.

use crate::config::Config;
use crate::intake::signature::sign_github;
use crate::testkit::github::{FakeGithub, GithubEvent};
use crate::testkit::oz::OzSim;
use crate::testkit::payloads::github::CommentEventSpec;
use crate::testkit::payloads::slack::{mention_event, slash_command_body};
use crate::testkit::slack::{FakeSlack, SlackEvent};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SECRET: &str = "demo-webhook-secret";
const SLACK_SECRET: &str = "demo-slack-secret";
const SLACK_TOKEN: &str = "xoxb-demo";
const REPO: &str = "acme/widgets";
const CHANNEL: &str = "CENG";

/// Runs the demo; success when every run reached its final state and the threads show it.
pub async fn run() -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let sim = OzSim::new(Duration::from_millis(700));
    let oz_url = sim.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
    let github = FakeGithub::new();
    let github_url = github
        .serve(TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let slack = FakeSlack::new(SLACK_TOKEN);
    let (slack_api, hooks) = slack.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
    let vars: HashMap<&str, String> = HashMap::from([
        ("WARP_API_KEY", "demo-key".to_owned()),
        ("OZ_API_URL", oz_url),
        ("GITHUB_API_URL", github_url),
        ("GITHUB_TOKEN", "demo-token".to_owned()),
        ("GITHUB_WEBHOOK_SECRET", SECRET.to_owned()),
        ("SLACK_API_URL", slack_api),
        ("SLACK_RESPONSE_URL_PREFIX", hooks.clone()),
        ("SLACK_BOT_TOKEN", SLACK_TOKEN.to_owned()),
        ("SLACK_SIGNING_SECRET", SLACK_SECRET.to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/demo.db", dir.path().display()),
        ),
        ("OZ_TICK_INTERVAL_SECS", "0.3".to_owned()),
        // Simulated runs last seconds: their checklists are read as often as allowed.
        ("OZ_CONVERSATION_REFRESH_SECS", "1".to_owned()),
    ]);
    let config = Config::load_with(None, &|key| vars.get(key).cloned())?;
    let pipeline =
        crate::app::build_pipeline(&config, |s| s.poll = Duration::from_millis(200)).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let app = crate::app::start(&config, pipeline, listener, crate::app::Drive::Workers).await?;
    let base = format!("http://{}", app.addr);
    println!(
        "ozbridge demo: bridge on {base}; Oz simulator, fake GitHub and fake Slack on loopback\n"
    );

    let github_done = github_flow(&github, &base).await?;
    let review_done = review_thread_flow(&github, &base).await?;
    let approval_done = approval_flow(&github, &base).await?;
    let slack_done = slack_flow(&slack, &base, &hooks).await?;
    app.shutdown().await;
    if github_done && review_done && approval_done && slack_done {
        println!("\nDemo complete: every run was followed from request to final state.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nDemo did not complete in time.");
        Ok(ExitCode::FAILURE)
    }
}

async fn github_flow(github: &FakeGithub, base: &str) -> anyhow::Result<bool> {
    println!("━━ GitHub ━━");
    github.set_permission(REPO, "alice", "write");
    let description = "`login_test` fails about one run in five on CI.";
    github.add_issue(REPO, 42, "Login test is flaky", Some(description), &[]);
    let mut events = github.subscribe();
    let started = Instant::now();
    let comment = |text: &'static str| async move {
        let comment_id = github.add_user_comment(REPO, 42, "alice", text);
        println!(
            "[{:>5} ms] @alice commented on {REPO}#42 \"Login test is flaky\":\n    {text}",
            started.elapsed().as_millis()
        );
        let body = CommentEventSpec {
            issue_body: description,
            ..CommentEventSpec::created(REPO, 42, comment_id, "alice", text)
        }
        .payload()
        .to_string();
        deliver(base, "issue_comment", body, started).await?;
        anyhow::Ok(comment_id)
    };
    let first = comment("/oz fix the flaky login test").await?;
    // A second request while the first run works: queued, then run as its follow-up.
    let second = comment("/oz then add a regression test for it").await?;
    let mut ended = 0;
    let finished = follow_github(github, &mut events, started, |comment_id, content| {
        if matches!(content, "rocket" | "confused" | "-1")
            && (comment_id == first || comment_id == second)
        {
            ended += 1;
        }
        ended == 2
    })
    .await;
    let comments = github.bot_comments(REPO, 42);
    println!(
        "Thread {REPO}#42: {} comment(s) by ozbridge, {} revision(s) of the status comment.\n",
        comments.len(),
        comments.first().map(|c| c.revisions.len()).unwrap_or(0)
    );
    Ok(finished)
}

/// Sends a signed GitHub delivery and prints its answer.
async fn deliver(base: &str, event: &str, body: String, started: Instant) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{base}/github/webhook"))
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", crate::ids::new_uuid())
        .header("X-Hub-Signature-256", sign_github(SECRET, body.as_bytes()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    println!(
        "[{:>5} ms] webhook answered {}",
        started.elapsed().as_millis(),
        response.status()
    );
    Ok(())
}

/// Prints what ozbridge does on GitHub until `done` says of a reaction (the comment it
/// is on, its content) that the flow ended.
async fn follow_github(
    github: &FakeGithub,
    events: &mut tokio::sync::broadcast::Receiver<GithubEvent>,
    started: Instant,
    mut done: impl FnMut(u64, &str) -> bool,
) -> bool {
    follow(events, started, |event, at| match event {
        GithubEvent::Reaction {
            content,
            comment_id,
        } => {
            println!("[{at:>5} ms] reaction :{content}: on comment {comment_id}");
            done(comment_id, &content)
        }
        GithubEvent::CommentCreated {
            id, number, body, ..
        } => {
            let in_review = github
                .comments(REPO, number)
                .iter()
                .any(|c| c.id == id && c.review.is_some());
            let place = if in_review {
                "replied in the review thread"
            } else {
                "posted a comment"
            };
            println!("[{at:>5} ms] ozbridge {place}:\n{}", indent(&body));
            false
        }
        GithubEvent::CommentEdited { body, .. } => {
            println!(
                "[{at:>5} ms] ozbridge edited its comment:\n{}",
                indent(&body)
            );
            false
        }
    })
    .await
}

/// A command on a pull request's diff, answered in its review thread.
async fn review_thread_flow(github: &FakeGithub, base: &str) -> anyhow::Result<bool> {
    println!("━━ GitHub: a pull request's review thread ━━");
    github.add_pull(REPO, 43, "retry-setting", "main");
    github.add_issue(REPO, 43, "Retry logins", None, &[]);
    github.set_pull_files(REPO, 43, &["src/login.rs"]);
    let mut events = github.subscribe();
    let started = Instant::now();
    let root = github.add_review_comment(REPO, 43, "bob", "Why five retries here?", None);
    let text = "/oz make the retry count a setting";
    let id = github.add_review_comment(REPO, 43, "alice", text, Some(root));
    println!(
        "@bob commented on line 42 of src/login.rs in {REPO}#43: Why five retries here?\n\
         @alice replied in that review thread:\n    {text}"
    );
    let body = serde_json::json!({
        "action": "created",
        "comment": {
            "id": id, "body": text, "in_reply_to_id": root,
            "user": { "login": "alice", "id": 1001, "type": "User" },
            "path": "src/login.rs", "line": 42,
            "diff_hunk": "@@ -40,3 +40,3 @@\n-    retry(3)\n+    retry(5)",
        },
        "pull_request": {
            "number": 43, "title": "Retry logins", "body": "", "html_url": format!("https://github.com/{REPO}/pull/43"),
            "head": { "ref": "retry-setting" }, "base": { "ref": "main" },
        },
        "repository": { "full_name": REPO },
        "sender": { "login": "alice", "id": 1001, "type": "User" },
    });
    deliver(
        base,
        "pull_request_review_comment",
        body.to_string(),
        started,
    )
    .await?;
    let finished = follow_github(github, &mut events, started, |on, mark| {
        on == id && mark == "rocket"
    })
    .await;
    let in_thread = github
        .comments(REPO, 43)
        .iter()
        .filter(|c| c.review.is_some() && c.author.ends_with("[bot]"))
        .count();
    println!(
        "Review thread of {REPO}#43: {in_thread} comment(s) by ozbridge, all in the thread.\n"
    );
    Ok(finished)
}

/// A request by someone without write access, run once a maintainer approves it.
async fn approval_flow(github: &FakeGithub, base: &str) -> anyhow::Result<bool> {
    println!("━━ GitHub: an outsider's request, approved ━━");
    github.set_permission(REPO, "mallory", "read");
    github.add_issue(REPO, 44, "Login test is flaky", None, &[]);
    let mut events = github.subscribe();
    let started = Instant::now();
    let say = |author: &'static str, text: &'static str| async move {
        let id = github.add_user_comment(REPO, 44, author, text);
        println!(
            "[{:>5} ms] @{author} commented on {REPO}#44:\n    {text}",
            started.elapsed().as_millis()
        );
        let body = CommentEventSpec {
            author_id: if author == "alice" { 1001 } else { 2002 },
            ..CommentEventSpec::created(REPO, 44, id, author, text)
        }
        .payload()
        .to_string();
        deliver(base, "issue_comment", body, started).await?;
        anyhow::Ok(id)
    };
    let request = say("mallory", "/oz fix the typo in the README").await?;
    let waiting = follow(&mut events, started, |event, at| match event {
        GithubEvent::CommentCreated { body, .. } => {
            println!("[{at:>5} ms] ozbridge posted a comment:\n{}", indent(&body));
            body.contains("approve")
        }
        GithubEvent::Reaction {
            content,
            comment_id,
        } => {
            println!("[{at:>5} ms] reaction :{content}: on comment {comment_id}");
            false
        }
        GithubEvent::CommentEdited { .. } => false,
    })
    .await;
    say("alice", "/oz approve").await?;
    let finished = follow_github(github, &mut events, started, |on, mark| {
        on == request && mark == "rocket"
    })
    .await;
    println!();
    Ok(waiting && finished)
}

async fn slack_flow(slack: &FakeSlack, base: &str, hooks: &str) -> anyhow::Result<bool> {
    println!("━━ Slack ━━");
    slack.add_channel(CHANNEL, true);
    let mut events = slack.subscribe();
    let client = reqwest::Client::new();
    let send = |path: &'static str, body: String, content_type: &'static str| {
        let now = chrono::Utc::now().timestamp();
        client
            .post(format!("{base}{path}"))
            .header("Content-Type", content_type)
            .header("X-Slack-Request-Timestamp", now.to_string())
            .header(
                "X-Slack-Signature",
                crate::slack::intake::sign(SLACK_SECRET, now, body.as_bytes()),
            )
            .body(body)
            .send()
    };
    println!("<@U1> typed in #eng:\n    /oz fix the flaky login test --env prod-mirror\n");
    let started = Instant::now();
    let body = slash_command_body(
        CHANNEL,
        "U1",
        "fix the flaky login test --env prod-mirror",
        &format!("{hooks}cmd/1"),
        "trig-demo",
    );
    let ack: serde_json::Value = send("/slack/commands", body, "application/x-www-form-urlencoded")
        .await?
        .json()
        .await?;
    println!(
        "[{:>5} ms] Slack shows privately: {}",
        started.elapsed().as_millis(),
        ack["text"].as_str().unwrap_or_default()
    );
    let mut root_ts = None;
    let first = follow(&mut events, started, |event, at| {
        print_slack(event, at, &mut root_ts)
    })
    .await;
    let Some(root) = root_ts else {
        return Ok(false);
    };

    println!("\n<@U2> replied in that thread:\n    @oz also add a regression test\n");
    let ts = slack.add_user_message(
        CHANNEL,
        Some(&root),
        "U2",
        "<@UOZBOT> also add a regression test",
    );
    let event = mention_event(
        "EvDemo2",
        CHANNEL,
        "U2",
        "<@UOZBOT> also add a regression test",
        &ts,
        Some(&root),
    );
    send("/slack/events", event.to_string(), "application/json").await?;
    let mut ignored = None;
    let second = follow(&mut events, started, |event, at| {
        print_slack(event, at, &mut ignored)
    })
    .await;
    println!(
        "Thread in #eng: {} message(s) by ozbridge.",
        slack.bot_messages(CHANNEL).len()
    );
    Ok(first && second)
}

/// Prints one Slack event; true when it marks the end of a run.
fn print_slack(event: SlackEvent, at: u128, root: &mut Option<String>) -> bool {
    match event {
        SlackEvent::Posted(message) => {
            let place = if message.thread_ts.is_some() {
                "replied in the thread"
            } else {
                "posted in #eng"
            };
            if message.thread_ts.is_none() && root.is_none() {
                *root = Some(message.ts.clone());
            }
            println!(
                "[{at:>5} ms] ozbridge {place}:\n{}",
                indent(message.shown())
            );
            message.text.contains("the agent finished") || message.text.contains("the run failed")
        }
        SlackEvent::Updated(message) => {
            println!(
                "[{at:>5} ms] ozbridge updated its message:\n{}",
                indent(message.shown())
            );
            false
        }
        SlackEvent::Reaction { name, .. } => {
            println!("[{at:>5} ms] reaction :{name}: on the request");
            false
        }
        SlackEvent::Ephemeral { text, .. } | SlackEvent::Responded { text } => {
            println!("[{at:>5} ms] private note: {text}");
            false
        }
    }
}

/// Prints events until `done` says a run ended (then waits for the last edits), 30 s at most.
async fn follow<E: Clone>(
    events: &mut tokio::sync::broadcast::Receiver<E>,
    started: Instant,
    mut done: impl FnMut(E, u128) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut finished = false;
    loop {
        let wait = if finished {
            Duration::from_millis(1500)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Ok(event)) => finished |= done(event, started.elapsed().as_millis()),
            _ => return finished,
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    │ {l}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
