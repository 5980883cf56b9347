//! Markdown for GitHub: the status comment of a run and one-off replies, each carrying a
//! hidden marker that ties it to its run or reply, and each under GitHub's size limit.

use crate::domain::{Author, Checklist, RunView};
use crate::ids::RunRef;
use crate::oz::types::{Artifact, RunState};
use crate::text::truncate;

/// GitHub's limit on a comment body, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;
/// Room kept for the summary within a status comment.
const MAX_SUMMARY_CHARS: usize = 20_000;

/// The hidden marker of a run's status comment.
pub fn run_marker(run: &RunRef) -> String {
    format!("<!-- ozbridge:run:{run} -->")
}

/// The hidden marker of a reply.
pub fn reply_marker(key: &str) -> String {
    format!("<!-- ozbridge:reply:{key} -->")
}

/// True when a comment was written by ozbridge (it carries one of its markers).
pub fn is_own_comment(body: &str) -> bool {
    body.contains("<!-- ozbridge:")
}

/// Tells the requester that the agent waits for them (status comment and reply).
pub fn blocked_notice(login: &str, view: &RunView) -> String {
    let reason = view
        .status_message
        .as_ref()
        .map(|m| format!(": {}", m.message))
        .unwrap_or_default();
    let link = view
        .session_link
        .as_ref()
        .map(|l| format!(" [Open the session]({l}) to answer."))
        .unwrap_or_default();
    format!("@{login}, the Oz agent needs you{reason}.{link}")
}

/// Everything the status comment shows.
pub struct StatusInput<'a> {
    pub run: &'a RunRef,
    pub view: &'a RunView,
    pub requester: &'a Author,
    pub request_text: &'a str,
    /// Public base URL of ozbridge, for artifact download links.
    pub public_url: Option<&'a str>,
}

/// Renders the status comment of a run.
pub fn status_comment(input: &StatusInput<'_>) -> String {
    let view = input.view;
    let mut out = String::new();
    out.push_str(&run_marker(input.run));
    out.push('\n');
    let raw_state = view
        .state
        .as_ref()
        .map(|s| format!(" (`{s}`)"))
        .unwrap_or_default();
    out.push_str(&format!("**Oz agent** · {}{raw_state}\n\n", view.label()));
    let request = truncate(input.request_text.lines().next().unwrap_or_default(), 200);
    let approval = view
        .approved_by
        .as_ref()
        .map(|approver| format!(" (approved by {approver})"))
        .unwrap_or_default();
    out.push_str(&format!(
        "@{} asked: {}{approval}\n\n",
        input.requester.name(),
        quote_inline(&request)
    ));
    if let Some(link) = &view.session_link {
        out.push_str(&format!("- Live session: [open in Warp]({link})\n"));
    }
    for artifact in &view.artifacts {
        if let Some(line) = artifact_line(artifact, input.public_url) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    if let Some(checklist) = &view.checklist {
        out.push_str(&checklist_lines(checklist));
    }
    if view.state == Some(RunState::Blocked) {
        out.push_str(&format!(
            "\n{}\n",
            blocked_notice(input.requester.name(), view)
        ));
    }
    if let Some(note) = &view.note {
        out.push_str(&format!("\n{}\n", truncate(note, 300)));
    }
    if !view.queued.is_empty() {
        out.push_str("\n**Queued next** (starts when this run ends; `/oz drop` removes them):\n\n");
        for (i, queued) in view.queued.iter().enumerate() {
            out.push_str(&format!(
                "{}. {}: {}\n",
                i + 1,
                queued.who,
                quote_inline(&queued.asked)
            ));
        }
    }
    if let Some(trouble) = &view.trouble {
        out.push_str(&format!("\n⚠️ {}\n", trouble.text(input.run)));
    }
    if let Some(error) = &view.start_error {
        out.push_str(&format!("\n**The run could not be started:** {error}\n"));
    }
    if matches!(view.state, Some(RunState::Failed | RunState::Error)) {
        match &view.status_message {
            Some(message) => {
                let code = message
                    .error_code
                    .as_ref()
                    .map(|c| format!(" (`{c}`)"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "\n**What went wrong:** {}{code}\n",
                    truncate(&message.message, 2_000)
                ));
                let advice = match message.retryable {
                    Some(true) => "Retrying may help: comment `/oz retry`.",
                    Some(false) => {
                        "Retrying the same request will not help; change the request or its setup first."
                    }
                    None => "It is not known whether retrying would help.",
                };
                out.push_str(&format!("\n{advice}\n"));
            }
            None => out.push_str("\nThe run ended without saying why.\n"),
        }
    }
    if let Some(summary) = &view.summary {
        out.push_str(&format!(
            "\n### Summary\n\n{}\n",
            truncate(summary, MAX_SUMMARY_CHARS)
        ));
    }
    if let Some(id) = &view.oz_run_id {
        let hint = if view.is_final() {
            view.figures
                .and_then(|figures| figures.line())
                .map(|line| format!(" · {line}"))
                .unwrap_or_default()
        } else {
            " · reply `/oz cancel` to stop it, `/oz status` for its state".to_owned()
        };
        out.push_str(&format!("\n<sub>Oz run `{id}`{hint}</sub>\n"));
    }
    truncate(&out, MAX_COMMENT_CHARS)
}

fn artifact_line(artifact: &Artifact, public_url: Option<&str>) -> Option<String> {
    let download = |uid: &str, name: &str| match public_url {
        Some(base) => format!("[{name}]({base}/artifacts/{uid})"),
        None => format!("`{name}`"),
    };
    Some(match artifact {
        Artifact::PullRequest { data, .. } => {
            format!("Pull request: {} (branch `{}`)", data.url, data.branch)
        }
        Artifact::Plan { data, .. } => {
            let title = data.title.clone().unwrap_or_else(|| "Plan".into());
            match &data.url {
                Some(url) => format!("Plan: [{title}]({url})"),
                None => format!("Plan: {title}"),
            }
        }
        Artifact::Screenshot { data, .. } => {
            format!("Screenshot: {}", download(&data.artifact_uid, "screenshot"))
        }
        Artifact::File { data, .. } => {
            format!("File: {}", download(&data.artifact_uid, &data.filename))
        }
        Artifact::Other { raw, artifact_type } => {
            let url = raw.pointer("/data/url").and_then(|u| u.as_str())?;
            format!("{}: {url}", artifact_type.to_lowercase().replace('_', " "))
        }
    })
}

fn quote_inline(text: &str) -> String {
    format!("“{}”", defused(text))
}

/// Text that mentions nobody (an `@` followed by a zero-width space).
fn defused(text: &str) -> String {
    text.replace('@', "@\u{200b}")
}

/// The run's checklist as Markdown lines (✅ done, ⬜ not yet; nested steps indented).
fn checklist_lines(checklist: &Checklist) -> String {
    let mut out = String::from("\n**Progress**\n\n");
    for step in &checklist.steps {
        let mark = if step.done { "✅" } else { "⬜" };
        let indent = "  ".repeat(usize::from(step.depth));
        out.push_str(&format!("{indent}- {mark} {}\n", defused(&step.text)));
    }
    if checklist.more_steps > 0 {
        out.push_str(&format!(
            "- … and {} more steps (the session has them all)\n",
            checklist.more_steps
        ));
    }
    if let Some(actions) = checklist.actions_line() {
        out.push_str(&format!("\n<sub>{actions}</sub>\n"));
    }
    out
}

/// The comment that tells the requester a run ended (edits of the status comment
/// notify nobody): the outcome, and where the details are.
pub fn finished_notice(login: &str, view: &RunView, status: Option<&str>) -> String {
    let mut text = format!("@{login}, the Oz agent finished: **{}**.", view.label());
    if let Some(line) = view.figures.and_then(|figures| figures.line()) {
        text.push_str(&format!(" {line}."));
    }
    if let Some(link) = status {
        text.push_str(&format!(" [Details in the status comment]({link})."));
    }
    text
}

/// Wraps a reply body with its marker and keeps it under the size limit.
pub fn reply(key: &str, text: &str) -> String {
    let marker = reply_marker(key);
    format!(
        "{marker}\n{}",
        truncate(text, MAX_COMMENT_CHARS - marker.chars().count() - 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oz::types::*;

    fn author() -> Author {
        Author::Github {
            login: "alice".into(),
            id: 1,
            is_bot: false,
        }
    }

    #[test]
    fn status_comment_shows_links_and_outcome() {
        let run = RunRef("r-1".into());
        let view = RunView {
            state: Some(RunState::Failed),
            oz_run_id: Some("oz-1".into()),
            session_link: Some("https://app.warp.dev/session/s".into()),
            artifacts: vec![Artifact::PullRequest {
                created_at: None,
                data: PullRequestArtifactData {
                    url: "https://github.com/o/r/pull/2".into(),
                    branch: "oz/fix".into(),
                },
            }],
            status_message: Some(RunStatusMessage {
                message: "boom".into(),
                error_code: Some(PlatformErrorCode::EnvironmentSetupFailed),
                retryable: Some(true),
            }),
            ..RunView::default()
        };
        let body = status_comment(&StatusInput {
            run: &run,
            view: &view,
            requester: &author(),
            request_text: "fix @bob's test",
            public_url: None,
        });
        assert!(body.starts_with("<!-- ozbridge:run:r-1 -->"));
        assert!(body.contains("❌ Failed"));
        assert!(body.contains("https://github.com/o/r/pull/2 (branch `oz/fix`)"));
        assert!(body.contains("Retrying may help"));
        assert!(body.contains("environment_setup_failed"));
        assert!(
            !body.contains("@bob"),
            "mentions inside the quoted request must not ping"
        );
    }

    #[test]
    fn huge_summaries_stay_under_the_limit() {
        let run = RunRef("r".into());
        let view = RunView {
            state: Some(RunState::Succeeded),
            summary: Some("é".repeat(200_000)),
            ..RunView::default()
        };
        let body = status_comment(&StatusInput {
            run: &run,
            view: &view,
            requester: &author(),
            request_text: &"x".repeat(100_000),
            public_url: None,
        });
        assert!(body.chars().count() <= MAX_COMMENT_CHARS);
        assert!(body.contains('…'));
        assert!(reply("k", &"y".repeat(100_000)).chars().count() <= MAX_COMMENT_CHARS);
    }

    /// Every moment of a run's life, as its whole status comment.
    #[test]
    fn status_comments_at_every_moment() {
        let run = RunRef("run-7f3a".into());
        for (moment, view) in crate::testkit::views::lifecycle() {
            let body = status_comment(&StatusInput {
                run: &run,
                view: &view,
                requester: &author(),
                request_text: "fix the flaky login test\nIt fails one run in five.",
                public_url: Some("https://oz.example.com"),
            });
            insta::assert_snapshot!(format!("status_comment_{moment}"), body);
        }
    }
}
