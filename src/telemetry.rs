//! Logs (tracing, text or JSON) and Prometheus metrics: webhooks by source and outcome,
//! commands, runs by phase, outbound calls by service and status, notification lag.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

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

/// The process-wide metrics recorder, installed on first use.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
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
    metrics::histogram!("ozbridge_outbound_seconds", "service" => service)
        .record(elapsed.as_secs_f64());
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
