//! The Oz client against the simulator: every operation, the error shape, and the
//! retry policy (idempotent calls retried, creates never).

use ozbridge::clock::Clock;
use ozbridge::ids::OzRunId;
use ozbridge::oz::types::{RunAgentRequest, RunState};
use ozbridge::oz::{ListAgentsQuery, ListRunsQuery, OzClient, OzError};
use ozbridge::retry::Backoff;
use ozbridge::testkit::oz::{Fault, FaultKind, OzSim, Scenario};
use secrecy::SecretString;
use std::time::Duration;

async fn setup() -> (OzSim, OzClient) {
    setup_with(Clock::system()).await
}

/// A simulator whose runs advance by `clock`, and a client of it.
async fn setup_with(clock: Clock) -> (OzSim, OzClient) {
    ozbridge::install_crypto();
    let sim = OzSim::new(Duration::from_millis(50))
        .with_api_key("k")
        .with_clock(clock);
    let base = sim
        .serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    let backoff = Backoff {
        attempts: 3,
        base: Duration::from_millis(20),
        max: Duration::from_secs(2),
    };
    let client = OzClient::new(
        &base,
        SecretString::from("k".to_owned()),
        Duration::from_secs(5),
        backoff,
    )
    .unwrap();
    (sim, client)
}

fn request(prompt: &str) -> RunAgentRequest {
    RunAgentRequest {
        prompt: Some(prompt.into()),
        config: Some(ozbridge::oz::types::AgentConfig {
            name: Some("label-a".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_operation_answers_as_specified() {
    let clock = Clock::held();
    let (sim, oz) = setup_with(clock.clone()).await;
    sim.push_scenario(Scenario::Artifacts);
    let created = oz
        .create_run(&request("first [sim:artifacts]"))
        .await
        .unwrap();
    assert_eq!(created.state, RunState::Queued);
    let alias = oz.run_agent(&request("second")).await.unwrap();
    assert_ne!(created.run_id, alias.run_id);
    // Past every step of the scripted run.
    clock.advance(Duration::from_millis(300));

    let run = oz.get_run(&created.run_id).await.unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    assert!(run.session_link.is_some());
    assert_eq!(run.artifacts.len(), 4);

    let conversation = oz.get_run_conversation(&created.run_id).await.unwrap();
    assert!(
        conversation
            .last_assistant_text()
            .unwrap()
            .contains("opened a pull request")
    );
    let same = oz
        .get_conversation(&conversation.conversation_id)
        .await
        .unwrap();
    assert_eq!(same, conversation);

    let transcript = oz.get_transcript_url(&created.run_id).await.unwrap();
    assert!(
        transcript.starts_with("https://storage.oz-sim.invalid/transcripts/"),
        "{transcript}"
    );

    let models = oz.list_models().await.unwrap();
    assert!(
        models
            .models
            .iter()
            .any(|m| m.id == models.default_model_id)
    );
    let agents = oz
        .list_agents(&ListAgentsQuery {
            repo: Some("acme/agents".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!agents.agents.is_empty());
    let bad_repo = oz
        .list_agents(&ListAgentsQuery {
            repo: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_repo.status(), Some(400));

    let screenshot = run.artifacts.iter().find_map(|a| match a {
        ozbridge::oz::types::Artifact::Screenshot { data, .. } => Some(data.artifact_uid.clone()),
        _ => None,
    });
    let artifact = oz.get_artifact(&screenshot.unwrap()).await.unwrap();
    assert!(artifact.download_url().is_some());

    let session = run.session_id.clone().unwrap();
    let redirect = oz.get_session_redirect(&session).await.unwrap();
    assert_eq!(redirect.conversation_id, run.conversation_id);
}

#[tokio::test]
async fn list_filters_and_cursor_paging() {
    let (sim, oz) = setup().await;
    for i in 0..7 {
        oz.create_run(&request(&format!("job {i}"))).await.unwrap();
    }
    sim.push_scenario(Scenario::Endless);
    let mut other = request("elsewhere");
    other.config = Some(ozbridge::oz::types::AgentConfig {
        name: Some("label-b".into()),
        ..Default::default()
    });
    oz.create_run(&other).await.unwrap();

    let mut query = ListRunsQuery {
        name: Some("label-a".into()),
        limit: Some(3),
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = oz.list_runs(&query).await.unwrap();
        assert!(page.runs.len() <= 3);
        seen.extend(page.runs.into_iter().map(|r| r.run_id));
        let Some(cursor) = page.page_info.next() else {
            break;
        };
        query.cursor = Some(cursor);
    }
    assert_eq!(
        seen.len(),
        7,
        "three pages of the label's runs, nothing from the other label"
    );
    let found = oz
        .list_runs(&ListRunsQuery {
            q: Some("job 4".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.runs.len(), 1);
    let queued = oz
        .list_runs(&ListRunsQuery {
            states: vec![RunState::Queued, RunState::InProgress],
            name: Some("label-b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(queued.runs.len(), 1);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = oz
        .list_runs(&ListRunsQuery {
            updated_after: Some(future),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.runs.is_empty());
    let too_many = oz
        .list_runs(&ListRunsQuery {
            limit: Some(501),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.status(), Some(400));
}

#[tokio::test]
async fn errors_are_rfc7807_problems() {
    let (_sim, oz) = setup().await;
    let error = oz
        .create_run(&RunAgentRequest::default())
        .await
        .unwrap_err();
    let OzError::Api {
        status, problem, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, 400);
    assert_eq!(problem.error, "invalid_request");
    assert_eq!(problem.retryable, Some(false));
    assert!(problem.trace_id.is_some());
    assert!(!error.is_retryable());
    let missing = oz.get_run(&OzRunId("nope".into())).await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    let unauthorized = OzClient::new(
        &oz_base(&oz),
        SecretString::from("wrong".to_owned()),
        Duration::from_secs(5),
        Backoff::default(),
    )
    .unwrap()
    .list_models()
    .await
    .unwrap_err();
    assert_eq!(unauthorized.status(), Some(401));
}

fn oz_base(client: &OzClient) -> String {
    // The Debug output names the base URL (never the key).
    let debug = format!("{client:?}");
    assert!(!debug.contains("\"k\""));
    debug.split('"').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn cancel_answers_400_409_and_422() {
    let clock = Clock::held();
    let (sim, oz) = setup_with(clock.clone()).await;
    sim.push_scenario(Scenario::SlowStart);
    let pending = oz.create_run(&request("slow")).await.unwrap();
    let conflict = oz.cancel_run(&pending.run_id).await.unwrap_err();
    assert_eq!(conflict.status(), Some(409));
    assert!(conflict.is_retryable());
    sim.push_scenario(Scenario::Unsupported);
    let local = oz.create_run(&request("local")).await.unwrap();
    clock.advance(Duration::from_millis(80));
    assert_eq!(
        oz.cancel_run(&local.run_id).await.unwrap_err().status(),
        Some(422)
    );
    sim.push_scenario(Scenario::Endless);
    let endless = oz.create_run(&request("endless")).await.unwrap();
    assert_eq!(
        oz.cancel_run(&endless.run_id).await.unwrap(),
        endless.run_id.to_string()
    );
    assert_eq!(
        oz.get_run(&endless.run_id).await.unwrap().state,
        RunState::Cancelled
    );
    assert_eq!(
        oz.cancel_run(&endless.run_id).await.unwrap_err().status(),
        Some(400)
    );
}

#[tokio::test]
async fn reads_are_retried_and_creates_are_not() {
    let (sim, oz) = setup().await;
    sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: "/agent/models".into(),
        kind: FaultKind::Status(503),
        times: 1,
    });
    sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: "/agent/models".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 1,
        },
        times: 1,
    });
    let started = std::time::Instant::now();
    oz.list_models().await.unwrap();
    assert_eq!(sim.calls("GET /agent/models"), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );

    sim.inject(Fault {
        method: Some(reqwest::Method::POST),
        path_prefix: "/agent/runs".into(),
        kind: FaultKind::Status(500),
        times: 1,
    });
    let error = oz.create_run(&request("once")).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(
        sim.calls("POST /agent/runs"),
        1,
        "a create is never retried blindly"
    );

    sim.inject(Fault {
        method: Some(reqwest::Method::GET),
        path_prefix: "/agent/models".into(),
        kind: FaultKind::RateLimited {
            retry_after_secs: 60,
        },
        times: 1,
    });
    let long = oz.list_models().await.unwrap_err();
    assert_eq!(
        long.retry_after(),
        Some(Duration::from_secs(60)),
        "a long pause is left to the caller"
    );

    sim.inject(Fault {
        method: None,
        path_prefix: "/agent/models".into(),
        kind: FaultKind::Delay(Duration::from_secs(3)),
        times: 3,
    });
    let slow = OzClient::new(
        &oz_base(&oz),
        SecretString::from("k".to_owned()),
        Duration::from_millis(300),
        Backoff {
            attempts: 1,
            ..Backoff::default()
        },
    )
    .unwrap();
    assert!(matches!(
        slow.list_models().await.unwrap_err(),
        OzError::Timeout
    ));
}
