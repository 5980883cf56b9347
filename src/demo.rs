//! `ozbridge demo`: the whole flow on loopback with no credentials and no network: the
//! Oz simulator, a fake GitHub, a temporary SQLite database and a real signed webhook.

use crate::config::Config;
use crate::github::fake::{CommentEventSpec, FakeGithub, GithubEvent};
use crate::intake::signature::sign_github;
use crate::oz::sim::OzSim;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;

const SECRET: &str = "demo-webhook-secret";
const REPO: &str = "acme/widgets";

/// Runs the demo; success when the run reached its final state and the thread shows it.
pub async fn run() -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let sim = OzSim::new(Duration::from_millis(700));
    let oz_url = sim.serve(TcpListener::bind("127.0.0.1:0").await?).await?;
    let github = FakeGithub::new();
    let github_url = github
        .serve(TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let vars: HashMap<&str, String> = HashMap::from([
        ("WARP_API_KEY", "demo-key".to_owned()),
        ("OZ_API_URL", oz_url),
        ("GITHUB_API_URL", github_url),
        ("GITHUB_TOKEN", "demo-token".to_owned()),
        ("GITHUB_WEBHOOK_SECRET", SECRET.to_owned()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/demo.db", dir.path().display()),
        ),
        ("OZ_TICK_INTERVAL_SECS", "0.3".to_owned()),
    ]);
    let config = Config::load_with(None, &|key| vars.get(key).cloned())?;
    let pipeline =
        crate::app::build_pipeline(&config, |s| s.poll = Duration::from_millis(200)).await?;
    let app = crate::app::start(&config, pipeline, TcpListener::bind("127.0.0.1:0").await?).await?;

    github.set_permission(REPO, "alice", "write");
    let text = "/oz fix the flaky login test";
    let comment_id = github.add_user_comment(REPO, 42, "alice", text);
    let mut events = github.subscribe();
    println!(
        "ozbridge demo: bridge on http://{}, Oz simulator and fake GitHub on loopback\n",
        app.addr
    );
    println!("@alice commented on {REPO}#42 \"Login test is flaky\":\n    {text}\n");

    let body = CommentEventSpec {
        action: "created",
        repo: REPO,
        number: 42,
        title: "Login test is flaky",
        issue_body: "`login_test` fails about one run in five on CI.",
        is_pull_request: false,
        comment_id,
        author: "alice",
        author_id: 1001,
        author_type: "User",
        body: text,
        previous_body: None,
        installation: None,
    }
    .payload()
    .to_string();
    let started = std::time::Instant::now();
    let response = reqwest::Client::new()
        .post(format!("http://{}/github/webhook", app.addr))
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

    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        let mut final_seen = false;
        loop {
            // After the final reaction, wait for the last edit (the summary) to land.
            let wait = if final_seen {
                Duration::from_millis(1500)
            } else {
                Duration::from_secs(30)
            };
            let Ok(Ok(event)) = tokio::time::timeout(wait, events.recv()).await else {
                return final_seen;
            };
            let at = started.elapsed().as_millis();
            match event {
                GithubEvent::Reaction { content, .. } => {
                    println!("[{at:>5} ms] reaction :{content}: on @alice's comment");
                    if matches!(content.as_str(), "rocket" | "confused" | "-1") {
                        final_seen = true;
                    }
                }
                GithubEvent::CommentCreated { body, .. } => {
                    println!("[{at:>5} ms] ozbridge posted a comment:\n{}", indent(&body));
                }
                GithubEvent::CommentEdited { body, .. } => {
                    println!(
                        "[{at:>5} ms] ozbridge edited its comment:\n{}",
                        indent(&body)
                    );
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    let comments = github.bot_comments(REPO, 42);
    println!(
        "Final thread: {} comment(s) by ozbridge, {} revision(s) of the status comment.",
        comments.len(),
        comments.first().map(|c| c.revisions.len()).unwrap_or(0)
    );
    app.shutdown().await;
    if finished {
        println!("\nDemo complete: the run was followed from webhook to final state.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nDemo did not complete within 30 s.");
        Ok(ExitCode::FAILURE)
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    │ {l}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
