//! The real binary, `ozbridge serve`, as a process: JSON logs at TRACE level (every
//! crate: sqlx, reqwest, hyper included) through a GitHub flow and the Slack flows, and
//! not one secret in them or in anything the bot wrote.

use ozbridge::intake::signature::sign_github;
use ozbridge::testkit::github::FakeGithub;
use ozbridge::testkit::oz::OzSim;
use ozbridge::testkit::payloads::github::CommentEventSpec;
use ozbridge::testkit::payloads::slack::slash_command_body;
use ozbridge::testkit::slack::FakeSlack;
mod common;

use common::output::Output;
use std::process::Stdio;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::process::Command;

const OZ_KEY: &str = "wk-secret-oz-key-4242";
const GH_TOKEN: &str = "ghp_secretGithubToken4242";
const HOOK_SECRET: &str = "secret-webhook-4242";
const SLACK_TOKEN: &str = "xoxb-secret-slack-4242";
const SLACK_SECRET: &str = "secret-signing-4242";
/// Every secret the service holds, and the secret part of the Slack `response_url`.
const SECRETS: [&str; 6] = [
    OZ_KEY,
    GH_TOKEN,
    HOOK_SECRET,
    SLACK_TOKEN,
    SLACK_SECRET,
    "secret-response-path-4242",
];

/// Waits until `check` holds, looking again each time the fake GitHub or Slack sees a
/// call (the service runs in another process: its calls are the only news of it).
async fn wait_until(
    github: &FakeGithub,
    slack: &FakeSlack,
    what: &str,
    mut check: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (mut github_feed, mut slack_feed) = (github.subscribe(), slack.subscribe());
        if check() {
            return;
        }
        tokio::select! {
            _ = github_feed.recv() => {}
            _ = slack_feed.recv() => {}
            () = tokio::time::sleep_until(deadline) => panic!("timed out waiting for {what}"),
        }
    }
}

#[tokio::test]
async fn serve_logs_json_and_never_a_secret_even_at_trace() {
    ozbridge::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let sim = OzSim::new(Duration::from_millis(100)).with_api_key(OZ_KEY);
    let oz_url = sim
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let github = FakeGithub::new();
    let github_url = github
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    github.set_permission("acme/widgets", "alice", "write");
    let slack = FakeSlack::new(SLACK_TOKEN);
    let (slack_api, hooks) = slack
        .serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    slack.add_channel("CENG", true);
    let response_url = format!("{hooks}commands/T0ACME/secret-response-path-4242");
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ozbridge"))
        .arg("serve")
        .env_clear()
        .env("WARP_API_KEY", OZ_KEY)
        .env("OZ_API_URL", &oz_url)
        .env("GITHUB_API_URL", &github_url)
        .env("GITHUB_TOKEN", GH_TOKEN)
        .env("GITHUB_WEBHOOK_SECRET", HOOK_SECRET)
        .env("SLACK_API_URL", &slack_api)
        .env("SLACK_RESPONSE_URL_PREFIX", &hooks)
        .env("SLACK_BOT_TOKEN", SLACK_TOKEN)
        .env("SLACK_SIGNING_SECRET", SLACK_SECRET)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .env("OZBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "OZBRIDGE_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("OZ_TICK_INTERVAL_SECS", "0.2")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Output::default();
    let readers = [
        log.collect(child.stdout.take().unwrap()),
        log.collect(child.stderr.take().unwrap()),
    ];
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    log.wait_for("ozbridge is listening").await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert!(ready.status().is_success(), "ready once listening");
    // The container's HEALTHCHECK: the listen address as configured (all interfaces)
    // is asked on loopback.
    let health = healthcheck(&format!("0.0.0.0:{port}")).await;
    assert!(health.status.success(), "{health:?}");
    // Metrics on their own (private) port only, not beside the webhooks.
    let public = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("ozbridge_http_request_duration_seconds_bucket{"),
        "{metrics}"
    );

    let comment = github.add_user_comment("acme/widgets", 1, "alice", "/oz fix");
    let body = CommentEventSpec {
        title: "t",
        issue_body: "b",
        author_id: 1,
        ..CommentEventSpec::created("acme/widgets", 1, comment, "alice", "/oz fix")
    }
    .payload()
    .to_string();
    let answer = http
        .post(format!("{base}/github/webhook"))
        .header("X-GitHub-Event", "issue_comment")
        .header(
            "X-Hub-Signature-256",
            sign_github(HOOK_SECRET, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let refused = http
        .post(format!("{base}/github/webhook"))
        .header("X-GitHub-Event", "issue_comment")
        .header("X-Hub-Signature-256", sign_github("wrong", body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let slack_post = |path: &str, body: String, content_type: &'static str| {
        let now = chrono::Utc::now().timestamp();
        http.post(format!("{base}{path}"))
            .header("Content-Type", content_type)
            .header("X-Slack-Request-Timestamp", now.to_string())
            .header(
                "X-Slack-Signature",
                ozbridge::slack::intake::sign(SLACK_SECRET, now, body.as_bytes()),
            )
            .body(body)
            .send()
    };
    let slash = slash_command_body("CENG", "U1", "fix it", &response_url, "trig-1");
    let answer = slack_post(
        "/slack/commands",
        slash,
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let root = slack.add_user_message("CENG", None, "U2", "a topic");
    let mention_text = "<@UOZBOT> summarize this thread";
    let ts = slack.add_user_message("CENG", Some(&root), "U1", mention_text);
    let event = ozbridge::testkit::payloads::slack::mention_event(
        "Ev1",
        "CENG",
        "U1",
        mention_text,
        &ts,
        Some(&root),
    )
    .to_string();
    let answer = slack_post("/slack/events", event, "application/json")
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    wait_until(&github, &slack, "the Slack thread run", || {
        slack
            .thread("CENG", &root)
            .iter()
            .any(|m| m.shown().contains("✅ Done"))
    })
    .await;
    wait_until(&github, &slack, "the GitHub run", || {
        github.reactions(comment).contains(&"rocket".to_owned())
    })
    .await;
    wait_until(&github, &slack, "the Slack run", || {
        slack
            .bot_messages("CENG")
            .iter()
            .any(|m| m.shown().contains("✅ Done"))
    })
    .await;
    child.kill().await.unwrap();
    let _ = child.wait().await;
    let health = healthcheck(&format!("0.0.0.0:{port}")).await;
    assert!(!health.status.success(), "nothing answers after the kill");
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("unhealthy"),
        "{health:?}"
    );
    for reader in readers {
        reader.await.unwrap();
    }

    let text = log.text();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 10, "expected a debug log, got:\n{text}");
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    assert!(text.contains("ozbridge is listening"));
    assert!(
        text.contains("\"level\":\"TRACE\"") && text.contains("db.statement"),
        "the log is at TRACE and carries the libraries' lines (sqlx, hyper, reqwest)"
    );
    let mut written: Vec<String> = github
        .bot_comments("acme/widgets", 1)
        .into_iter()
        .map(|c| c.body)
        .collect();
    written.extend(
        slack
            .bot_messages("CENG")
            .into_iter()
            .flat_map(|m| m.revisions),
    );
    written.extend(slack.responses());
    assert!(written.len() > 3, "{written:?}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "a secret reached the log: {secret}");
        for post in &written {
            assert!(!post.contains(secret), "a secret reached a post: {secret}");
        }
    }
}

/// `ozbridge healthcheck` with `OZBRIDGE_LISTEN=listen`.
async fn healthcheck(listen: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ozbridge"))
        .args(["healthcheck", "--timeout", "5"])
        .env_clear()
        .env("OZBRIDGE_LISTEN", listen)
        .output()
        .await
        .unwrap()
}
