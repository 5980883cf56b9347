//! GitHub's own example payloads (`@octokit/webhooks-examples`, see
//! `tests/fixtures/octokit-webhooks-examples/`) through the real router, signed as GitHub
//! signs them: every one is answered 2xx (accepted, a duplicate, a ping or ignored),
//! never refused as malformed; with a `/oz` command written into its comment, every
//! comment example is accepted as a command.

mod common;

use common::Harness;
use std::path::Path;

fn examples(event: &str) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/octokit-webhooks-examples")
        .join(format!("{event}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const EVENTS: [&str; 7] = [
    "issue_comment",
    "pull_request_review_comment",
    "pull_request_review",
    "issues",
    "pull_request",
    "ping",
    "installation",
];

#[tokio::test]
async fn every_official_example_is_answered_without_a_refusal() {
    let h = Harness::start().await;
    let mut delivered = 0;
    for event in EVENTS {
        for example in examples(event) {
            let response = h.deliver(event, &example.to_string()).await;
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                status.is_success(),
                "{event} ({}) answered {status}: {body}",
                example["action"]
            );
            delivered += 1;
        }
    }
    assert!(delivered >= 80, "{delivered} examples");
}

#[tokio::test]
async fn every_official_comment_example_with_a_command_is_accepted() {
    let h = Harness::start().await;
    let mut comment_id = 900_000;
    for event in ["issue_comment", "pull_request_review_comment"] {
        for mut example in examples(event) {
            if example["action"] != "created" {
                continue;
            }
            // Several examples share a comment; each is made a comment of its own.
            comment_id += 1;
            example["comment"]["id"] = comment_id.into();
            example["comment"]["body"] = "/oz summarize this thread".into();
            let response = h.deliver(event, &example.to_string()).await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(status, 202, "{event}: {body}");
            assert!(body.get("accepted").is_some(), "{event}: {body}");
        }
    }
}
