//! The configuration's shape and its defaults. Key names are a contract with users: change them
//! only with a migration path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::secret::Secret;
use super::DatabaseUrl;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    /// Parent of every incident workspace (`<workspace_root>/<incident-id>/`).
    pub workspace_root: PathBuf,
    pub limits: LimitsConfig,
    pub dedup: DedupConfig,
    pub ingest: IngestConfig,
    pub reconnect: ReconnectConfig,
    pub worker: WorkerConfig,
    pub agent: AgentConfig,
    pub http: HttpConfig,
    pub reporting: ReportingConfig,
    pub notifications: NotificationsConfig,
    pub clusters: Vec<ClusterConfig>,
    /// Token prices per model, for CLIs that report tokens but not cost.
    pub pricing: PricingConfig,
    /// Investigations and spend allowed per window, globally and per cluster.
    pub budgets: BudgetsConfig,
    /// Receivers of alerts from other systems (Prometheus Alertmanager, Grafana).
    pub intake: IntakeConfig,
    /// Several processes on one PostgreSQL dividing the clusters between them.
    pub fleet: FleetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig::default(),
            workspace_root: PathBuf::from("./incidents"),
            limits: LimitsConfig::default(),
            dedup: DedupConfig::default(),
            ingest: IngestConfig::default(),
            reconnect: ReconnectConfig::default(),
            worker: WorkerConfig::default(),
            agent: AgentConfig::default(),
            http: HttpConfig::default(),
            reporting: ReportingConfig::default(),
            notifications: NotificationsConfig::default(),
            clusters: Vec::new(),
            pricing: PricingConfig::default(),
            budgets: BudgetsConfig::default(),
            intake: IntakeConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (file created with its parent directory) or `postgres://user:pw@host/db`.
    pub url: DatabaseUrl,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// How long an operation waits for a connection (and SQLite for a lock) before failing.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// PostgreSQL only: whether ingest commits wait for their WAL flush (`on`, the server's
    /// durability) or not (`off`: `SET LOCAL synchronous_commit = off` per ingest transaction; a
    /// crash of the database host can lose the last moments of committed faults).
    pub ingest_synchronous_commit: SynchronousCommit,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::new("sqlite://./data/nightcrier.db"),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            ingest_synchronous_commit: SynchronousCommit::On,
        }
    }
}

/// `database.ingest_synchronous_commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynchronousCommit {
    #[default]
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Agents running at once across all clusters (and all processes sharing the database).
    pub max_concurrent_agents: u32,
    /// Agents running at once on one cluster: "one agent per cluster" by default.
    pub max_agents_per_cluster: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_agents: 5,
            max_agents_per_cluster: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// A fault seen again within this time after its incident ended opens no new incident.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A pending incident older than this ends `expired` (old news); unset: never. A cluster can
    /// override it in `budgets.clusters.<name>.pending_ttl`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub pending_ttl: Option<Duration>,
    /// Related faults (pods of one workload, or one object with several fault types) last seen
    /// within this time of an open incident attach to it instead of opening their own, so a
    /// crash-looping Deployment of 200 pods is one investigation. `0s` turns this off.
    #[serde(with = "humantime_serde")]
    pub related_window: Duration,
}

impl DedupConfig {
    /// The coalescing window the store applies; `None` when turned off.
    pub fn related(&self) -> Option<Duration> {
        (!self.related_window.is_zero()).then_some(self.related_window)
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(30 * 60),
            pending_ttl: None,
            related_window: Duration::from_secs(10 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Faults held in memory between the MCP readers and the database writer. When full (the
    /// database is down for long), new faults are dropped and counted.
    pub buffer_capacity: usize,
    /// Bytes of faults held in that buffer (each counted by its size); a fault that would go
    /// over is dropped and counted like one over `buffer_capacity`.
    pub buffer_bytes: usize,
    /// Most faults written in one transaction.
    pub batch_max: usize,
    /// How long the writer waits for a batch to fill before committing what it has. The default
    /// 0s commits as soon as the previous commit returned (what arrived meanwhile is the next
    /// batch), so batches grow exactly when commits are slow (group commit) and a light load is
    /// not held back: the p50 receive→commit on PostgreSQL at 1,000 events/s halved against 5ms.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// On shutdown, how long the writer keeps writing buffered faults before it gives up.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// While the buffer is full, stream readers stop reading (TCP flow control slows the
    /// server's sending to the writer's pace); once the writer has freed no room for this long
    /// (the database is down), they read on and drop fault notifications unparsed, counted per
    /// cluster. `0s`: drop at once, never hold a server.
    #[serde(with = "humantime_serde")]
    pub backpressure_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            buffer_capacity: 100_000,
            buffer_bytes: 256 * 1024 * 1024,
            batch_max: 500,
            batch_linger: Duration::ZERO,
            drain_timeout: Duration::from_secs(5),
            backpressure_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A session subscribed this long resets the backoff.
    #[serde(with = "humantime_serde")]
    pub healthy_after: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// How often the subscription is looked for in `events_list_subscriptions`.
    #[serde(with = "humantime_serde")]
    pub subscription_check_interval: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
            subscription_check_interval: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Safety-net tick of the dispatcher; it is normally woken at once by new incidents.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a claim stays valid without a heartbeat.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often expired leases are looked for.
    #[serde(with = "humantime_serde")]
    pub rescue_interval: Duration,
    /// Claims of one incident before a lost lease fails it for good.
    pub max_attempts: u32,
    /// On shutdown, how long running agents may finish before they are terminated.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Names this process in leases; defaults to the host name.
    pub instance_name: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            lease_duration: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            rescue_interval: Duration::from_secs(30),
            max_attempts: 3,
            shutdown_grace: Duration::from_secs(30),
            instance_name: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentPreset {
    #[default]
    Claude,
    Codex,
    Gemini,
    Goose,
    /// `agent.command` is the argv, with placeholders.
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerRuntime {
    Docker,
    Podman,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    pub runtime: ContainerRuntime,
    pub image: String,
    #[serde(default)]
    pub extra_args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub preset: AgentPreset,
    /// The preset's executable (`claude`, `codex`, `gemini`, `goose` on PATH by default).
    pub binary: Option<PathBuf>,
    pub model: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// After SIGTERM on timeout, how long before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub kill_grace: Duration,
    pub system_prompt_file: Option<PathBuf>,
    /// Appended to the preset's argv.
    pub extra_args: Vec<String>,
    /// Extra environment for the agent (API keys...). Values are secrets.
    pub env: BTreeMap<String, Secret>,
    /// The argv for `preset: command`; placeholders `{incident_id}`, `{workspace}`,
    /// `{prompt_file}`, `{report_file}`, `{cluster}`, `{model}`.
    pub command: Vec<String>,
    /// A report smaller than this counts as no report.
    pub min_report_bytes: u64,
    pub container: Option<ContainerConfig>,
    /// The CLI's turn limit (claude `--max-turns`, gemini `model.maxSessionTurns`, goose
    /// `--max-turns`; codex has none).
    pub max_turns: u32,
    /// Spend ceiling of one run in USD, where the CLI enforces one (claude `--max-budget-usd`).
    /// Codex, Gemini CLI and Goose have no such option and report their spend only as they end
    /// (or per turn, in tokens): for them the ceilings are `max_turns` and `timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    /// Built-in tools offered to the agent, in the CLI's own names (claude: `Read`, `Bash`...;
    /// gemini: `read_file`, `run_shell_command`...). `None`: the preset's default.
    pub allowed_tools: Option<Vec<String>>,
    /// Inline text appended to the built-in instructions of the prompt.
    pub additional_prompt: Option<String>,
    /// Offer the cluster's read-only MCP tools through nightcrier's per-run endpoint.
    pub mcp_tools: bool,
    /// Give the agent the cluster's kubeconfig (`KUBECONFIG`) for kubectl.
    pub kubectl: bool,
    /// Bound on one MCP tool call made by the agent (upstream call included).
    #[serde(with = "humantime_serde")]
    pub mcp_call_timeout: Duration,
    /// Largest tool result handed to the agent; a larger one is an error telling it to narrow
    /// the request.
    pub mcp_max_result_bytes: usize,
    /// MCP tool calls allowed per run; later calls are refused.
    pub mcp_max_calls: u32,
    /// Cap of `logs/agent.log` (all attempts together): beyond it the head and the tail of
    /// the agent's output are kept and a line says how much was cut.
    pub max_log_bytes: u64,
}

/// Default of `agent.max_log_bytes`.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 50 * 1024 * 1024;
/// The smallest `agent.max_log_bytes` accepted: room for a useful head and tail.
pub const MIN_MAX_LOG_BYTES: u64 = 64 * 1024;

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            preset: AgentPreset::Claude,
            binary: None,
            model: None,
            timeout: Duration::from_secs(15 * 60),
            kill_grace: Duration::from_secs(10),
            system_prompt_file: None,
            extra_args: Vec::new(),
            env: BTreeMap::new(),
            command: Vec::new(),
            min_report_bytes: 100,
            container: None,
            max_turns: 30,
            max_cost_usd: None,
            allowed_tools: None,
            additional_prompt: None,
            mcp_tools: true,
            kubectl: true,
            mcp_call_timeout: Duration::from_secs(30),
            mcp_max_result_bytes: 256 * 1024,
            mcp_max_calls: 200,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` for health, readiness and metrics; empty turns the endpoint off.
    pub listen: String,
    /// Connections served at once; further clients wait in the kernel's accept queue, so idle
    /// or slow clients cannot take every file descriptor.
    pub max_connections: usize,
    /// A client that has not sent a whole request head this long after connecting (or after
    /// its previous response) is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Serve the incident pages (`/incidents...`); false leaves `/healthz`, `/readyz` and
    /// `/metrics` only.
    pub pages: bool,
    /// Credentials the incident pages (and any write action) require; none by default.
    pub auth: HttpAuthConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".to_string(),
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            pages: true,
            auth: HttpAuthConfig::default(),
        }
    }
}

/// Either or both schemes may be set; a request is let in when it satisfies one of them. A
/// `*_file` is read at start (trailing newline removed) and wins over the inline value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    /// `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    /// HTTP basic authentication (what a browser prompts for).
    pub basic_username: Option<String>,
    pub basic_password: Option<Secret>,
    pub basic_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique, `[A-Za-z0-9_.-]+`; used in incident records, metrics labels and paths.
    pub name: String,
    pub mcp: McpConfig,
    #[serde(default)]
    pub triage: TriageConfig,
    /// Replaces the global `agent` block for this cluster when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentConfig>,
    /// What nightcrier reads from the cluster's MCP server before the agent starts.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// Free text such as `production` (the Go nightcrier's key): told to the agent, shown on
    /// `/health/clusters`, in Slack messages and in the `environment` metrics label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Operator labels (`team: payments`): told to the agent and served on `/health/clusters`.
    /// Not metric labels: their keys are unbounded (see `environment` for the bounded one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The evidence bundle gathered before each run (see `evidence`): bounds and the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    pub enabled: bool,
    /// Bound on each tool call (and on opening the session).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Bound on the whole gathering: the run starts after at most this long.
    #[serde(with = "humantime_serde")]
    pub budget: Duration,
    /// Largest reply kept per call; a larger one is recorded as a gap.
    pub max_call_bytes: usize,
    /// Lines of each container log (`tail`).
    pub log_tail_lines: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            call_timeout: Duration::from_secs(5),
            budget: Duration::from_secs(15),
            max_call_bytes: 256 * 1024,
            log_tail_lines: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// The server's Streamable HTTP endpoint, path included (`http://host:8080/mcp`).
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub endpoint: String,
    /// Sent with every request (e.g. `Authorization`). Values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Larger SSE events are counted as malformed and skipped.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Bound on each POST (initialize, setLevel, ping...).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `events_subscribe` waits for the server's informers to sync: it gets its own bound.
    #[serde(default = "default_subscribe_timeout", with = "humantime_serde")]
    pub subscribe_timeout: Duration,
    /// An SSE event still unfinished this long after it began ends the session (a new one is
    /// opened). Servers write each event whole, so a frame that never ends is a broken server;
    /// without this bound it would block the cluster's stream while pings still succeed. An
    /// idle stream between events has no time limit.
    #[serde(default = "default_event_timeout", with = "humantime_serde")]
    pub event_timeout: Duration,
    /// `events_subscribe` mode: `faults` (the server's fault detector) or `events` (Kubernetes
    /// Warning events, see `mcp::events` for how they become incidents).
    #[serde(default)]
    pub subscribe_mode: SubscribeMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeMode {
    #[default]
    Faults,
    Events,
}

fn default_max_event_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_subscribe_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_event_timeout() -> Duration {
    Duration::from_secs(60)
}

impl McpConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            max_event_bytes: default_max_event_bytes(),
            request_timeout: default_request_timeout(),
            subscribe_timeout: default_subscribe_timeout(),
            event_timeout: default_event_timeout(),
            subscribe_mode: SubscribeMode::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageConfig {
    /// When false, faults are still recorded but their incidents are `skipped`.
    pub enabled: bool,
    /// Read-only kubeconfig handed to the agent as `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            kubeconfig: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportingConfig {
    /// Public address of the HTTP endpoint, used in links (Slack messages); defaults to
    /// `http://<http.listen>`.
    #[serde(serialize_with = "super::secret::serialize_opt_url")]
    pub base_url: Option<String>,
    /// How often the reporter looks for finished incidents not reported yet (it is also woken
    /// when a run finishes in this process).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Attempts at reporting one incident (render, upload, notify) before it is given up.
    pub max_attempts: u32,
    /// Optional upload of each report's files to object storage.
    pub artifacts: Option<ArtifactsConfig>,
}

impl Default for ReportingConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            poll_interval: Duration::from_secs(2),
            max_attempts: 5,
            artifacts: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`, `file:///path` or
    /// `memory://`.
    #[serde(serialize_with = "super::secret::serialize_url")]
    pub url: String,
    /// Store options (`aws_access_key_id`, `azure_storage_account_key`...); values are secrets.
    /// Credentials also come from the usual environment variables.
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
    /// Public address of the uploaded files used in links, when the bucket is served over HTTP.
    #[serde(default, serialize_with = "super::secret::serialize_opt_url")]
    pub public_base_url: Option<String>,
    /// Without `public_base_url`: links to the uploaded report are presigned (S3, GCS) or SAS
    /// (Azure) URLs valid this long; at most 7 days (S3's and GCS's limit).
    #[serde(default = "default_link_expiry", with = "humantime_serde")]
    pub link_expiry: Duration,
    /// Upload the files of failed and timed-out runs too (their thread links to them).
    #[serde(default)]
    pub upload_failed: bool,
}

/// Default of `reporting.artifacts.link_expiry`, and its upper bound.
pub const MAX_LINK_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_link_expiry() -> Duration {
    MAX_LINK_EXPIRY
}

impl ArtifactsConfig {
    /// Defaults, for this store URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: BTreeMap::new(),
            public_base_url: None,
            link_expiry: default_link_expiry(),
            upload_failed: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub slack: Option<SlackConfig>,
    /// Consecutive failed (or timed-out) runs that send one "triage degraded" message.
    pub failure_threshold: u32,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            slack: None,
            failure_threshold: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL; it is a credential. Either this or `bot_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// Bound on one POST.
    #[serde(default = "default_slack_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per message (5xx, 429, network errors are retried with backoff).
    #[serde(default = "default_slack_max_attempts")]
    pub max_attempts: u32,
    /// Slack app mode (instead of the webhook): a bot token (`xoxb-...`) with the `chat:write`
    /// scope, plus `channels:history` / `groups:history` to find a parent message whose post
    /// was not confirmed. One thread per incident, its parent updated in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<Secret>,
    /// App mode: the channel ID (or name) of every cluster not in `channels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// App mode: a channel per cluster name, overriding `channel`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, String>,
    /// App mode: incidents of these severities get their parent message when they open;
    /// others when their run ends. Empty (the default): at run end only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_on_open: Vec<String>,
    /// App mode: failed and timed-out runs are posted (with the reason) in their thread.
    #[serde(default = "default_true")]
    pub notify_on_failure: bool,
    /// App mode: the Web API's base URL.
    #[serde(default = "default_slack_api_url")]
    pub api_url: String,
}

fn default_slack_api_url() -> String {
    "https://slack.com/api".to_string()
}

fn default_slack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_slack_max_attempts() -> u32 {
    4
}

impl SlackConfig {
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            webhook_url: Some(Secret::new(webhook_url)),
            timeout: default_slack_timeout(),
            max_attempts: default_slack_max_attempts(),
            bot_token: None,
            channel: None,
            channels: BTreeMap::new(),
            post_on_open: Vec::new(),
            notify_on_failure: true,
            api_url: default_slack_api_url(),
        }
    }

    /// App mode with this bot token and default channel.
    pub fn app(bot_token: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            webhook_url: None,
            bot_token: Some(Secret::new(bot_token)),
            channel: Some(channel.into()),
            ..Self::new("")
        }
    }
}

/// `pricing`: USD per million tokens, per model name (exact, or the longest configured prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    pub models: BTreeMap<String, crate::accounting::ModelPrice>,
}

/// What a claim does with an incident a budget holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBudget {
    /// Stay pending (with the reason) until the window allows.
    #[default]
    Wait,
    /// End `skipped` with the reason.
    Skip,
}

/// `budgets`: limits over clock windows (UTC hours and days), enforced in the claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Agent runs started per clock hour, all clusters together; unset: no limit.
    pub max_investigations_per_hour: Option<u32>,
    /// USD spent (reported or computed) per UTC day, all clusters together; unset: no limit.
    pub max_spend_per_day_usd: Option<f64>,
    pub on_budget: OnBudget,
    /// Per-cluster limits, in addition to the global ones.
    pub clusters: BTreeMap<String, ClusterBudget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterBudget {
    pub max_investigations_per_hour: Option<u32>,
    pub max_spend_per_day_usd: Option<f64>,
    /// Overrides `budgets.on_budget` for this cluster.
    pub on_budget: Option<OnBudget>,
    /// Overrides `dedup.pending_ttl` for this cluster.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub pending_ttl: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// `host:port` of a listener of its own for the receivers; empty serves them on
    /// `http.listen` (which must then be on).
    pub listen: String,
    /// `POST /api/v1/alertmanager`; off when absent.
    pub alertmanager: Option<AlertmanagerIntakeConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerIntakeConfig {
    /// Required: requests without these credentials get 401 and record nothing.
    pub auth: IntakeAuthConfig,
    /// Larger request bodies get 413.
    #[serde(default = "default_intake_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A resolved alert whose incident is running stops the agent (true) or lets it finish.
    #[serde(default = "default_true")]
    pub cancel_running_on_resolve: bool,
    #[serde(default)]
    pub mapping: AlertMappingConfig,
}

impl AlertmanagerIntakeConfig {
    /// The defaults, with these credentials.
    pub fn new(auth: IntakeAuthConfig) -> Self {
        Self {
            auth,
            max_body_bytes: default_intake_max_body_bytes(),
            cancel_running_on_resolve: true,
            mapping: AlertMappingConfig::default(),
        }
    }
}

fn default_intake_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_true() -> bool {
    true
}

/// A bearer token and/or HTTP basic credentials, as Alertmanager's `http_config` sends them;
/// a request passes with either.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeAuthConfig {
    pub bearer_token: Option<Secret>,
    /// Read at start; trailing whitespace is ignored.
    pub bearer_token_file: Option<PathBuf>,
    pub basic: Option<BasicAuthConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Read at start; trailing whitespace is ignored.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Which alert labels name what nightcrier records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertMappingConfig {
    /// Names the cluster; its value must be a configured `clusters[].name`.
    pub cluster_label: String,
    /// Used when the cluster label is absent or names no configured cluster; when unset such
    /// alerts are rejected (and counted).
    pub default_cluster: Option<String>,
    pub namespace_label: String,
    /// The first of these labels present names the resource (its kind from the label name).
    pub resource_labels: Vec<String>,
    /// The fault type.
    pub fault_type_label: String,
    pub severity_label: String,
    /// When the severity label is absent.
    pub default_severity: String,
}

impl Default for AlertMappingConfig {
    fn default() -> Self {
        Self {
            cluster_label: "cluster".into(),
            default_cluster: None,
            namespace_label: "namespace".into(),
            resource_labels: [
                "pod",
                "deployment",
                "statefulset",
                "daemonset",
                "job",
                "cronjob",
                "node",
                "service",
                "persistentvolumeclaim",
            ]
            .map(String::from)
            .to_vec(),
            fault_type_label: "alertname".into(),
            severity_label: "severity".into(),
            default_severity: "warning".into(),
        }
    }
}

/// `fleet.*`: cluster leases among the processes sharing one PostgreSQL (ignored on SQLite,
/// where the one process owns every cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// Lease clusters through the database so each is subscribed by one process; off: every
    /// process subscribes to every configured cluster (as before fleets existed).
    pub enabled: bool,
    /// How often a process renews its leases (one statement per beat).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A lease not renewed for this long is taken over; a process silent for this long is dead.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            heartbeat_interval: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(10),
        }
    }
}
