//! Block Kit for Slack: the status message of a run with its buttons, and the short
//! thread replies for notable moments, kept inside Slack's limits.

use crate::domain::RunView;
use crate::ids::RunRef;
use crate::oz::types::{Artifact, RunState};
use crate::text::truncate;
use serde_json::{Value, json};

/// Slack's limit on a section's text.
const MAX_SECTION_CHARS: usize = 3_000;
/// Slack's limit on blocks per message.
const MAX_BLOCKS: usize = 50;
/// Fallback text kept well under Slack's 40,000-character cut.
const MAX_TEXT_CHARS: usize = 3_500;

/// Button action ids.
pub const ACTION_CANCEL: &str = "oz_cancel";
pub const ACTION_RETRY: &str = "oz_retry";
/// The Drop button: empties the thread's queue of instructions.
pub const ACTION_DROP: &str = "oz_drop";
pub const ACTION_OPEN: &str = "oz_open";

/// Escapes text for mrkdwn (`&`, `<`, `>`), so user text cannot mention or link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Turns the Markdown of ozbridge's own texts into Slack mrkdwn: `**bold**` becomes
/// `*bold*` and `[text](url)` becomes `<url|text>`.
pub fn mrkdwn(markdown: &str) -> String {
    let text = markdown.replace("**", "*");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let url_part = &after[close + 2..];
            url_part
                .find(')')
                .map(|end| (close, &url_part[..end], close + 2 + end + 1))
        });
        match link {
            Some((close, url, consumed))
                if !url.contains(char::is_whitespace) && !after[..close].contains('[') =>
            {
                out.push_str(&rest[..open]);
                out.push_str(&format!("<{url}|{}>", &after[..close]));
                rest = &after[consumed..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(text, MAX_SECTION_CHARS) } })
}

/// The status message: `(fallback text, blocks)`.
pub fn status_message(
    run: &RunRef,
    view: &RunView,
    requester: &str,
    asked: &str,
    public_url: Option<&str>,
) -> (String, Value) {
    let label = view.label();
    let asked_line = escape(&truncate(asked.lines().next().unwrap_or_default(), 300));
    let mut blocks = vec![section(&format!(
        "*Oz agent* · {label}\n<@{requester}> asked: {asked_line}"
    ))];
    let mut links = Vec::new();
    for artifact in &view.artifacts {
        match artifact {
            Artifact::PullRequest { data, .. } => links.push(format!(
                "Pull request: <{}|{}> (branch `{}`)",
                data.url,
                escape(&data.url),
                escape(&data.branch)
            )),
            Artifact::Plan { data, .. } => {
                let title = escape(data.title.as_deref().unwrap_or("Plan"));
                links.push(match &data.url {
                    Some(url) => format!("Plan: <{url}|{title}>"),
                    None => format!("Plan: {title}"),
                });
            }
            Artifact::Screenshot { data, .. } => links.push(match public_url {
                Some(base) => format!(
                    "Screenshot: <{base}/artifacts/{}|screenshot>",
                    data.artifact_uid
                ),
                None => "Screenshot attached to the run".into(),
            }),
            Artifact::File { data, .. } => links.push(match public_url {
                Some(base) => format!(
                    "File: <{base}/artifacts/{}|{}>",
                    data.artifact_uid,
                    escape(&data.filename)
                ),
                None => format!("File: `{}`", escape(&data.filename)),
            }),
            Artifact::Other { .. } => {}
        }
    }
    if !links.is_empty() {
        blocks.push(section(&links.join("\n")));
    }
    if let Some(checklist) = &view.checklist {
        let mut text = String::from("*Progress*");
        for step in &checklist.steps {
            let mark = if step.done {
                ":white_check_mark:"
            } else {
                ":white_large_square:"
            };
            let indent = "\u{2003}".repeat(usize::from(step.depth));
            text.push_str(&format!("\n{indent}{mark} {}", escape(&step.text)));
        }
        if checklist.more_steps > 0 {
            text.push_str(&format!(
                "\n… and {} more steps (the session has them all)",
                checklist.more_steps
            ));
        }
        if let Some(actions) = checklist.actions_line() {
            text.push_str(&format!("\n_{actions}_"));
        }
        blocks.push(section(&text));
    }
    if view.state == Some(RunState::Blocked) {
        let reason = view
            .status_message
            .as_ref()
            .map(|m| format!(": {}", escape(&m.message)))
            .unwrap_or_default();
        blocks.push(section(&format!(
            ":raised_hand: <@{requester}>, the agent needs you{reason}"
        )));
    }
    if let Some(trouble) = &view.trouble {
        blocks.push(section(&format!(":warning: {}", trouble.text(run))));
    }
    if let Some(error) = &view.start_error {
        blocks.push(section(&format!(
            "*The run could not be started:* {}",
            escape(error)
        )));
    }
    if matches!(view.state, Some(RunState::Failed | RunState::Error)) {
        let text = match &view.status_message {
            Some(m) => {
                let advice = match m.retryable {
                    Some(true) => "Retrying may help.",
                    Some(false) => "Retrying the same request will not help.",
                    None => "It is not known whether retrying would help.",
                };
                format!("*What went wrong:* {}\n{advice}", escape(&m.message))
            }
            None => "The run ended without saying why.".into(),
        };
        blocks.push(section(&text));
    }
    if let Some(summary) = &view.summary {
        // Long summaries are cut, with a pointer to where the whole text is.
        let room = MAX_SECTION_CHARS - 200;
        // The agent writes Markdown; escaped first, so it cannot mention or notify.
        let mut text = format!("*Summary*\n{}", truncate(&mrkdwn(&escape(summary)), room));
        if summary.chars().count() > room {
            match &view.session_link {
                Some(link) => text.push_str(&format!("\n<{link}|Read the rest in the session>")),
                None => text.push_str("\n(cut; the full text is in the run's transcript)"),
            }
        }
        blocks.push(section(&text));
    }
    if let Some(note) = &view.note {
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": truncate(note, 300) }] }));
    }
    if !view.queued.is_empty() {
        let lines: Vec<String> = view
            .queued
            .iter()
            .enumerate()
            .map(|(i, q)| format!("{}. {}: {}", i + 1, q.who, escape(&q.asked)))
            .collect();
        blocks.push(section(&format!(
            ":hourglass_flowing_sand: *Queued next* (starts when this run ends)\n{}",
            lines.join("\n")
        )));
    }
    let mut buttons = Vec::new();
    if let Some(link) = &view.session_link {
        buttons.push(json!({ "type": "button", "action_id": ACTION_OPEN, "text": { "type": "plain_text", "text": "Open session" }, "url": link, "value": run.as_str() }));
    }
    if !view.is_final() {
        buttons.push(json!({ "type": "button", "action_id": ACTION_CANCEL, "style": "danger", "text": { "type": "plain_text", "text": "Cancel" }, "value": run.as_str() }));
    }
    if view.retry_may_help() {
        buttons.push(json!({ "type": "button", "action_id": ACTION_RETRY, "style": "primary", "text": { "type": "plain_text", "text": "Retry" }, "value": run.as_str() }));
    }
    if !view.queued.is_empty() {
        buttons.push(json!({ "type": "button", "action_id": ACTION_DROP, "text": { "type": "plain_text", "text": "Drop queued" }, "value": run.as_str() }));
    }
    if !buttons.is_empty() {
        blocks.push(json!({ "type": "actions", "elements": buttons }));
    }
    if let Some(id) = &view.oz_run_id {
        let figures = view
            .figures
            .and_then(|figures| figures.line())
            .map(|line| format!(" · {line}"))
            .unwrap_or_default();
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": format!("Oz run `{id}`{figures}") }] }));
    }
    blocks.truncate(MAX_BLOCKS);
    let text = truncate(
        &format!("Oz agent · {label} · {asked_line}"),
        MAX_TEXT_CHARS,
    );
    (text, Value::Array(blocks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oz::types::*;

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(
            mrkdwn("**Oz** is [here](https://x.y/z). [not a link] (x)"),
            "*Oz* is <https://x.y/z|here>. [not a link] (x)"
        );
    }

    #[test]
    fn blocks_respect_limits_and_offer_the_right_buttons() {
        let run = RunRef("r1".into());
        let view = RunView {
            state: Some(RunState::Error),
            session_link: Some("https://app.warp.dev/session/s".into()),
            status_message: Some(RunStatusMessage {
                message: "<!channel> boom".into(),
                error_code: None,
                retryable: Some(true),
            }),
            summary: Some("x".repeat(10_000)),
            ..RunView::default()
        };
        let (text, blocks) = status_message(&run, &view, "U1", "fix <@U2> & co", None);
        assert!(text.contains("fix &lt;@U2&gt; &amp; co"), "{text}");
        let blocks = blocks.as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS);
        for block in blocks {
            if let Some(t) = block.pointer("/text/text").and_then(|t| t.as_str()) {
                assert!(t.chars().count() <= MAX_SECTION_CHARS);
                assert!(!t.contains("<!channel>"));
            }
        }
        let rendered = serde_json::to_string(blocks).unwrap();
        assert!(rendered.contains(ACTION_RETRY) && rendered.contains(ACTION_OPEN));
        assert!(
            !rendered.contains(ACTION_CANCEL),
            "no cancel on a finished run"
        );
        assert!(rendered.contains("Read the rest in the session"));
    }

    /// Every moment of a run's life, as the status message's fallback text and blocks.
    #[test]
    fn status_messages_at_every_moment() {
        let run = RunRef("run-7f3a".into());
        for (moment, view) in crate::testkit::views::lifecycle() {
            let (text, blocks) = status_message(
                &run,
                &view,
                "U1",
                "fix the flaky login test",
                Some("https://oz.example.com"),
            );
            insta::assert_json_snapshot!(
                format!("status_message_{moment}"),
                serde_json::json!({ "text": text, "blocks": blocks })
            );
        }
    }
}
