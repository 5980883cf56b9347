//! Logs (tracing, text or JSON) and Prometheus metrics: answer times, webhooks by source
//! and outcome, commands, runs by phase, outbound calls, status-post delay, the
//! process's CPU, memory and file descriptors.
//!
//! Names follow Prometheus's conventions: the unit in the name (`_seconds`), counters
//! end in `_total`, and every histogram has buckets (so replicas' histograms add up;
//! a summary's quantiles would not).

use crate::config::LogFormat;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static PROMETHEUS: OnceLock<Option<Exporter>> = OnceLock::new();

/// The recorder's handle and the collector of `process_*` metrics.
struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

/// Time to answer an HTTP request, by route, method and status.
const HTTP_SECONDS: &str = "ozbridge_http_request_duration_seconds";
/// Time of a call to Oz, GitHub or Slack, by service.
const OUTBOUND_SECONDS: &str = "ozbridge_outbound_request_duration_seconds";
/// Time from a run's change to the status post that shows it.
const STATUS_POST_DELAY: &str = "ozbridge_status_post_delay_seconds";
/// Cost of each finished run (inference + compute, Oz's unit), by place.
const RUN_COST: &str = "ozbridge_run_cost";
/// Time of each finished run at Oz, by place.
const RUN_SECONDS: &str = "ozbridge_run_duration_seconds";

/// Answers take milliseconds (a signed insert) and must stay within Slack's 3 s.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Remote calls take tens of milliseconds up to their time-out (20–30 s by default).
const OUTBOUND_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// A change is seen within a tracker tick (3 s) and posted within seconds, or minutes
/// when a platform rate-limits.
const DELAY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Runs cost from cents to tens of units; `_sum` by place is the spend.
const COST_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0];
/// Agent runs take from a minute to hours.
const RUN_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Starts logging once per process; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Installs the process-wide metrics recorder on first use; false when another recorder
/// was installed first (then `/metrics` is unavailable).
pub fn install_metrics() -> bool {
    exporter().is_some()
}

fn exporter() -> Option<&'static Exporter> {
    PROMETHEUS.get_or_init(build_exporter).as_ref()
}

fn build_exporter() -> Option<Exporter> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_SECONDS.into()), HTTP_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(OUTBOUND_SECONDS.into()), OUTBOUND_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(STATUS_POST_DELAY.into()), DELAY_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(RUN_COST.into()), COST_BUCKETS)
        .ok()?
        .set_buckets_for_metric(Matcher::Full(RUN_SECONDS.into()), RUN_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    describe();
    let process = metrics_process::Collector::default();
    process.describe();
    Some(Exporter { handle, process })
}

/// The help text of each metric, shown as `# HELP` lines.
fn describe() {
    metrics::describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    metrics::describe_histogram!(
        OUTBOUND_SECONDS,
        Unit::Seconds,
        "Time of a call to Oz, GitHub or Slack"
    );
    metrics::describe_histogram!(
        STATUS_POST_DELAY,
        Unit::Seconds,
        "Time from a run's change to the status post that shows it"
    );
    metrics::describe_histogram!(
        RUN_COST,
        "Cost of each finished run (inference + compute, in Oz's unit), by repository or channel"
    );
    metrics::describe_histogram!(
        RUN_SECONDS,
        Unit::Seconds,
        "Time of each finished run at Oz, by repository or channel"
    );
    metrics::describe_counter!("ozbridge_webhooks_total", "Platform requests by outcome");
    metrics::describe_counter!(
        "ozbridge_commands_total",
        "Commands handled, by kind and result"
    );
    metrics::describe_counter!(
        "ozbridge_outbound_requests_total",
        "Calls to Oz, GitHub and Slack, by status"
    );
    metrics::describe_gauge!(
        "ozbridge_runs",
        "Runs going on, by phase (starting, active, parked)"
    );
    metrics::describe_gauge!("ozbridge_active_runs", "Runs followed at Oz, by Oz state");
    metrics::describe_gauge!(
        "ozbridge_notification_lag_seconds",
        Unit::Seconds,
        "Age of the oldest run change not yet posted"
    );
    metrics::describe_gauge!(
        "ozbridge_pending_commands",
        "Commands waiting to be handled"
    );
    metrics::describe_gauge!(
        "ozbridge_pending_notifications",
        "Reactions, replies and notes waiting to be sent"
    );
    metrics::describe_gauge!("ozbridge_parked", "Work set aside for an operator, by kind");
    metrics::describe_gauge!(
        "ozbridge_upstream_paused",
        "1 while calls to an upstream are paused by its breaker"
    );
    metrics::describe_counter!(
        "ozbridge_upstream_held_back_total",
        "Calls a breaker held back"
    );
    metrics::describe_counter!(
        "ozbridge_duplicate_runs_cancelled_total",
        "Extra Oz runs found and cancelled"
    );
    metrics::describe_counter!("ozbridge_worker_panics_total", "Worker steps that panicked");
}

/// The metrics in Prometheus's text format, with the process's figures read now; `None`
/// when the recorder could not be installed.
pub fn render_metrics() -> Option<String> {
    let exporter = exporter()?;
    exporter.process.collect();
    Some(exporter.handle.render())
}

/// The histogram of answer times for `route` (a route's pattern, or `unmatched`),
/// `method` and `status`; the HTTP edge keeps it and records each answer's time.
pub fn http_answer_histogram(route: &str, method: &'static str, status: u16) -> metrics::Histogram {
    metrics::histogram!(
        HTTP_SECONDS,
        "route" => route.to_owned(),
        "method" => method,
        "status" => status.to_string()
    )
}

/// Records a run that ended in `place` (a repository or channel): its cost and time,
/// when Oz reported them.
pub fn run_finished(place: &str, cost: Option<f64>, seconds: Option<i64>) {
    if let Some(cost) = cost {
        metrics::histogram!(RUN_COST, "place" => place.to_owned()).record(cost);
    }
    if let Some(seconds) = seconds {
        metrics::histogram!(RUN_SECONDS, "place" => place.to_owned()).record(seconds as f64);
    }
}

/// Records how long a run's change waited for the status post that shows it.
pub fn status_post_delay(delay: Duration) {
    metrics::histogram!(STATUS_POST_DELAY).record(delay.as_secs_f64());
}

/// Counts a webhook by source (`github`, `slack`) and outcome.
pub fn webhook(source: &'static str, outcome: &'static str) {
    metrics::counter!("ozbridge_webhooks_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

/// Counts a handled command by kind and result.
pub fn command(kind: &'static str, result: &'static str) {
    metrics::counter!("ozbridge_commands_total", "kind" => kind, "result" => result).increment(1);
}

/// Counts an outbound call by service and status, and records its latency.
pub fn outbound(service: &'static str, status: &str, elapsed: Duration) {
    metrics::counter!("ozbridge_outbound_requests_total", "service" => service, "status" => status.to_owned())
        .increment(1);
    metrics::histogram!(OUTBOUND_SECONDS, "service" => service).record(elapsed.as_secs_f64());
}

/// Sets the number of runs in a phase.
pub fn runs_in_phase(phase: String, count: i64) {
    metrics::gauge!("ozbridge_runs", "phase" => phase).set(count as f64);
}

/// Sets the number of tracked runs in each Oz state (states absent now are set to 0).
pub fn active_runs_by_state(counts: &std::collections::BTreeMap<String, i64>) {
    const KNOWN: [&str; 5] = ["QUEUED", "PENDING", "CLAIMED", "INPROGRESS", "BLOCKED"];
    for state in KNOWN {
        if !counts.contains_key(state) {
            metrics::gauge!("ozbridge_active_runs", "state" => state).set(0.0);
        }
    }
    for (state, count) in counts {
        metrics::gauge!("ozbridge_active_runs", "state" => state.clone()).set(*count as f64);
    }
}

/// Sets the age of the oldest status change not yet posted.
pub fn notification_lag(lag: Duration) {
    metrics::gauge!("ozbridge_notification_lag_seconds").set(lag.as_secs_f64());
}

/// Sets the number of commands and notifications waiting.
pub fn backlog(commands: i64, outbox: i64) {
    metrics::gauge!("ozbridge_pending_commands").set(commands as f64);
    metrics::gauge!("ozbridge_pending_notifications").set(outbox as f64);
}

/// Counts an extra Oz run found and cancelled (a create answered too late).
pub fn duplicate_cancelled() {
    metrics::counter!("ozbridge_duplicate_runs_cancelled_total").increment(1);
}

/// Sets the number of parked items of a kind (`command`, `run`, `notification`).
pub fn parked(kind: &'static str, count: i64) {
    metrics::gauge!("ozbridge_parked", "kind" => kind).set(count as f64);
}

/// Sets whether calls to an upstream are paused by its breaker (1) or flowing (0), and
/// how many calls the breaker has held back since the start.
pub fn upstream(upstream: &'static str, paused: bool, held_back: u64) {
    let paused = if paused { 1.0 } else { 0.0 };
    metrics::gauge!("ozbridge_upstream_paused", "upstream" => upstream).set(paused);
    metrics::counter!("ozbridge_upstream_held_back_total", "upstream" => upstream)
        .absolute(held_back);
}

/// Counts a worker step that panicked (the worker goes on with its next item).
pub fn worker_panicked() {
    metrics::counter!("ozbridge_worker_panics_total").increment(1);
}
