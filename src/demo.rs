//! `ozbridge demo`: the whole flow on loopback with no credentials and no network: the
//! Oz simulator, a fake GitHub, a fake Slack, a temporary SQLite database, and real
//! signed requests: a GitHub `/oz` comment, a Slack `/oz` slash command and a follow-up
//! `@oz` mention in the thread it made.

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
    let slack_done = slack_flow(&slack, &base, &hooks).await?;
    app.shutdown().await;
    if github_done && slack_done {
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
    let mut events = github.subscribe();
    let started = Instant::now();
    let comment = |text: &'static str| async move {
        let comment_id = github.add_user_comment(REPO, 42, "alice", text);
        println!(
            "[{:>5} ms] @alice commented on {REPO}#42 \"Login test is flaky\":\n    {text}",
            started.elapsed().as_millis()
        );
        let body = CommentEventSpec {
            issue_body: "`login_test` fails about one run in five on CI.",
            ..CommentEventSpec::created(REPO, 42, comment_id, "alice", text)
        }
        .payload()
        .to_string();
        let response = reqwest::Client::new()
            .post(format!("{base}/github/webhook"))
            .header("X-GitHub-Event", "issue_comment")
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
        anyhow::Ok(comment_id)
    };
    let first = comment("/oz fix the flaky login test").await?;
    // A second request while the first run works: queued, then run as its follow-up.
    let second = comment("/oz then add a regression test for it").await?;
    let mut ended = 0;
    let finished = follow(&mut events, started, |event, at| match event {
        GithubEvent::Reaction {
            content,
            comment_id,
        } => {
            let which = if comment_id == first {
                "first"
            } else {
                "second"
            };
            println!("[{at:>5} ms] reaction :{content}: on @alice's {which} comment");
            if matches!(content.as_str(), "rocket" | "confused" | "-1")
                && (comment_id == first || comment_id == second)
            {
                ended += 1;
            }
            ended == 2
        }
        GithubEvent::CommentCreated { body, .. } => {
            println!("[{at:>5} ms] ozbridge posted a comment:\n{}", indent(&body));
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
    .await;
    let comments = github.bot_comments(REPO, 42);
    println!(
        "Thread {REPO}#42: {} comment(s) by ozbridge, {} revision(s) of the status comment.\n",
        comments.len(),
        comments.first().map(|c| c.revisions.len()).unwrap_or(0)
    );
    Ok(finished)
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
