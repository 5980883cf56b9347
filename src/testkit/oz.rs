//! In-crate Oz API simulator: the same 12 operations, request validation as the spec
//! says, scripted run progressions, list filters with cursors, and injectable faults.
//! Served by `ozbridge sim-oz`, and used in-process by the demo, tests and benchmarks.

use crate::ids::{ConversationId, OzRunId};
use crate::oz::types::*;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How a simulated run unfolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// QUEUED, INPROGRESS with a session, a pull request, SUCCEEDED with a summary.
    Succeed,
    /// Like `Succeed`, plus plan, screenshot and file artifacts.
    Artifacts,
    /// Ends FAILED with a user error that retrying will not fix.
    Fail,
    /// Ends ERROR with a retryable platform error.
    Error,
    /// Stops in BLOCKED, waiting for a human.
    Blocked,
    /// Stays PENDING (cancel answers 409) for ten steps, then runs until cancelled.
    SlowStart,
    /// Runs forever in INPROGRESS (until cancelled).
    Endless,
    /// Runs forever; cancel answers 422 as for a self-hosted run.
    Unsupported,
}

impl Scenario {
    /// Picks a scenario from a `[sim:NAME]` marker in the prompt.
    pub fn from_prompt(prompt: &str) -> Option<Self> {
        let start = prompt.find("[sim:")? + 5;
        let end = prompt[start..].find(']')? + start;
        Some(match &prompt[start..end] {
            "succeed" => Self::Succeed,
            "artifacts" => Self::Artifacts,
            "fail" => Self::Fail,
            "error" => Self::Error,
            "blocked" => Self::Blocked,
            "slow-start" => Self::SlowStart,
            "endless" => Self::Endless,
            "unsupported" => Self::Unsupported,
            _ => return None,
        })
    }
}

/// The work a succeeding simulated run reports in its conversation: the issue read,
/// the fix made (commands run, files edited), the pull request opened when `done`.
fn work_steps(done: bool) -> Vec<ConversationStep> {
    let step = |description: &str, finished: bool, actions: &[&str]| ConversationStep {
        id: description.to_lowercase().replace(' ', "-"),
        description: Some(description.into()),
        summary: finished.then(|| format!("{description}: done")),
        started_at: None,
        completed_at: None,
        messages: vec![ConversationMessage {
            message_ids: None,
            request_id: None,
            role: MessageRole::Assistant,
            timestamp: None,
            content: actions
                .iter()
                .map(|name| {
                    ContentBlock::Other(serde_json::json!({
                        "type": "action", "id": name, "category": "command",
                        "name": name, "input": {}
                    }))
                })
                .collect(),
        }],
        steps: Vec::new(),
    };
    vec![
        step("Read the issue and the failing test", true, &["read_files"]),
        step(
            "Fix the cause",
            done,
            &["run_command", "edit_files", "run_command"],
        ),
        step("Open a pull request", done, &[]),
    ]
}

/// What each step of a simulated run adds to its `request_usage`.
pub const SIM_STEP_INFERENCE_COST: f64 = 0.02;
pub const SIM_STEP_COMPUTE_COST: f64 = 0.01;

/// A fault the simulator answers with instead of the real answer.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// An error status with a problem body (`retryable` true for 5xx).
    Status(u16),
    /// 429 with `Retry-After` in seconds.
    RateLimited { retry_after_secs: u64 },
    /// Answer normally, but only after this pause.
    Delay(Duration),
    /// Create the run, then answer 500 as if the reply was lost.
    CreateThenFail,
    /// Carry the request out at once, but answer only after this pause.
    SlowAnswer(Duration),
    /// Carry the request out only after this pause, even when the client has given up
    /// waiting (it was queued behind the API): the answer comes too late to be read.
    LateCommit(Duration),
    /// Carry the request out at once, but answer only once the test opens the gate (an
    /// answer that arrives after later ones).
    HeldAnswer(Gate),
}

/// Holds back an answer ([`FaultKind::HeldAnswer`]) until a test opens it.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    reached: Arc<tokio::sync::Notify>,
    opened: Arc<tokio::sync::Notify>,
}

impl Gate {
    /// Waits until a request's answer is held at the gate (it was carried out).
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held answer go.
    pub fn open(&self) {
        self.opened.notify_one();
    }
}

/// A fault for the next `times` requests whose method and path match.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<Method>,
    /// Matches when the request path (below the base) starts with it.
    pub path_prefix: String,
    pub kind: FaultKind,
    pub times: u32,
}

#[derive(Debug, Clone)]
enum Step {
    State(RunState),
    Session,
    Artifact(Artifact),
    Status(RunStatusMessage),
    Summary(String),
    /// The agent's work so far: steps nested in the run's own step of its conversation.
    Work(Vec<ConversationStep>),
}

#[derive(Debug)]
struct SimRun {
    item: RunItem,
    scenario: Scenario,
    script: VecDeque<(DateTime<Utc>, Step)>,
}

#[derive(Debug, Default)]
struct SimState {
    runs: Vec<SimRun>,
    index: HashMap<OzRunId, usize>,
    conversations: HashMap<ConversationId, ConversationResponse>,
    faults: Vec<Fault>,
    next_scenarios: VecDeque<Scenario>,
    calls: BTreeMap<String, u64>,
    /// When each call of an operation came (on the simulator's clock), in order.
    call_times: BTreeMap<String, Vec<crate::clock::Millis>>,
    requests: Vec<RunAgentRequest>,
    counter: u64,
}

/// The simulator. Clones share state.
#[derive(Clone)]
pub struct OzSim {
    state: Arc<Mutex<SimState>>,
    step: Duration,
    api_key: Option<String>,
    public_base: Arc<Mutex<String>>,
    /// Random faults, off until enabled.
    pub chaos: crate::testkit::chaos::Chaos,
    /// The time runs advance by (the system's unless a test holds it).
    clock: crate::clock::Clock,
}

impl OzSim {
    /// A simulator whose scripted runs advance one step every `step`.
    pub fn new(step: Duration) -> Self {
        Self {
            state: Arc::default(),
            step,
            api_key: None,
            public_base: Arc::new(Mutex::new("http://oz-sim.invalid/api/v1".into())),
            chaos: crate::testkit::chaos::Chaos::default(),
            clock: crate::clock::Clock::system(),
        }
    }

    /// Runs advance by `clock`: with a held clock, only when the test moves it.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Requires this exact bearer token (any non-empty token is accepted otherwise).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The router serving the API below `/api/v1`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/agent", get(list_agents))
            .route("/agent/run", post(create_run))
            .route("/agent/runs", post(create_run).get(list_runs))
            .route("/agent/runs/{id}", get(get_run))
            .route("/agent/runs/{id}/cancel", post(cancel_run))
            .route("/agent/runs/{id}/conversation", get(run_conversation))
            .route("/agent/runs/{id}/transcript", get(transcript))
            .route("/agent/conversations/{id}", get(conversation))
            .route("/agent/models", get(list_models))
            .route("/agent/artifacts/{uid}", get(artifact))
            .route("/agent/sessions/{uuid}/redirect", get(session_redirect))
            .fallback(|| async {
                problem(
                    StatusCode::NOT_FOUND,
                    "resource_not_found",
                    "No such route",
                    false,
                )
            })
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate))
            .layer(axum::middleware::from_fn_with_state(
                self.chaos.clone(),
                crate::testkit::chaos::gate,
            ));
        Router::new().nest("/api/v1", api).with_state(self.clone())
    }

    /// Serves the simulator on `listener`; returns the API base URL.
    pub async fn serve(&self, listener: tokio::net::TcpListener) -> anyhow::Result<String> {
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}/api/v1");
        *lock(&self.public_base) = base.clone();
        let router = self.router();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "Oz simulator stopped");
            }
        });
        Ok(base)
    }

    /// Uses `scenario` for the next created run (queued, first in first out).
    pub fn push_scenario(&self, scenario: Scenario) {
        lock(&self.state).next_scenarios.push_back(scenario);
    }

    /// Adds a fault. Its `path_prefix` is below the API base (`/agent/runs`); a prefix
    /// written with the base (`/api/v1/agent/runs`) means the same.
    pub fn inject(&self, mut fault: Fault) {
        if let Some(below) = fault.path_prefix.strip_prefix("/api/v1") {
            fault.path_prefix = below.to_owned();
        }
        lock(&self.state).faults.push(fault);
    }

    /// Removes every injected fault (an outage ends).
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Injected faults not yet used up (a test can check that its faults really fired).
    pub fn faults_pending(&self) -> u32 {
        lock(&self.state).faults.iter().map(|f| f.times).sum()
    }

    /// How many requests each operation (`METHOD /path-pattern`) has received.
    pub fn calls(&self, operation: &str) -> u64 {
        lock(&self.state).calls.get(operation).copied().unwrap_or(0)
    }

    /// When each call of `operation` came on the simulator's clock, oldest first.
    pub fn call_times(&self, operation: &str) -> Vec<crate::clock::Millis> {
        lock(&self.state)
            .call_times
            .get(operation)
            .cloned()
            .unwrap_or_default()
    }

    /// Every create request received, in order.
    pub fn create_requests(&self) -> Vec<RunAgentRequest> {
        lock(&self.state).requests.clone()
    }

    /// The current view of a run.
    pub fn run(&self, id: &OzRunId) -> Option<RunItem> {
        let mut state = lock(&self.state);
        state.advance(self.clock.now());
        state.index.get(id).map(|&i| state.runs[i].item.clone())
    }

    /// Marks a run as changed now (its `updated_at` moves), as any change at Oz would.
    pub fn touch(&self, id: &OzRunId) {
        let mut state = lock(&self.state);
        state.advance(self.clock.now());
        if let Some(&i) = state.index.get(id) {
            state.runs[i].item.updated_at = self.clock.now().max(state.runs[i].item.updated_at);
        }
    }

    /// The run moves to `state` now, as if its agent got there (for benchmarks of how
    /// soon a change reaches the thread).
    pub fn set_state(&self, id: &OzRunId, state: RunState) {
        let now = self.clock.now();
        let mut state_now = lock(&self.state);
        state_now.advance(now);
        if let Some(&i) = state_now.index.get(id) {
            let item = &mut state_now.runs[i].item;
            item.state = state;
            item.updated_at = now.max(item.updated_at + chrono::Duration::milliseconds(1));
        }
    }

    /// Every call answered so far, all operations together.
    pub fn total_calls(&self) -> u64 {
        lock(&self.state).calls.values().sum()
    }

    /// Ids of the runs created, oldest first.
    pub fn run_ids(&self) -> Vec<OzRunId> {
        lock(&self.state)
            .runs
            .iter()
            .map(|r| r.item.run_id.clone())
            .collect()
    }

    /// The agent of `run` does work: `steps` are nested under the run's own step of its
    /// conversation, and the run counts as updated now (as Oz's list then reports it).
    pub fn add_steps(&self, run: &OzRunId, steps: Vec<ConversationStep>) {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let Some(conversation_id) = state
            .runs
            .iter_mut()
            .find(|r| r.item.run_id == *run)
            .and_then(|r| {
                // A change moves updated_at, even within the same moment.
                r.item.updated_at = now.max(r.item.updated_at + chrono::Duration::milliseconds(1));
                r.item.conversation_id.clone()
            })
        else {
            return;
        };
        if let Some(own) = state
            .conversations
            .get_mut(&conversation_id)
            .and_then(|c| c.steps.last_mut())
        {
            own.steps.extend(steps);
        }
    }

    /// Number of runs created.
    pub fn run_count(&self) -> usize {
        lock(&self.state).runs.len()
    }

    fn build_script(&self, scenario: Scenario, run: &RunItem) -> VecDeque<(DateTime<Utc>, Step)> {
        let step = chrono::Duration::from_std(self.step).unwrap_or(chrono::Duration::seconds(1));
        let at = |n: i32| run.created_at + step * n;
        let pr = Step::Artifact(Artifact::PullRequest {
            created_at: None,
            data: PullRequestArtifactData {
                url: format!(
                    "https://github.com/acme/widgets/pull/{}",
                    100 + run.task_id.len()
                ),
                branch: format!("oz/fix-{}", run.task_id.trim_start_matches("task-")),
            },
        });
        let summary = Step::Summary(format!(
            "I looked into \"{}\", made the change and opened a pull request. All tests pass.",
            run.title
        ));
        let mut script: Vec<(DateTime<Utc>, Step)> = Vec::new();
        let mut n = 1;
        if scenario == Scenario::SlowStart {
            script.push((at(0), Step::State(RunState::Pending)));
            n = 10;
        }
        script.push((at(n), Step::Session));
        script.push((at(n), Step::State(RunState::InProgress)));
        match scenario {
            Scenario::Succeed => {
                script.push((at(n), Step::Work(work_steps(false))));
                script.push((at(n + 1), Step::Work(work_steps(true))));
                script.push((at(n + 1), pr));
                script.push((at(n + 2), summary));
                script.push((at(n + 2), Step::State(RunState::Succeeded)));
            }
            Scenario::Artifacts => {
                let uid = |k: &str| format!("{k}-{}", run.run_id);
                script.push((
                    at(n + 1),
                    Step::Artifact(Artifact::Plan {
                        created_at: None,
                        data: PlanArtifactData {
                            document_uid: uid("doc"),
                            url: Some(format!(
                                "https://app.warp.dev/drive/notebook/{}",
                                uid("plan")
                            )),
                            title: Some("Fix plan".into()),
                            ..PlanArtifactData::default()
                        },
                    }),
                ));
                script.push((
                    at(n + 1),
                    Step::Artifact(Artifact::Screenshot {
                        created_at: None,
                        data: ScreenshotArtifactData {
                            artifact_uid: uid("shot"),
                            mime_type: "image/png".into(),
                        },
                    }),
                ));
                script.push((
                    at(n + 1),
                    Step::Artifact(Artifact::File {
                        created_at: None,
                        data: FileArtifactData {
                            artifact_uid: uid("file"),
                            filepath: "reports/flaky.md".into(),
                            filename: "flaky.md".into(),
                            mime_type: "text/markdown".into(),
                            size_bytes: Some(1204),
                        },
                    }),
                ));
                script.push((at(n + 2), pr));
                script.push((at(n + 3), summary));
                script.push((at(n + 3), Step::State(RunState::Succeeded)));
            }
            Scenario::Fail => {
                script.push((
                    at(n + 1),
                    Step::Status(RunStatusMessage {
                        message: "The agent could not find the test named in the request.".into(),
                        error_code: Some(PlatformErrorCode::InvalidRequest),
                        retryable: Some(false),
                    }),
                ));
                script.push((at(n + 1), Step::State(RunState::Failed)));
            }
            Scenario::Error => {
                script.push((
                    at(n + 1),
                    Step::Status(RunStatusMessage {
                        message: "The environment could not be set up: image pull timed out."
                            .into(),
                        error_code: Some(PlatformErrorCode::EnvironmentSetupFailed),
                        retryable: Some(true),
                    }),
                ));
                script.push((at(n + 1), Step::State(RunState::Error)));
            }
            Scenario::Blocked => {
                script.push((
                    at(n + 1),
                    Step::Status(RunStatusMessage {
                        message: "Approval needed to run `npm publish`.".into(),
                        error_code: None,
                        retryable: None,
                    }),
                ));
                script.push((at(n + 1), Step::State(RunState::Blocked)));
            }
            Scenario::SlowStart | Scenario::Endless | Scenario::Unsupported => {}
        }
        script.into()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the simulator's plain data half-written
    // in a way that matters to a test, so poisoning is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    fn advance(&mut self, now: DateTime<Utc>) {
        for run in &mut self.runs {
            while let Some((at, _)) = run.script.front() {
                if *at > now {
                    break;
                }
                let Some((at, step)) = run.script.pop_front() else {
                    break;
                };
                let item = &mut run.item;
                item.updated_at = at.max(item.updated_at);
                // Every step costs: a little inference and a little compute.
                let spent = item.request_usage.unwrap_or_default();
                item.request_usage = Some(RequestUsage {
                    inference_cost: Some(
                        spent.inference_cost.unwrap_or(0.0) + SIM_STEP_INFERENCE_COST,
                    ),
                    compute_cost: Some(spent.compute_cost.unwrap_or(0.0) + SIM_STEP_COMPUTE_COST),
                });
                match step {
                    Step::State(state) => {
                        if state == RunState::InProgress && item.started_at.is_none() {
                            item.started_at = Some(at);
                        }
                        item.state = state;
                    }
                    Step::Session => {
                        let session = format!("sess-{}", item.run_id);
                        item.session_link = Some(format!("https://app.warp.dev/session/{session}"));
                        item.session_id = Some(session);
                        item.is_sandbox_running = Some(true);
                    }
                    Step::Artifact(artifact) => item.artifacts.push(artifact),
                    Step::Status(message) => item.status_message = Some(message),
                    Step::Work(steps) => {
                        if let Some(own) = item
                            .conversation_id
                            .as_ref()
                            .and_then(|id| self.conversations.get_mut(id))
                            .and_then(|c| c.steps.last_mut())
                        {
                            own.steps = steps;
                        }
                    }
                    Step::Summary(text) => {
                        if let Some(conversation) = item
                            .conversation_id
                            .as_ref()
                            .and_then(|id| self.conversations.get_mut(id))
                        {
                            conversation.steps.push(ConversationStep {
                                id: format!("step-{}", conversation.steps.len() + 1),
                                description: None,
                                summary: None,
                                started_at: Some(at),
                                completed_at: Some(at),
                                messages: vec![ConversationMessage {
                                    message_ids: None,
                                    request_id: None,
                                    role: MessageRole::Assistant,
                                    timestamp: Some(at),
                                    content: vec![ContentBlock::Text { text }],
                                }],
                                steps: Vec::new(),
                            });
                        }
                    }
                }
                if item.state.is_terminal() {
                    item.is_sandbox_running = Some(false);
                }
            }
        }
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<FaultKind> {
        let position = self.faults.iter().position(|f| {
            f.times > 0
                && f.method.as_ref().is_none_or(|m| m == method)
                && path.starts_with(&f.path_prefix)
        })?;
        let fault = &mut self.faults[position];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(position);
        }
        Some(kind)
    }
}

fn problem(status: StatusCode, code: &str, detail: &str, retryable: bool) -> Response {
    let body = Problem {
        type_uri: format!(
            "https://docs.warp.dev/reference/api-and-sdk/troubleshooting/errors/{code}"
        ),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: Some(detail.to_owned()),
        instance: None,
        error: code.to_owned(),
        retryable: Some(retryable),
        trace_id: Some(format!("trace-{}", fastrand::u64(..))),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        serde_json::to_string(&body).unwrap_or_default(),
    )
        .into_response()
}

/// Authentication, call counting and fault injection in front of every operation.
async fn gate(
    State(sim): State<OzSim>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let authorized = !token.is_empty() && sim.api_key.as_ref().is_none_or(|key| *key == token);
    let fault = {
        let mut state = lock(&sim.state);
        let operation = operation_name(&method, &path);
        state
            .call_times
            .entry(operation.clone())
            .or_default()
            .push(sim.clock.now_ms());
        *state.calls.entry(operation).or_default() += 1;
        if authorized {
            state.take_fault(&method, &path)
        } else {
            None
        }
    };
    if !authorized {
        return problem(
            StatusCode::UNAUTHORIZED,
            "authentication_required",
            "A valid API key is required.",
            false,
        );
    }
    match fault {
        None => next.run(request).await,
        Some(FaultKind::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            problem(
                status,
                "internal_error",
                "Injected fault.",
                status.is_server_error(),
            )
        }
        Some(FaultKind::RateLimited { retry_after_secs }) => {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests.",
                true,
            );
            if let Ok(value) = retry_after_secs.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Some(FaultKind::Delay(pause)) => {
            tokio::time::sleep(pause).await;
            next.run(request).await
        }
        Some(FaultKind::SlowAnswer(pause)) => {
            let answer = next.run(request).await;
            tokio::time::sleep(pause).await;
            answer
        }
        Some(FaultKind::HeldAnswer(gate)) => {
            let answer = next.run(request).await;
            gate.reached.notify_one();
            gate.opened.notified().await;
            answer
        }
        Some(FaultKind::LateCommit(pause)) => {
            // A task of its own, so a client that gives up does not stop it.
            let work = tokio::spawn(async move {
                tokio::time::sleep(pause).await;
                next.run(request).await
            });
            work.await.unwrap_or_else(|_| {
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Injected fault.",
                    true,
                )
            })
        }
        Some(FaultKind::CreateThenFail) => {
            let _created = next.run(request).await;
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Injected fault after commit.",
                true,
            )
        }
    }
}

/// `GET /agent/runs/{id}` style names for call counting.
fn operation_name(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches("/api/v1").split('/').collect();
    let generic: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let parent = if i > 0 { parts[i - 1] } else { "" };
            if matches!(parent, "runs" | "conversations" | "artifacts" | "sessions") {
                "{id}"
            } else {
                part
            }
        })
        .collect();
    format!("{method} {}", generic.join("/"))
}

async fn create_run(
    State(sim): State<OzSim>,
    body: Result<Json<RunAgentRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body is not a valid RunAgentRequest.",
            false,
        );
    };
    let has_prompt = request
        .prompt
        .as_deref()
        .is_some_and(|p| !p.trim().is_empty());
    let has_skill = request.skill.is_some()
        || request
            .config
            .as_ref()
            .and_then(|c| c.skill_spec.as_ref())
            .is_some();
    if !has_prompt && !has_skill {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Either prompt or skill is required.",
            false,
        );
    }
    if let Some(minutes) = request.config.as_ref().and_then(|c| c.idle_timeout_minutes)
        && !(1..=60).contains(&minutes)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "idle_timeout_minutes must be 1 to 60.",
            false,
        );
    }
    let now = sim.clock.now();
    let mut state = lock(&sim.state);
    if let Some(id) = &request.conversation_id
        && !state.conversations.contains_key(id)
    {
        return problem(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            "Conversation not found.",
            false,
        );
    }
    state.counter += 1;
    let run_id = OzRunId(format!(
        "run-{:06}-{}",
        state.counter,
        &crate::ids::new_uuid()[..8]
    ));
    let conversation_id = request
        .conversation_id
        .clone()
        .unwrap_or_else(|| ConversationId(format!("conv-{}", crate::ids::new_uuid())));
    let prompt = request.prompt.clone().unwrap_or_default();
    let conversation = state
        .conversations
        .entry(conversation_id.clone())
        .or_insert_with(|| ConversationResponse {
            conversation_id: conversation_id.clone(),
            steps: Vec::new(),
        });
    conversation.steps.push(ConversationStep {
        id: format!("step-{}", conversation.steps.len() + 1),
        description: Some(prompt.clone()),
        summary: None,
        started_at: Some(now),
        completed_at: None,
        messages: vec![ConversationMessage {
            message_ids: None,
            request_id: None,
            role: MessageRole::User,
            timestamp: Some(now),
            content: vec![ContentBlock::Text {
                text: prompt.clone(),
            }],
        }],
        steps: Vec::new(),
    });
    let scenario = state
        .next_scenarios
        .pop_front()
        .or_else(|| Scenario::from_prompt(&prompt))
        .unwrap_or(Scenario::Succeed);
    let item = RunItem {
        run_id: run_id.clone(),
        task_id: format!("task-{}", state.counter),
        title: request
            .title
            .clone()
            .unwrap_or_else(|| prompt.chars().take(60).collect()),
        state: RunState::Queued,
        execution_location: Some(RunExecutionLocation::Remote),
        prompt,
        created_at: now,
        updated_at: now,
        started_at: None,
        status_message: None,
        source: Some(RunSourceType::Api),
        schedule: None,
        session_id: None,
        session_link: None,
        trigger_url: None,
        creator: None,
        request_usage: None,
        agent_config: request.config.clone(),
        conversation_id: Some(conversation_id),
        parent_run_id: request.parent_run_id.clone(),
        is_sandbox_running: Some(false),
        artifacts: Vec::new(),
        agent_skill: None,
        scope: None,
    };
    let script = sim.build_script(scenario, &item);
    let response = RunAgentResponse {
        run_id: run_id.clone(),
        task_id: item.task_id.clone(),
        state: RunState::Queued,
        at_capacity: Some(false),
    };
    let index = state.runs.len();
    state.runs.push(SimRun {
        item,
        scenario,
        script,
    });
    state.index.insert(run_id, index);
    state.requests.push(request);
    Json(response).into_response()
}

#[derive(Debug, Default)]
struct ListParams {
    pairs: Vec<(String, String)>,
}

impl ListParams {
    fn one(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

async fn list_runs(State(sim): State<OzSim>, RawQuery(raw): RawQuery) -> Response {
    let params = ListParams {
        pairs: url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    };
    let limit = match params.one("limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "limit must be 1 to 500.",
                false,
            );
        }
    };
    // `Err(key)` names the malformed parameter.
    let time = |key: &'static str| -> Result<Option<DateTime<Utc>>, &'static str> {
        params
            .one(key)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| key)
            })
            .transpose()
    };
    let (created_after, created_before, updated_after) = match (
        time("created_after"),
        time("created_before"),
        time("updated_after"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(key), _, _) | (_, Err(key), _) | (_, _, Err(key)) => {
            let detail = format!("{key} must be RFC 3339.");
            return problem(StatusCode::BAD_REQUEST, "invalid_request", &detail, false);
        }
    };
    let offset = match params
        .one("cursor")
        .map(|c| c.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
    {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Unknown cursor.",
                false,
            );
        }
    };
    let states: Vec<RunState> = params
        .all("state")
        .into_iter()
        .map(RunState::parse)
        .collect();
    let name = params.one("name");
    let q = params.one("q").map(str::to_lowercase);
    let mut state = lock(&sim.state);
    state.advance(sim.clock.now());
    let mut runs: Vec<&RunItem> = state
        .runs
        .iter()
        .map(|r| &r.item)
        .filter(|r| states.is_empty() || states.contains(&r.state))
        .filter(|r| {
            name.is_none_or(|n| r.agent_config.as_ref().and_then(|c| c.name.as_deref()) == Some(n))
        })
        .filter(|r| created_after.is_none_or(|t| r.created_at > t))
        .filter(|r| created_before.is_none_or(|t| r.created_at < t))
        .filter(|r| updated_after.is_none_or(|t| r.updated_at > t))
        .filter(|r| {
            q.as_ref().is_none_or(|q| {
                r.title.to_lowercase().contains(q.as_str())
                    || r.prompt.to_lowercase().contains(q.as_str())
            })
        })
        .collect();
    let by_created = params.one("sort_by") == Some("created_at");
    runs.sort_by(|a, b| {
        let key = |r: &RunItem| {
            if by_created {
                r.created_at
            } else {
                r.updated_at
            }
        };
        key(a).cmp(&key(b)).then_with(|| a.run_id.cmp(&b.run_id))
    });
    if params.one("sort_order") != Some("asc") {
        runs.reverse();
    }
    let page: Vec<RunItem> = runs
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| (*r).clone())
        .collect();
    let has_next_page = offset + page.len() < runs.len();
    Json(ListRunsResponse {
        page_info: PageInfo {
            has_next_page,
            next_cursor: has_next_page.then(|| format!("o:{}", offset + page.len())),
        },
        runs: page,
    })
    .into_response()
}

fn not_found(what: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "resource_not_found",
        &format!("{what} not found."),
        false,
    )
}

async fn get_run(State(sim): State<OzSim>, Path(id): Path<String>) -> Response {
    match sim.run(&OzRunId(id)) {
        Some(run) => Json(run).into_response(),
        None => not_found("Run"),
    }
}

async fn cancel_run(State(sim): State<OzSim>, Path(id): Path<String>) -> Response {
    let mut state = lock(&sim.state);
    state.advance(sim.clock.now());
    let Some(&index) = state.index.get(&OzRunId(id.clone())) else {
        return not_found("Run");
    };
    let run = &mut state.runs[index];
    if run.item.state.is_terminal() {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The run is already in a terminal state.",
            false,
        );
    }
    if run.item.state == RunState::Pending {
        return problem(
            StatusCode::CONFLICT,
            "conflict",
            "The run is PENDING and cannot be cancelled yet. Retry after a moment.",
            true,
        );
    }
    if run.scenario == Scenario::Unsupported {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "operation_not_supported",
            "Runs of this type cannot be cancelled.",
            false,
        );
    }
    run.script.clear();
    run.item.state = RunState::Cancelled;
    run.item.updated_at = sim.clock.now().max(run.item.updated_at);
    run.item.is_sandbox_running = Some(false);
    Json(id).into_response()
}

async fn run_conversation(State(sim): State<OzSim>, Path(id): Path<String>) -> Response {
    let conversation_id = sim.run(&OzRunId(id)).and_then(|r| r.conversation_id);
    match conversation_id.and_then(|c| lock(&sim.state).conversations.get(&c).cloned()) {
        Some(conversation) => Json(conversation).into_response(),
        None => not_found("Conversation"),
    }
}

async fn conversation(State(sim): State<OzSim>, Path(id): Path<String>) -> Response {
    lock(&sim.state).advance(sim.clock.now());
    match lock(&sim.state)
        .conversations
        .get(&ConversationId(id))
        .cloned()
    {
        Some(conversation) => Json(conversation).into_response(),
        None => not_found("Conversation"),
    }
}

async fn transcript(State(sim): State<OzSim>, Path(id): Path<String>) -> Response {
    if sim.run(&OzRunId(id.clone())).is_none() {
        return not_found("Run");
    }
    let location = format!("https://storage.oz-sim.invalid/transcripts/{id}.json");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn list_models() -> Response {
    let model = |id: &str, name: &str, provider: ModelProvider| ModelInfo {
        id: id.into(),
        display_name: name.into(),
        provider,
        vision_supported: true,
        reasoning_level: None,
        disable_reason: None,
    };
    Json(ListModelsResponse {
        default_model_id: "auto".into(),
        models: vec![
            model("auto", "Auto", ModelProvider::Unknown),
            model(
                "claude-4-sonnet",
                "Claude 4 Sonnet",
                ModelProvider::Anthropic,
            ),
            model("claude-4-opus", "Claude 4 Opus", ModelProvider::Anthropic),
            model("gpt-5", "GPT-5", ModelProvider::OpenAi),
            model("gemini-2.5-pro", "Gemini 2.5 Pro", ModelProvider::Google),
        ],
    })
    .into_response()
}

#[derive(serde::Deserialize)]
struct AgentsParams {
    repo: Option<String>,
}

async fn list_agents(Query(params): Query<AgentsParams>) -> Response {
    if let Some(repo) = &params.repo
        && !repo.contains('/')
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "repo must be owner/repo.",
            false,
        );
    }
    let variant = |id: &str, path: &str, description: &str| AgentListVariant {
        id: id.into(),
        description: description.into(),
        base_prompt: String::new(),
        source: AgentListSource {
            owner: "acme".into(),
            name: "agents".into(),
            skill_path: path.into(),
            worker_host: None,
        },
        environments: vec![AgentListEnvironment {
            uid: "env-default".into(),
            name: "default".into(),
        }],
        last_run_timestamp: None,
        error: None,
    };
    Json(ListAgentsResponse {
        agents: vec![
            AgentListItem {
                name: "triage".into(),
                variants: vec![variant(
                    "v-triage",
                    ".agents/skills/triage/SKILL.md",
                    "Triage an issue",
                )],
            },
            AgentListItem {
                name: "fix-flaky-test".into(),
                variants: vec![variant(
                    "v-flaky",
                    ".agents/skills/fix-flaky-test/SKILL.md",
                    "Fix a flaky test",
                )],
            },
        ],
    })
    .into_response()
}

async fn artifact(State(sim): State<OzSim>, Path(uid): Path<String>) -> Response {
    let mut state = lock(&sim.state);
    state.advance(sim.clock.now());
    let found = state
        .runs
        .iter()
        .flat_map(|r| r.item.artifacts.iter())
        .find_map(|a| match a {
            Artifact::Screenshot { data, .. } if data.artifact_uid == uid => {
                Some((ArtifactType::Screenshot, data.mime_type.clone(), None))
            }
            Artifact::File { data, .. } if data.artifact_uid == uid => Some((
                ArtifactType::File,
                data.mime_type.clone(),
                Some((data.filepath.clone(), data.filename.clone())),
            )),
            _ => None,
        });
    let Some((kind, content_type, file)) = found else {
        return not_found("Artifact");
    };
    let mut data = serde_json::json!({
        "download_url": format!("https://storage.oz-sim.invalid/artifacts/{uid}"),
        "expires_at": (sim.clock.now() + chrono::Duration::minutes(15)).to_rfc3339(),
        "content_type": content_type,
    });
    if let Some((filepath, filename)) = file {
        data["filepath"] = filepath.into();
        data["filename"] = filename.into();
    }
    Json(ArtifactResponse {
        artifact_uid: uid,
        artifact_type: kind,
        created_at: Some(sim.clock.now()),
        data,
    })
    .into_response()
}

async fn session_redirect(
    State(sim): State<OzSim>,
    Path(uuid): Path<String>,
    _headers: HeaderMap,
) -> Response {
    let state = lock(&sim.state);
    let conversation_id = state
        .runs
        .iter()
        .find(|r| r.item.session_id.as_deref() == Some(uuid.as_str()) && r.item.state.is_terminal())
        .and_then(|r| r.item.conversation_id.clone());
    Json(SessionRedirect { conversation_id }).into_response()
}
