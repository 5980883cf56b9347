//! Files in a request reach the agent as Oz `attachments`: images shared with a Slack
//! message (bot token, `files:read`) or pasted into a GitHub comment (installation
//! token), at most five, of the types Oz takes, each within the size limit checked
//! before it is read whole; what is left out is named in the thread.

mod common;

use base64::Engine;
use common::{CHANNEL, Harness};
use serde_json::json;

fn png(extra: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(std::iter::repeat_n(7u8, extra));
    bytes
}

fn file(name: &str, mime: &str, size: usize, url: &str) -> serde_json::Value {
    json!({ "id": name, "name": name, "mimetype": mime, "size": size, "url_private": url,
            "url_private_download": url })
}

#[tokio::test]
async fn a_slack_mention_attaches_five_images_and_names_what_it_left_out() {
    let h = Harness::start().await;
    let a = png(10);
    let mut files = vec![file(
        "a.png",
        "image/png",
        a.len(),
        &h.slack.add_file("a.png", "image/png", a.clone()),
    )];
    // Said to be 6 MiB: left out without being downloaded.
    files.push(file(
        "big.png",
        "image/png",
        6 * 1024 * 1024,
        &h.slack.add_file("big.png", "image/png", png(1)),
    ));
    files.push(file(
        "notes.pdf",
        "application/pdf",
        8,
        &h.slack
            .add_file("notes.pdf", "application/pdf", b"%PDF-1.7".to_vec()),
    ));
    // Says it is a PNG; its bytes say otherwise.
    files.push(file(
        "fake.png",
        "image/png",
        5,
        &h.slack.add_file("fake.png", "image/png", b"hello".to_vec()),
    ));
    for name in ["b.png", "c.png", "d.png", "e.png", "f.png"] {
        files.push(file(
            name,
            "image/png",
            20,
            &h.slack.add_file(name, "image/png", png(12)),
        ));
    }
    let root = h
        .slack
        .add_user_message(CHANNEL, None, "U2", "the login page is broken");
    let ts = "1700000100.000100";
    let mut event = ozbridge::testkit::payloads::slack::mention_event(
        "EvFiles",
        CHANNEL,
        "U1",
        "<@UOZBOT> fix what the screenshots show",
        ts,
        Some(&root),
    );
    event["event"]["files"] = json!(files);
    assert_eq!(h.slack_event(&event).await.status(), 200);
    h.wait_for("the run", || h.sim.run_count() == 1).await;
    let note = h
        .wait_in_thread(CHANNEL, &root, "files were not attached")
        .await;
    for left_out in [
        "big.png (larger than 5 MiB)",
        "notes.pdf (not an image the agent takes",
        "fake.png (not an image the agent takes",
        "f.png (only 5 files can be attached)",
    ] {
        assert!(note.text.contains(left_out), "{left_out} in {}", note.text);
    }
    assert!(
        note.text.starts_with("4 files were not attached"),
        "{}",
        note.text
    );
    let attachments = h.sim.create_requests()[0].attachments.clone().unwrap();
    let names: Vec<&str> = attachments.iter().map(|a| a.file_name.as_str()).collect();
    assert_eq!(names, ["a.png", "b.png", "c.png", "d.png", "e.png"]);
    assert!(attachments.iter().all(|a| a.mime_type == "image/png"));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&attachments[0].data)
            .unwrap(),
        a
    );
}

#[tokio::test]
async fn a_file_larger_than_the_limit_is_refused_before_it_is_read_whole() {
    let h = Harness::start_with(None, &[("OZBRIDGE_MAX_ATTACHMENT_BYTES", "1000")])
        .await
        .unwrap();
    h.slack.add_channel("D0BOT", true);
    // Slack's description says nothing of its size; the download says 2,000 bytes.
    let url = h.slack.add_file("shot.png", "image/png", png(2_000));
    let mut event = ozbridge::testkit::payloads::slack::direct_message_event(
        "EvBig",
        "D0BOT",
        "U1",
        "fix this",
        "1700000200.000100",
    );
    event["event"]["subtype"] = json!("file_share");
    event["event"]["files"] = json!([{ "name": "shot.png", "url_private_download": url }]);
    assert_eq!(h.slack_event(&event).await.status(), 200);
    h.wait_for("the run", || h.sim.run_count() == 1).await;
    h.wait_for("the note", || {
        h.slack
            .bot_messages("D0BOT")
            .iter()
            .any(|m| m.text.contains("shot.png (larger than 1000 bytes)"))
    })
    .await;
    assert_eq!(h.sim.create_requests()[0].attachments, None);
}

#[tokio::test]
async fn a_direct_message_with_a_screenshot_and_text_starts_a_run_with_it() {
    let h = Harness::start().await;
    h.slack.add_channel("D0BOT", true);
    let shot = png(64);
    let url = h
        .slack
        .add_file("screenshot.png", "image/png", shot.clone());
    let mut event = ozbridge::testkit::payloads::slack::direct_message_event(
        "EvShot",
        "D0BOT",
        "U1",
        "fix this",
        "1700000300.000100",
    );
    // Slack sends a message with files as the `file_share` subtype.
    event["event"]["subtype"] = json!("file_share");
    event["event"]["files"] = json!([file("screenshot.png", "image/png", shot.len(), &url)]);
    assert_eq!(h.slack_event(&event).await.status(), 200);
    h.wait_for("the run", || h.sim.run_count() == 1).await;
    let request = &h.sim.create_requests()[0];
    assert!(
        request
            .prompt
            .as_deref()
            .unwrap_or_default()
            .contains("fix this")
    );
    let attachments = request.attachments.clone().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].file_name, "screenshot.png");
}

#[tokio::test]
async fn images_pasted_into_a_github_comment_reach_the_agent() {
    let mut h = Harness::start().await;
    let shot = png(32);
    let url = h.github.add_attachment("image/png", shot.clone());
    let body = format!(
        "/oz fix the layout\n\n![screenshot]({url})\n<img width=\"300\" src=\"https://example.com/tracker.png\">"
    );
    h.command(70, "alice", &body).await;
    h.wait_for("the run", || h.sim.run_count() == 1).await;
    let note = h.wait_reply_contains(70, "1 file was not attached").await;
    assert!(
        note.contains("tracker.png (not a file of this conversation's platform)"),
        "{note}"
    );
    let attachments = h.sim.create_requests()[0].attachments.clone().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&attachments[0].data)
            .unwrap(),
        shot
    );
    assert!(
        h.github
            .requests()
            .iter()
            .all(|r| !r.contains("example.com")),
        "nothing was fetched from another host"
    );
}
