//! A surface written outside the crate (no GitHub, no Slack) drives commands through the
//! real dispatcher, starter, tracker and notifier: the interface is all a new surface
//! needs. Everything the surface is asked to send arrives on a feed the test reads in
//! order, so the test waits for exactly what it asserts next.

mod common;

use common::Harness;
use ozbridge::app::Drive;
use ozbridge::command::CommandLine;
use ozbridge::domain::{
    Author, CustomOrigin, InboxCommand, Origin, PostId, Request, RunView, ThreadContext,
};
use ozbridge::store::RunRecord;
use ozbridge::surface::{
    Access, Mark, Moment, PlaceDefaults, PromptParts, SendError, StatusBody, Surface,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the board surface was asked to do.
#[derive(Debug, Clone, PartialEq)]
enum Said {
    Mark(Mark),
    Reply(String),
    Private(String),
    Moment(String),
    Status(String),
}

/// A message board: one thread per topic, a status post per run.
struct Board {
    said: mpsc::UnboundedSender<Said>,
    posts: Mutex<HashMap<String, String>>,
}

#[async_trait::async_trait]
impl Surface for Board {
    fn name(&self) -> &str {
        "board"
    }
    fn doubt_window(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn mention(&self, author: &Author) -> String {
        format!("~{}", author.name())
    }
    fn place_name(&self) -> &'static str {
        "this board"
    }
    fn help_note(&self) -> &'static str {
        "Members of the board can start agents."
    }
    async fn access(&self, _origin: &Origin, author: &Author) -> Result<Access, SendError> {
        Ok(match author.name() {
            "outsider" => Access::Denied(format!("~{}, you are not a member.", author.name())),
            "crasher" => panic!("the board's member list exploded"),
            _ => Access::Allowed,
        })
    }
    async fn complete_context(&self, _: &Origin, _: &mut ThreadContext) -> Result<(), SendError> {
        Ok(())
    }
    fn place_defaults(&self, _origin: &Origin) -> PlaceDefaults {
        PlaceDefaults::default()
    }
    fn prompt(&self, command: &InboxCommand, request: &str) -> PromptParts {
        PromptParts {
            template: "{command} (topic: {title})".into(),
            values: vec![
                ("command", request.to_owned()),
                ("title", command.context.title.clone()),
            ],
            title: format!("Board: {}", command.context.title),
        }
    }
    fn posts_status_first(&self) -> bool {
        false
    }
    async fn mark(&self, _origin: &Origin, mark: Mark) -> Result<(), SendError> {
        self.say(Said::Mark(mark))
    }
    async fn reply(&self, _: &Origin, _: &str, text: &str, _: bool) -> Result<(), SendError> {
        self.say(Said::Reply(text.to_owned()))
    }
    async fn private(&self, _: &Origin, _: &str, text: &str, _: bool) -> Result<(), SendError> {
        self.say(Said::Private(text.to_owned()))
    }
    async fn moment(&self, _run: &RunRecord, view: &RunView, moment: &Moment) -> Option<String> {
        Some(format!("{moment:?}: {}", view.label()))
    }
    fn run_thread(&self, run: &RunRecord) -> Option<Origin> {
        Some(run.origin.clone())
    }
    async fn post_moment(&self, _: &Origin, _: &str, text: &str, _: bool) -> Result<(), SendError> {
        self.say(Said::Moment(text.to_owned()))
    }
    fn render_status(&self, run: &RunRecord) -> StatusBody {
        let summary = run.view.summary.as_deref().unwrap_or_default();
        StatusBody {
            text: format!("{} {summary}", run.view.label()).trim().to_owned(),
            blocks: None,
        }
    }
    async fn find_status(&self, run: &RunRecord) -> Result<Option<PostId>, SendError> {
        let posts = self
            .posts
            .lock()
            .map_err(|_| SendError::permanent("poisoned"))?;
        let id = run.id.to_string();
        Ok(posts.contains_key(&id).then_some(PostId::Custom { id }))
    }
    async fn update_status(
        &self,
        _run: &RunRecord,
        post: &PostId,
        body: &StatusBody,
    ) -> Result<(), SendError> {
        let PostId::Custom { id } = post else {
            return Err(SendError::permanent("not a board post"));
        };
        self.post(id, &body.text)
    }
    async fn create_status(&self, run: &RunRecord, body: &StatusBody) -> Result<PostId, SendError> {
        let id = run.id.to_string();
        self.post(&id, &body.text)?;
        Ok(PostId::Custom { id })
    }
}

impl Board {
    fn say(&self, said: Said) -> Result<(), SendError> {
        self.said
            .send(said)
            .map_err(|_| SendError::permanent("the test stopped listening"))
    }

    fn post(&self, id: &str, text: &str) -> Result<(), SendError> {
        if let Ok(mut posts) = self.posts.lock() {
            posts.insert(id.to_owned(), text.to_owned());
        }
        self.say(Said::Status(text.to_owned()))
    }
}

/// The board's feed: what the surface was asked to do, in order.
struct Feed(mpsc::UnboundedReceiver<Said>);

impl Feed {
    /// The first item of `seen` or of the feed that `wanted` matches (reading the feed
    /// as far as needed); every item read goes into `seen`. Separate paths (a status
    /// post, a reaction, a reply) may go out in any order, so each is awaited on its own.
    /// A harness that drives the pipeline drives it until then.
    async fn until(
        &mut self,
        harness: &Harness,
        seen: &mut Vec<Said>,
        wanted: impl Fn(&Said) -> bool,
    ) -> Said {
        if let Some(said) = seen.iter().find(|s| wanted(s)) {
            return said.clone();
        }
        if harness.drive == Drive::Caller {
            let mut found = None;
            harness
                .drive_until("the board to be told", || {
                    while let Ok(said) = self.0.try_recv() {
                        seen.push(said.clone());
                        if wanted(&said) {
                            found = Some(said);
                            return true;
                        }
                    }
                    false
                })
                .await;
            return found.expect("found above");
        }
        let read = async {
            loop {
                let said = self.0.recv().await.expect("the surface is alive");
                seen.push(said.clone());
                if wanted(&said) {
                    return said;
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(said) => said,
            Err(_) => panic!("not said within 30 s; said so far: {seen:?}"),
        }
    }
}

async fn board(drive: Drive) -> (Harness, Feed) {
    let (said, feed) = mpsc::unbounded_channel();
    let surface = Arc::new(Board {
        said,
        posts: Mutex::default(),
    });
    (
        Harness::start_with_surface(surface, drive).await,
        Feed(feed),
    )
}

fn command(author: &str, text: &str) -> InboxCommand {
    InboxCommand {
        origin: Origin::Custom(CustomOrigin {
            surface: "board".into(),
            place: "engineering".into(),
            thread: "topic-7".into(),
            message: Some("m-1".into()),
        }),
        author: Author::Custom {
            name: author.into(),
        },
        editor: None,
        request: Request::Typed {
            line: CommandLine {
                args: text.into(),
                continuation: String::new(),
            },
        },
        context: ThreadContext {
            title: "Flaky login test".into(),
            ..ThreadContext::default()
        },
        approved_by: None,
    }
}

#[tokio::test]
async fn a_command_on_a_new_surface_runs_to_a_final_status() {
    let (harness, mut feed) = board(Drive::Caller).await;
    let pipeline = &harness.app.as_ref().expect("app").pipeline;
    let id = pipeline
        .accept("board:m-1", &command("ana", "fix the flaky test"))
        .await
        .expect("stored");
    assert!(id.is_some());
    let again = pipeline
        .accept("board:m-1", &command("ana", "fix the flaky test"))
        .await
        .expect("stored");
    assert_eq!(again, None, "a redelivered command is stored once");

    let mut seen = Vec::new();
    feed.until(&harness, &mut seen, |s| *s == Said::Mark(Mark::Received))
        .await;
    feed.until(
        &harness,
        &mut seen,
        |s| matches!(s, Said::Status(t) if t.starts_with("✅ Done")),
    )
    .await;
    feed.until(&harness, &mut seen, |s| *s == Said::Mark(Mark::Succeeded))
        .await;
    feed.until(
        &harness,
        &mut seen,
        |s| matches!(s, Said::Moment(t) if t.starts_with("Finished")),
    )
    .await;

    let statuses: Vec<&Said> = seen
        .iter()
        .filter(|s| matches!(s, Said::Status(_)))
        .collect();
    assert!(
        matches!(statuses.first(), Some(Said::Status(t)) if t.contains("Starting") || t.contains("Queued") || t.contains("Working")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, Said::Moment(t) if t.starts_with("Started"))),
        "{seen:?}"
    );
    let created = harness.sim.create_requests();
    assert_eq!(created.len(), 1, "one run for one command");
    let prompt = created[0].prompt.clone().unwrap_or_default();
    assert!(
        prompt.starts_with("fix the flaky test (topic: Flaky login test)"),
        "{prompt}"
    );
    assert_eq!(created[0].title.as_deref(), Some("Board: Flaky login test"));
}

#[tokio::test]
async fn the_surface_policy_refuses_in_its_own_words() {
    let (harness, mut feed) = board(Drive::Caller).await;
    let pipeline = &harness.app.as_ref().expect("app").pipeline;
    pipeline
        .accept("board:m-2", &command("outsider", "do something"))
        .await
        .expect("stored");
    let mut seen = Vec::new();
    let refusal = feed
        .until(&harness, &mut seen, |s| matches!(s, Said::Private(_)))
        .await;
    assert_eq!(
        refusal,
        Said::Private("~outsider, you are not a member.".into())
    );
    pipeline
        .accept("board:m-3", &command("ana", "help"))
        .await
        .expect("stored");
    let help = feed
        .until(&harness, &mut seen, |s| matches!(s, Said::Reply(_)))
        .await;
    assert!(
        matches!(&help, Said::Reply(t) if t.ends_with("Members of the board can start agents. Options go anywhere on the command's line; write `--` to end them.")),
        "{help:?}"
    );
    assert!(harness.sim.create_requests().is_empty(), "nothing started");
}

#[tokio::test]
async fn a_step_that_panics_is_reported_and_the_worker_goes_on() {
    let (harness, mut feed) = board(Drive::Workers).await;
    let pipeline = &harness.app.as_ref().expect("app").pipeline;
    let mut steps = pipeline.activity.watch();
    let mut crash = command("crasher", "fix it");
    if let Origin::Custom(origin) = &mut crash.origin {
        origin.thread = "topic-9".into();
    }
    pipeline.accept("board:m-9", &crash).await.expect("stored");
    while pipeline.activity.panics().is_empty() {
        steps.changed().await.expect("the pipeline runs");
    }
    assert_eq!(
        pipeline.activity.panics()[0],
        "dispatcher: the board's member list exploded"
    );
    // The worker that panicked goes on: the next command runs to its end.
    pipeline
        .accept("board:m-10", &command("ana", "fix the flaky test"))
        .await
        .expect("stored");
    let mut seen = Vec::new();
    feed.until(
        &harness,
        &mut seen,
        |s| matches!(s, Said::Status(t) if t.starts_with("✅ Done")),
    )
    .await;
}

#[tokio::test]
async fn a_command_whose_handling_panics_is_parked_and_its_thread_told() {
    use futures_util::FutureExt;
    let (harness, mut feed) = board(Drive::Caller).await;
    let pipeline = harness.pipeline();
    let mut crash = command("crasher", "fix it");
    if let Origin::Custom(origin) = &mut crash.origin {
        origin.thread = "topic-9".into();
    }
    pipeline.accept("board:m-9", &crash).await.expect("stored");
    let panic = std::panic::AssertUnwindSafe(harness.run_until_idle())
        .catch_unwind()
        .await
        .expect_err("the step panics");
    assert_eq!(
        panic.downcast_ref::<&str>(),
        Some(&"the board's member list exploded")
    );
    // Put aside, not taken again: the next rounds do not panic, and its thread hears why.
    let mut seen = Vec::new();
    let told = feed
        .until(&harness, &mut seen, |s| matches!(s, Said::Reply(_)))
        .await;
    assert!(
        matches!(&told, Said::Reply(t) if t.starts_with("~crasher, sorry: something went wrong inside ozbridge") && t.contains("ozbridge admin retry")),
        "{told:?}"
    );
    let parked = harness.store().parked().await.expect("store readable");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0]
            .reason
            .contains("panicked: the board's member list exploded"),
        "{parked:?}"
    );
    harness.settle().await;
    assert!(harness.sim.create_requests().is_empty(), "nothing started");
}
