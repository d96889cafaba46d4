//! Telemetry: the stdout system log (`tracing`) and the process-wide Prometheus recorder.
//!
//! This module owns how logs are filtered and formatted, every metric name's description and
//! unit, and the histogram buckets. It must not serve HTTP (the `http` module renders the handle)
//! nor decide what is worth logging (each module does).
//!
//! The `metrics` crate allows one global recorder per process, so installation is idempotent:
//! the app and every test in a process share the first recorder.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Metric names, shared by the code that records them and by [`describe_metrics`].
mod rate_limit;
pub use rate_limit::RateLimited;

pub mod names {
    pub const EVENTS_RECEIVED: &str = "nightcrier_events_received_total";
    pub const EVENTS_MALFORMED: &str = "nightcrier_events_malformed_total";
    pub const EVENTS_DEDUPLICATED: &str = "nightcrier_events_deduplicated_total";
    pub const EVENTS_DROPPED: &str = "nightcrier_events_dropped_total";
    pub const INGEST_BUFFER_DEPTH: &str = "nightcrier_ingest_buffer_depth";
    pub const INGEST_DEGRADED: &str = "nightcrier_ingest_degraded";
    pub const DB_WRITE_DURATION: &str = "nightcrier_db_write_duration_seconds";
    pub const INCIDENTS_CREATED: &str = "nightcrier_incidents_created_total";
    pub const AGENTS_RUNNING: &str = "nightcrier_agents_running";
    pub const AGENT_RUN_DURATION: &str = "nightcrier_agent_run_duration_seconds";
    pub const AGENT_RUNS: &str = "nightcrier_agent_runs_total";
    pub const AGENT_TOKENS: &str = "nightcrier_agent_tokens_total";
    pub const AGENT_COST_USD: &str = "nightcrier_agent_cost_usd_total";
    pub const MCP_RECONNECTS: &str = "nightcrier_mcp_reconnects_total";
    pub const MCP_CONNECTED: &str = "nightcrier_mcp_connected";
    pub const TASK_RESTARTS: &str = "nightcrier_task_restarts_total";
    pub const TASK_PANICS: &str = "nightcrier_task_panics_total";
    pub const RUNTIME_TASKS: &str = "nightcrier_runtime_alive_tasks";
    pub const OPEN_FDS: &str = "process_open_fds";
    pub const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
    pub const ALERTS_RECEIVED: &str = "nightcrier_alerts_received_total";
    pub const ALERTS_REJECTED: &str = "nightcrier_alerts_rejected_total";
    pub const INCIDENTS_RESOLVED: &str = "nightcrier_incidents_resolved_total";
    pub const REPORTS: &str = "nightcrier_reports_total";
    pub const TRIAGE_DEGRADED: &str = "nightcrier_triage_degraded";
    pub const NOTIFICATIONS: &str = "nightcrier_notifications_total";
    pub const ARTIFACT_UPLOADS: &str = "nightcrier_artifact_uploads_total";
}

/// Upper bounds of the database write histogram: a SQLite commit takes well under a millisecond,
/// a PostgreSQL batch a few, and anything near the top means the database is struggling.
const DB_WRITE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the agent run histogram: a triage takes from seconds to the 1 h ceiling.
const AGENT_RUN_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

/// The stdout log's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, fields at the top level, for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(TelemetryError::LogFormat(other.to_string())),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("unknown log format {0:?} (expected text or json)")]
    LogFormat(String),
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a log subscriber is already installed in this process")]
    AlreadyInitialized,
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
}

/// Dependencies stay at `warn` so that stdout holds only nightcrier's high-signal lines. sqlx's
/// "slow acquire" warning is raised to `error`: during a database outage it repeats for every
/// query, and the ingest writer already says "database degraded" once.
const DEPENDENCIES_FILTER: &str = "warn,sqlx::pool::acquire=error";
const DEFAULT_FILTER: &str = "warn,sqlx::pool::acquire=error,nightcrier=info";

/// The filter directives to use: `level` (from `--log-level`) wins over `rust_log` (the
/// `RUST_LOG` variable), which wins over the default. A bare level such as `debug` applies to
/// nightcrier only, so that asking for detail does not also turn on every dependency's chatter;
/// anything with a `=` or `,` is taken verbatim as `RUST_LOG`-style directives.
pub fn filter_directives(level: Option<&str>, rust_log: Option<&str>) -> String {
    let level = level.map(str::trim).filter(|l| !l.is_empty());
    let rust_log = rust_log.map(str::trim).filter(|l| !l.is_empty());
    match (level, rust_log) {
        (Some(l), _) if l.contains('=') || l.contains(',') => l.to_string(),
        (Some(l), _) => format!("{DEPENDENCIES_FILTER},nightcrier={l}"),
        (None, Some(env)) => env.to_string(),
        (None, None) => DEFAULT_FILTER.to_string(),
    }
}

/// Installs the stdout subscriber. `level` is `--log-level`; `RUST_LOG` is read when it is
/// absent. Fails when the filter does not parse (naming it) or a subscriber is already set.
pub fn init_tracing(format: LogFormat, level: Option<&str>) -> Result<(), TelemetryError> {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let directives = filter_directives(level, rust_log.as_deref());
    // Colours only for a person at a terminal, not in files or log collectors.
    let ansi = std::io::stdout().is_terminal();
    build_subscriber(format, &directives, ansi, std::io::stdout)?
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialized)
}

/// The subscriber [`init_tracing`] installs, writing to `writer` (tests capture it).
pub fn build_subscriber<W>(
    format: LogFormat,
    directives: &str,
    ansi: bool,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::builder()
            .parse(directives)
            .map_err(|source| TelemetryError::Filter {
                filter: directives.to_string(),
                source,
            })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        // The module path adds nothing an operator needs on a one-line event.
        LogFormat::Text => Box::new(
            builder
                .fmt_fields(escaped_fields())
                .with_ansi(ansi)
                .with_target(false)
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish(),
        ),
    })
}

/// The text log's field formatter: `name=value` separated by spaces, the message bare, as the
/// default one does, but every value goes through [`crate::escape::control_chars`]. Values come
/// from clusters and agents (`cluster = %name`, errors...): a newline in one would otherwise
/// forge a log line and an escape sequence would reach the operator's terminal. The JSON format
/// needs none of this; its serializer escapes.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut tracing_subscriber::fmt::format::Writer<'_>,
         field: &tracing::field::Field,
         value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            let text = crate::escape::control_chars(&text);
            if field.name() == "message" {
                w.write_str(&text)
            } else {
                write!(w, "{field}={text}")
            }
        },
    )
    .delimited(" ")
}

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the global Prometheus recorder (once per process) and returns a handle that renders
/// the exposition text. Later calls return the same handle.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, TelemetryError> {
    RECORDER
        .get_or_init(|| {
            let handle = build_recorder().and_then(|recorder| {
                let handle = recorder.handle();
                metrics::set_global_recorder(recorder)?;
                Ok(handle)
            });
            let handle = handle.map_err(|e| e.to_string())?;
            // Descriptions go to the global recorder, so only now that it is ours.
            describe_metrics();
            Ok(handle)
        })
        .clone()
        .map_err(TelemetryError::Recorder)
}

fn build_recorder() -> Result<metrics_exporter_prometheus::PrometheusRecorder, BuildError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::DB_WRITE_DURATION.to_string()),
            &DB_WRITE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::AGENT_RUN_DURATION.to_string()),
            &AGENT_RUN_BUCKETS,
        )?
        .build_recorder())
}

/// Registers the help text and unit of every nightcrier metric with the global recorder.
pub fn describe_metrics() {
    use names::*;
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Fault notifications received from MCP servers, per cluster."
    );
    describe_counter!(
        EVENTS_MALFORMED,
        Unit::Count,
        "Notifications skipped because they could not be used, per cluster and reason."
    );
    describe_counter!(
        EVENTS_DEDUPLICATED,
        Unit::Count,
        "Faults attached to an existing incident instead of opening one, per cluster."
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Faults dropped because the ingest buffer was full, per cluster."
    );
    describe_gauge!(
        INGEST_BUFFER_DEPTH,
        Unit::Count,
        "Faults received but not yet written to the database."
    );
    describe_gauge!(
        INGEST_DEGRADED,
        Unit::Count,
        "1 while the ingest writer cannot write to the database, else 0."
    );
    describe_histogram!(
        DB_WRITE_DURATION,
        Unit::Seconds,
        "Time to commit one batch of faults to the database."
    );
    describe_counter!(
        INCIDENTS_CREATED,
        Unit::Count,
        "Incidents opened, per cluster."
    );
    describe_gauge!(AGENTS_RUNNING, Unit::Count, "Agent processes running now.");
    describe_histogram!(
        AGENT_RUN_DURATION,
        Unit::Seconds,
        "Duration of agent runs, per outcome."
    );
    describe_counter!(
        AGENT_RUNS,
        Unit::Count,
        "Agent runs finished, per cluster and outcome."
    );
    describe_counter!(
        AGENT_TOKENS,
        Unit::Count,
        "Tokens agents reported, per cluster and kind (input, output, cache_read, cache_write)."
    );
    describe_gauge!(
        AGENT_COST_USD,
        "US dollars agents spent (reported, or priced from tokens), per cluster; only grows."
    );
    describe_counter!(
        MCP_RECONNECTS,
        Unit::Count,
        "Fresh MCP sessions started after a failure, per cluster."
    );
    describe_gauge!(
        MCP_CONNECTED,
        Unit::Count,
        "1 while the cluster's MCP subscription is live, else 0."
    );
    describe_gauge!(
        RUNTIME_TASKS,
        Unit::Count,
        "Tokio tasks alive in the process (steady when idle; rising means a leak)."
    );
    describe_gauge!(
        OPEN_FDS,
        Unit::Count,
        "Open file descriptors of the process."
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the process."
    );
    describe_counter!(
        TASK_RESTARTS,
        Unit::Count,
        "Supervised tasks restarted after a panic, per task."
    );
    describe_counter!(
        TASK_PANICS,
        Unit::Count,
        "Panics of long-running tasks, per task (restarted or not; see ARCHITECTURE.md for which stop the application)."
    );
    describe_counter!(
        ALERTS_RECEIVED,
        Unit::Count,
        "Alerts received by an intake receiver, per source and status (firing, resolved)."
    );
    describe_counter!(
        ALERTS_REJECTED,
        Unit::Count,
        "Intake requests refused (unauthorized, too_large, malformed, unavailable) and alerts rejected (unknown_cluster), per source and reason."
    );
    describe_counter!(
        INCIDENTS_RESOLVED,
        Unit::Count,
        "Open incidents whose alert resolved, per cluster and resolution (ended, stopped, noted)."
    );
    describe_counter!(
        REPORTS,
        Unit::Count,
        "Finished incidents reported (page rendered, notifications sent), per outcome."
    );
    describe_gauge!(
        TRIAGE_DEGRADED,
        "1 while recent runs keep failing (the degraded alert was sent), else 0."
    );
    describe_counter!(
        NOTIFICATIONS,
        Unit::Count,
        "Notifications to Slack, per kind and result (sent, failed)."
    );
    describe_counter!(
        ARTIFACT_UPLOADS,
        Unit::Count,
        "Investigation uploads to object storage, per result (ok, failed)."
    );
}

/// Samples the process's own vitals into gauges: tokio tasks alive, open file descriptors and
/// resident memory. A task, connection or memory leak shows as a line that keeps rising across
/// reconnects. Called on every `/metrics` render and by [`MetricsUpkeep`]; on systems without
/// `/proc` only the task count is kept.
pub fn record_process_gauges() {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        metrics::gauge!(names::RUNTIME_TASKS).set(rt.metrics().num_alive_tasks() as f64);
    }
    if let Some(fds) = crate::procfs::open_fds() {
        metrics::gauge!(names::OPEN_FDS).set(fds as f64);
    }
    if let Some(kib) = crate::procfs::self_resident_kib() {
        metrics::gauge!(names::RESIDENT_MEMORY).set(kib as f64 * 1024.0);
    }
}

/// `VmRSS` from the text of `/proc/<pid>/status`, in KiB (kept here for the tests and benches
/// that watch a child process's memory; parsed by [`crate::procfs`]).
pub use crate::procfs::vm_rss_kib;

/// Drains histogram samples into their buckets at an interval. Rendering `/metrics` does this
/// too, but without scrapes (or with the endpoint off) the raw samples would grow unbounded.
pub struct MetricsUpkeep {
    handle: PrometheusHandle,
    interval: Duration,
}

impl MetricsUpkeep {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    pub fn new(handle: PrometheusHandle, interval: Duration) -> Self {
        Self { handle, interval }
    }

    pub fn run_once(&self) {
        self.handle.run_upkeep();
        record_process_gauges();
    }

    pub async fn run(self, token: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => self.run_once(),
            }
        }
    }
}

/// `nightcrier_cluster_info{cluster, environment} 1` for every configured cluster: the bounded
/// cluster facts, for dashboards to join on `cluster`. `labels` stay off metrics (their keys are
/// the operator's and unbounded); `environment` is one validated value per cluster.
pub const CLUSTER_INFO: &str = "nightcrier_cluster_info";

pub fn record_cluster_info(clusters: &[crate::config::ClusterConfig]) {
    describe_gauge!(
        CLUSTER_INFO,
        Unit::Count,
        "1 per configured cluster, labelled with its environment."
    );
    for c in clusters {
        metrics::gauge!(
            CLUSTER_INFO,
            "cluster" => c.name.clone(),
            "environment" => c.environment.clone().unwrap_or_default()
        )
        .set(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        let status = "Name:\tnightcrier\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn level_flag_beats_rust_log_and_a_bare_level_only_touches_nightcrier() {
        assert_eq!(filter_directives(None, None), DEFAULT_FILTER);
        assert_eq!(filter_directives(None, Some("sqlx=debug")), "sqlx=debug");
        assert_eq!(
            filter_directives(Some("debug"), Some("sqlx=debug")),
            "warn,sqlx::pool::acquire=error,nightcrier=debug"
        );
        assert_eq!(
            filter_directives(Some("info,hyper=debug"), None),
            "info,hyper=debug"
        );
        assert_eq!(filter_directives(Some("  "), None), DEFAULT_FILTER);
    }

    #[test]
    fn log_format_parses_and_names_bad_values() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        let err = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(err.contains("\"yaml\""), "{err}");
    }

    /// A writer into a shared buffer, to read what the subscriber printed.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn emit_sample_events() {
        tracing::info!(target: "nightcrier::ingest", cluster = "kind", incident_id = "0192", "incident 0192 created");
        tracing::debug!(target: "nightcrier::ingest", "per-event noise");
        tracing::info!(target: "sqlx::query", "SELECT 1");
        tracing::warn!(target: "sqlx::pool::acquire", "slow acquire");
        tracing::warn!(target: "hyper::proto", "dependency warning");
    }

    #[test]
    fn by_default_only_nightcrier_info_and_dependency_warnings_are_printed() {
        let out = Captured::default();
        let w = out.clone();
        let sub =
            build_subscriber(LogFormat::Text, DEFAULT_FILTER, false, move || w.clone()).unwrap();
        tracing::subscriber::with_default(sub, emit_sample_events);
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("incident 0192 created") && lines[0].contains("cluster=\"kind\"")
        );
        assert!(lines[1].contains("dependency warning"));
        assert!(
            !text.contains('\u{1b}'),
            "no colour codes when not a terminal"
        );
    }

    #[test]
    fn json_lines_carry_the_fields_at_the_top_level() {
        let out = Captured::default();
        let w = out.clone();
        let sub =
            build_subscriber(LogFormat::Json, "nightcrier=info", false, move || w.clone()).unwrap();
        tracing::subscriber::with_default(sub, emit_sample_events);
        let text = out.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["message"], "incident 0192 created");
        assert_eq!(lines[0]["cluster"], "kind");
        assert_eq!(lines[0]["incident_id"], "0192");
        assert_eq!(lines[0]["level"], "INFO");
    }

    #[test]
    fn a_bad_filter_is_named() {
        let err = init_tracing(LogFormat::Text, Some("nightcrier=loud")).unwrap_err();
        assert!(err.to_string().contains("nightcrier=loud"), "{err}");
    }
}
