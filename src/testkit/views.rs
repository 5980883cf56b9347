//! A run at each moment of its life, as its thread sees it: the fixtures the renderings
//! of every surface are snapshotted with.

use crate::domain::{RunView, StartTrouble};
use crate::oz::types::{
    Artifact, FileArtifactData, PlatformErrorCode, PullRequestArtifactData, RunState,
    RunStatusMessage, ScreenshotArtifactData,
};

const SESSION: &str = "https://app.warp.dev/session/sess-1";

/// `(name, view)` for each moment: named so that a snapshot file says what it shows.
pub fn lifecycle() -> Vec<(&'static str, RunView)> {
    let pull_request = Artifact::PullRequest {
        created_at: None,
        data: PullRequestArtifactData {
            url: "https://github.com/acme/widgets/pull/7".into(),
            branch: "oz/fix-login-test".into(),
        },
    };
    let working = RunView {
        state: Some(RunState::InProgress),
        oz_run_id: Some("oz-run-1".into()),
        session_link: Some(SESSION.into()),
        ..RunView::default()
    };
    vec![
        ("starting", RunView::default()),
        (
            "oz_not_answering",
            RunView {
                trouble: Some(StartTrouble::Retrying {
                    until: 1_800_000_000_000,
                }),
                ..RunView::default()
            },
        ),
        (
            "parked",
            RunView {
                trouble: Some(StartTrouble::Parked),
                ..RunView::default()
            },
        ),
        (
            "queued",
            RunView {
                state: Some(RunState::Queued),
                oz_run_id: Some("oz-run-1".into()),
                ..RunView::default()
            },
        ),
        ("working", working.clone()),
        (
            "working_with_pull_request",
            RunView {
                artifacts: vec![pull_request.clone()],
                ..working.clone()
            },
        ),
        (
            "needs_input",
            RunView {
                state: Some(RunState::Blocked),
                ..working.clone()
            },
        ),
        (
            "succeeded",
            RunView {
                state: Some(RunState::Succeeded),
                artifacts: vec![
                    pull_request,
                    Artifact::Screenshot {
                        created_at: None,
                        data: ScreenshotArtifactData {
                            artifact_uid: "art-shot".into(),
                            mime_type: "image/png".into(),
                        },
                    },
                    Artifact::File {
                        created_at: None,
                        data: FileArtifactData {
                            artifact_uid: "art-file".into(),
                            filepath: "reports/flaky.md".into(),
                            filename: "flaky.md".into(),
                            mime_type: "text/markdown".into(),
                            size_bytes: Some(2048),
                        },
                    },
                ],
                summary: Some(
                    "I fixed the **login test**: the session cookie now outlives the \
                     request.\n\n- changed `auth/session.rs`\n- added a regression test"
                        .into(),
                ),
                ..working.clone()
            },
        ),
        (
            "failed_retryable",
            RunView {
                state: Some(RunState::Failed),
                status_message: Some(RunStatusMessage {
                    message: "The environment could not be set up.".into(),
                    error_code: Some(PlatformErrorCode::EnvironmentSetupFailed),
                    retryable: Some(true),
                }),
                ..working.clone()
            },
        ),
        (
            "cancelled",
            RunView {
                state: Some(RunState::Cancelled),
                note: Some("Cancel requested by someone in the thread.".into()),
                ..working
            },
        ),
        (
            "could_not_start",
            RunView {
                start_error: Some("The model `gpt-9` is not available.".into()),
                ..RunView::default()
            },
        ),
    ]
}
