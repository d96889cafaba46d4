//! The agent runtime: one incident's workspace, the agent's argv (presets, command, container),
//! its process group, timeout and outcome, and the cluster permission preflight.
//!
//! This module owns everything about running one agent process. It must not know the database
//! schema: it gets an [`Incident`] and its occurrences, and returns a [`RunReport`]; the worker
//! records it. It never writes agent output to nightcrier's stdout: that goes to the
//! workspace's `logs/agent.log` only.
//!
//! Files: `workspace` (layout, modes) and `workspace/safe` ([`WorkspaceDir`]: the only way
//! nightcrier touches files in a workspace, through directory descriptors, never following a
//! symlink the agent planted), `prompt` (the template), `presets` (each CLI's argv),
//! `invocation` (argv + environment of a run), `container` (the docker/podman wrapper),
//! `process` (spawn, timeout, group kill), `log_cap` (the agent's output into a capped
//! `agent.log`), `procfs` (finding a group's processes, leftover groups after a crash, strays
//! that left the group), `outcome` (exit + report → status), `preflight` (kubectl auth can-i,
//! API keys), `mcp_proxy` (the per-run read-only MCP endpoint the agent gets).

mod container;
mod error;
pub mod failfast;
mod invocation;
mod log_cap;
pub mod mcp_proxy;
mod outcome;
pub mod phases;
mod preflight;
mod presets;
mod process;
mod procfs;
mod prompt;
mod usage;
mod workspace;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use std::collections::BTreeMap;

use crate::config::{AgentConfig, AgentPreset, ClusterConfig, Config, Secret};
use crate::incident::{AgentRun, FaultOccurrence, Incident, RunOutcome, RunStatus};

pub use container::{container_name, runtime_binary};
pub use error::AgentError;
pub use invocation::{build as build_invocation, Invocation, RunSpec, ENV_PASSTHROUGH};
pub use outcome::{REASON_INTERRUPTED, REASON_REPORT_MISSING};
pub use preflight::{
    preflight, preflight_with, CheckResult, ClusterPermissions, PermissionCheck,
    DEFAULT_PREFLIGHT_TIMEOUT, REQUIRED_READS,
};
pub use presets::{key_variables, required_keys, MCP_TOKEN_VAR, MCP_URL_VAR};
pub use procfs::{
    find_agent_groups, kill_leftover_group, live_group_members, live_processes_with_marker,
    marker_value, wait_group_gone, AgentGroup, MARKER_VAR,
};
pub use prompt::{quote, REPORT_SECTIONS, VERDICT_FILE};
pub use workspace::{
    read_bounded, Bounded, FileEntry, Workspace, WorkspaceDir, MAX_OCCURRENCES_IN_FILE,
    MAX_REPORT_BYTES,
};

/// How long [`AgentRunner::kill_leftover`] waits for a killed group to disappear.
const LEFTOVER_EXIT_BOUND: Duration = Duration::from_secs(5);
/// After the agent's processes are gone, how long its output may take to reach the log; a
/// writer that escaped the kill (in a container, say) cannot hold the run open longer.
const LOG_DRAIN_BOUND: Duration = Duration::from_secs(5);

/// Everything one run needs besides the incident; built once from the configuration. Cheap to
/// clone: clones share the preflight results.
#[derive(Clone)]
pub struct AgentRunner {
    workspace_root: PathBuf,
    default_agent: Arc<AgentConfig>,
    clusters: Arc<HashMap<String, ClusterEntry>>,
    /// The latest preflight of each cluster, copied into every workspace. A std lock: it is
    /// never held across an await.
    permissions: Arc<RwLock<HashMap<String, ClusterPermissions>>>,
    kubectl: PathBuf,
    /// The presets' API-key variables found in nightcrier's environment at start.
    inherited: Arc<BTreeMap<String, Secret>>,
    /// For the evidence sessions: one connection pool for all of them.
    evidence_http: reqwest::Client,
    /// Evidence sessions kept between runs of a cluster (saves the MCP handshake per run).
    evidence_sessions: Arc<crate::evidence::Sessions>,
    /// Prices tokens when a CLI reports no cost (`pricing`).
    prices: Arc<crate::accounting::Prices>,
}

struct ClusterEntry {
    config: ClusterConfig,
    agent: Option<AgentConfig>,
    /// Absolute: the agent's working directory is its workspace, not ours.
    kubeconfig: Option<PathBuf>,
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// succeeded / failed / timed_out with a reason (`exit code 2`, `killed by signal 9`,
    /// `report missing`, `report too small (12 bytes)`, `timed out after 15m`, `interrupted`).
    pub outcome: RunOutcome,
    /// The incident's workspace directory ([`Workspace::dir`]; the report is at
    /// [`Workspace::report_file`] of it).
    pub workspace: PathBuf,
    /// The agent's log, recorded with the run.
    pub log_path: PathBuf,
    pub duration: Duration,
    /// The agent's pid (and process-group id), when it was started.
    pub pid: Option<u32>,
    /// `cancel` fired: the run was stopped, not judged. The outcome is `failed` with reason
    /// [`REASON_INTERRUPTED`]; the worker decides what to record (e.g. re-queue on shutdown).
    pub interrupted: bool,
    /// What the agent's CLI reported about its tokens and cost (unknown when it did not run or
    /// printed nothing recognisable).
    pub usage: crate::accounting::RunUsage,
    /// The agent could not be started for lack of a resource (descriptors, memory, disk): the
    /// worker gives the incident back (requeue with `outcome.reason`) instead of completing it.
    pub retry_later: bool,
}

/// Paths in the configuration are relative to nightcrier's working directory; the agent runs
/// elsewhere.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl AgentRunner {
    pub fn new(config: &Config) -> Self {
        let clusters = config
            .clusters
            .iter()
            .map(|c| {
                let entry = ClusterEntry {
                    config: c.clone(),
                    agent: c.agent.clone(),
                    kubeconfig: c.triage.kubeconfig.as_deref().map(absolute),
                };
                (c.name.clone(), entry)
            })
            .collect();
        Self {
            workspace_root: absolute(&config.workspace_root),
            default_agent: Arc::new(config.agent.clone()),
            clusters: Arc::new(clusters),
            permissions: Arc::default(),
            kubectl: PathBuf::from("kubectl"),
            inherited: Arc::new(inherited_keys(|k| std::env::var(k).ok())),
            evidence_http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            evidence_sessions: Arc::default(),
            prices: Arc::new(crate::accounting::Prices::from_map(
                config.pricing.models.clone(),
            )),
        }
    }

    /// Uses these values for the presets' API-key variables instead of nightcrier's
    /// environment (tests).
    pub fn with_inherited_env(mut self, vars: BTreeMap<String, Secret>) -> Self {
        self.inherited = Arc::new(vars);
        self
    }

    /// For each agent block in force (global, then per cluster) whose preset cannot find any of
    /// its API-key variables in `agent.env` or the inherited environment: a message saying so.
    /// Logged at start so that a missing key is not first seen at the first incident.
    pub fn missing_api_keys(&self) -> Vec<String> {
        let mut blocks: Vec<(String, &AgentConfig)> = vec![("agent".into(), &self.default_agent)];
        let mut names: Vec<&String> = self.clusters.keys().collect();
        names.sort();
        for name in names {
            if let Some(agent) = self.clusters[name].agent.as_ref() {
                blocks.push((format!("clusters[{name}].agent"), agent));
            }
        }
        blocks
            .into_iter()
            .filter_map(|(key, agent)| {
                let required = presets::required_keys(agent.preset);
                let found = required
                    .iter()
                    .any(|k| agent.env.contains_key(*k) || self.inherited.contains_key(*k));
                (!required.is_empty() && !found).then(|| {
                    format!(
                        "{key}: preset `{}` has no API key: set {} in nightcrier's environment \
                         or in {key}.env",
                        invocation::preset_name(agent.preset),
                        required.join(" or ")
                    )
                })
            })
            .collect()
    }

    /// Uses this kubectl for the preflight instead of the one on `PATH`.
    pub fn with_kubectl(mut self, kubectl: impl Into<PathBuf>) -> Self {
        self.kubectl = kubectl.into();
        self
    }

    /// The agent block in force for `cluster`: its own when it has one (it replaces the global
    /// block entirely), else the global one (also for clusters no longer configured).
    pub fn for_cluster(&self, cluster: &str) -> &AgentConfig {
        self.clusters
            .get(cluster)
            .and_then(|c| c.agent.as_ref())
            .unwrap_or(&self.default_agent)
    }

    pub fn workspace(&self, incident: &Incident) -> Workspace {
        Workspace::new(&self.workspace_root, incident.id)
    }

    /// Runs the permission preflight for every cluster with triage enabled (two clusters at a
    /// time) and keeps the results for the workspaces of later runs.
    pub async fn preflight_all(&self, timeout: Duration) -> Vec<ClusterPermissions> {
        use futures::StreamExt;
        // Owned values: a stream of futures borrowing `self` is not provably `Send`, and the app
        // runs the preflight in a spawned task.
        let clusters: Vec<ClusterConfig> = self
            .clusters
            .values()
            .map(|c| c.config.clone())
            .filter(|c| c.triage.enabled)
            .collect();
        let kubectl = self.kubectl.clone();
        let results: Vec<ClusterPermissions> = futures::stream::iter(clusters)
            .map(|c| {
                let kubectl = kubectl.clone();
                async move { preflight_with(&kubectl, &c, timeout).await }
            })
            .buffer_unordered(2)
            .collect()
            .await;
        for perms in &results {
            self.set_permissions(perms.clone());
        }
        results
    }

    pub fn set_permissions(&self, perms: ClusterPermissions) {
        let mut map = self.permissions.write().unwrap_or_else(|e| e.into_inner());
        map.insert(perms.cluster.clone(), perms);
    }

    pub fn permissions(&self, cluster: &str) -> Option<ClusterPermissions> {
        let map = self.permissions.read().unwrap_or_else(|e| e.into_inner());
        map.get(cluster).cloned()
    }

    /// At restart, before a previous boot's running incident is re-queued: kills what is left
    /// of that attempt's agent. `run.pid`'s group is killed only if a member carries the
    /// attempt's marker (the pid may have been reused since); groups carrying the marker are
    /// also looked for by scanning `/proc`, for a crash that came before the pid was recorded.
    /// Waits (bounded) until they are gone. Failures are logged: recovery goes on regardless.
    pub async fn kill_leftover(&self, incident: &Incident, run: &AgentRun) {
        let mut groups: Vec<i32> = run.pid.into_iter().collect();
        groups.extend(
            find_agent_groups()
                .into_iter()
                .filter(|g| g.incident_id == incident.id && g.attempt == run.attempt)
                .map(|g| g.pgid),
        );
        groups.sort_unstable();
        groups.dedup();
        for pgid in groups {
            match kill_leftover_group(pgid, incident.id, run.attempt) {
                Ok(true) => {
                    let left = wait_group_gone(pgid, LEFTOVER_EXIT_BOUND).await;
                    if !left.is_empty() {
                        tracing::warn!(incident_id = %incident.id, pgid, ?left, "leftover agent processes still alive after SIGKILL");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(incident_id = %incident.id, pgid, error = %e, "cannot kill a leftover agent group")
                }
            }
        }
    }

    /// Prepares `<workspace_root>/<incident-id>/`, starts the agent in its own process group and
    /// waits for it, bounded by the agent timeout. `on_started(pid)` is called once the process
    /// exists (the worker records the pid for crash recovery). When `cancel` fires the process
    /// group is terminated (SIGTERM, then SIGKILL after `kill_grace`) and the report says
    /// `interrupted` ([`RunReport::interrupted`]). Never leaves a process of the agent's group
    /// behind, even when this future is dropped.
    pub async fn run(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
    ) -> RunReport {
        let started = Instant::now();
        let ws = self.workspace(incident);
        let agent = self.for_cluster(&incident.cluster);
        let mut phases = phases::Phases::default();
        // Dropped (listener closed, token dead) when the run ends, however it ends.
        let proxy = self.start_proxy(agent, incident, &ws).await;
        phases.lap(|p| &mut p.proxy, started);
        let report = self
            .run_with(
                incident,
                occurrences,
                attempt,
                cancel,
                on_started,
                (proxy.as_ref(), &mut phases),
            )
            .await;
        let stopping = Instant::now();
        if let Some(proxy) = proxy {
            proxy.shutdown().await;
        }
        phases.lap(|p| &mut p.proxy, stopping);
        phases.emit(incident.id, attempt, started.elapsed());
        report
    }

    /// The per-run MCP endpoint, when this run offers MCP tools. A failure to start it is
    /// logged and the run goes on without MCP tools.
    async fn start_proxy(
        &self,
        agent: &AgentConfig,
        incident: &Incident,
        ws: &Workspace,
    ) -> Option<mcp_proxy::ProxyHandle> {
        if !agent.mcp_tools {
            return None;
        }
        let entry = self.clusters.get(&incident.cluster)?;
        let started = mcp_proxy::McpProxy::start_with_client(
            &self.evidence_http,
            &incident.cluster,
            &entry.config.mcp,
            ws.evidence_dir(),
            mcp_proxy::ProxyLimits::from_agent(agent),
        )
        .await;
        match started {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                tracing::warn!(incident_id = %incident.id, cluster = %incident.cluster, error = %e, "agent runs without MCP tools");
                None
            }
        }
    }

    async fn run_with(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cancel: CancellationToken,
        on_started: &(dyn Fn(u32) + Send + Sync),
        (proxy, phases): (Option<&mcp_proxy::ProxyHandle>, &mut phases::Phases),
    ) -> RunReport {
        let started = Instant::now();
        let ws = self.workspace(incident);
        let agent = self.for_cluster(&incident.cluster);
        let mut report = RunReport {
            outcome: failed(String::new()),
            workspace: ws.dir().to_path_buf(),
            log_path: ws.log_file(),
            duration: Duration::ZERO,
            pid: None,
            interrupted: false,
            usage: crate::accounting::RunUsage::default(),
            retry_later: false,
        };
        let evidence = self.gather_evidence(&ws, incident, &cancel).await;
        let mut mark = phases.lap(|p| &mut p.evidence, started);
        let context = RunContext {
            evidence: evidence.as_ref(),
            proxy,
        };
        let (invocation, stdin, log) =
            match self.prepare(&ws, agent, incident, occurrences, attempt, context) {
                Ok(prepared) => prepared,
                Err(e) => return not_started(report, &e, started, incident),
            };
        if cancel.is_cancelled() {
            report.interrupted = true;
            return finish(report, failed(REASON_INTERRUPTED.into()), started, incident);
        }
        let marker = marker_value(incident.id, attempt);
        let (capture, out) = match log_cap::LogCapture::new(log, agent.max_log_bytes) {
            Ok(c) => c,
            Err(e) => {
                let e = AgentError::workspace(ws.log_file())(e);
                return finish(report, failed(e.to_string()), started, incident);
            }
        };
        let capture = Capture::start(capture);
        mark = phases.lap(|p| &mut p.prepare, mark);
        let spawning = mark;
        let child = match process::spawn(&invocation, stdin, out, &marker) {
            Ok(child) => child,
            Err(e) => {
                capture.finish(incident).await;
                return not_started(report, &e, started, incident);
            }
        };
        mark = phases.lap(|p| &mut p.spawn, mark);
        report.pid = child.id();
        if let Some(pid) = report.pid {
            tracing::debug!(incident_id = %incident.id, pid, program = %invocation.program, "agent started");
            on_started(pid);
        }
        let limits = process::Limits {
            timeout: agent.timeout,
            kill_grace: agent.kill_grace,
        };
        let outcome = match process::supervise(
            child,
            limits,
            &cancel,
            invocation.stop_command.as_ref(),
            &marker,
        )
        .await
        {
            Ok((ending, ended)) => {
                phases.process = ended.saturating_duration_since(spawning);
                mark = phases.lap(|p| &mut p.reap, ended);
                report.interrupted = matches!(ending, process::Ending::Interrupted);
                let outcome =
                    outcome::evaluate(&ending, &ws, agent.min_report_bytes, agent.timeout);
                mark = phases.lap(|p| &mut p.evaluate, mark);
                outcome
            }
            Err(e) => failed(e.to_string()),
        };
        capture.finish(incident).await;
        mark = phases.lap(|p| &mut p.log, mark);
        report.usage = usage::of_run(&ws.log_file(), &self.prices, agent.model.as_deref());
        phases.lap(|p| &mut p.usage, mark);
        finish(report, outcome, started, incident)
    }

    /// The evidence bundle (`evidence/`), when the cluster's `evidence.enabled`; bounded by its
    /// budget and never an error (gaps are recorded in it).
    async fn gather_evidence(
        &self,
        ws: &Workspace,
        incident: &Incident,
        cancel: &CancellationToken,
    ) -> Option<crate::evidence::Bundle> {
        let entry = self.clusters.get(&incident.cluster)?;
        if !entry.config.evidence.enabled || ws.prepare().is_err() {
            return None;
        }
        let target = crate::evidence::Target {
            cluster: &incident.cluster,
            fault_type: &incident.fault_type,
            kind: &incident.resource_kind,
            namespace: incident.namespace.as_deref(),
            name: &incident.resource_name,
        };
        let dir = ws.evidence_dir();
        let bundle = crate::evidence::gather_with(
            &self.evidence_http,
            Some(&self.evidence_sessions),
            &entry.config.mcp,
            &entry.config.evidence,
            target,
            &dir,
            cancel,
        )
        .await;
        tracing::debug!(
            incident_id = %incident.id,
            cluster = %incident.cluster,
            calls = bundle.index.calls.len(),
            gaps = bundle.index.gaps().count(),
            duration_ms = bundle.index.duration_ms,
            "evidence gathered"
        );
        Some(bundle)
    }

    /// Everything before the spawn: directories, `incident.json`, `prompt.md`,
    /// `cluster_permissions.json`, the preset's state files, the opened stdin file (if the
    /// preset reads one) and the opened log.
    fn prepare(
        &self,
        ws: &Workspace,
        agent: &AgentConfig,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        context: RunContext<'_>,
    ) -> Result<(Invocation, Option<File>, File), AgentError> {
        let RunContext { evidence, proxy } = context;
        ws.prepare()?;
        let cluster = self.clusters.get(&incident.cluster).map(|e| &e.config);
        ws.write_incident(incident, occurrences, attempt, cluster)?;
        let system_prompt =
            match &agent.system_prompt_file {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|source| {
                    AgentError::SystemPrompt {
                        path: path.clone(),
                        source,
                    }
                })?),
                None => None,
            };
        let separate_system_prompt = presets::has_system_prompt_option(agent.preset);
        let appended = (!separate_system_prompt)
            .then_some(system_prompt.as_deref())
            .flatten();
        let mut text = prompt::render(
            incident,
            occurrences,
            ws.dir(),
            &ws.report_file(),
            appended,
            evidence,
        );
        if let Some(entry) = self.clusters.get(&incident.cluster) {
            text.push_str(&prompt::cluster_context(&entry.config));
        }
        let entry = self.clusters.get(&incident.cluster);
        let kubectl = agent.kubectl && entry.is_some_and(|c| c.kubeconfig.is_some());
        text.push_str(&prompt::agent_tools_section(
            proxy.map(|_| mcp_proxy::SERVER_NAME),
            kubectl,
        ));
        if let Some(extra) = agent
            .additional_prompt
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            text.push_str(&format!("\n{extra}\n"));
        }
        ws.write_input(&ws.prompt_file(), text.as_bytes())?;
        self.write_permissions(ws, &incident.cluster)?;

        let (url, url_with_token) = proxy.map(|p| (p.url(), p.url_with_token())).unzip();
        let mcp = proxy
            .zip(url.as_deref())
            .zip(url_with_token.as_deref())
            .map(|((p, url), url_with_token)| presets::McpServer {
                name: mcp_proxy::SERVER_NAME,
                url,
                url_with_token,
                token: p.token(),
                timeout: agent.mcp_call_timeout,
            });
        let spec = RunSpec {
            agent,
            incident_id: incident.id,
            attempt,
            cluster: &incident.cluster,
            workspace: ws,
            kubeconfig: entry.and_then(|c| c.kubeconfig.as_deref()),
            prompt: &text,
            system_prompt: separate_system_prompt
                .then_some(system_prompt.as_deref())
                .flatten(),
            mcp,
            inherited: &self.inherited,
        };
        let invocation = invocation::build(&spec)?;
        for dir in &invocation.dirs {
            ws.create_dir(dir)?;
        }
        for (path, content) in &invocation.files {
            ws.write_input(path, content.as_bytes())?;
        }
        let stdin = match &invocation.stdin {
            Some(path) => match ws.open_file(path)? {
                FileEntry::File { file, .. } => Some(file),
                FileEntry::Missing | FileEntry::NotRegular => {
                    return Err(AgentError::workspace(path)(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the agent's stdin file is missing or not a regular file",
                    )))
                }
            },
            None => None,
        };
        let mut log = ws.open_log()?;
        writeln!(
            log,
            "--- nightcrier: attempt {attempt} of incident {} started {}: {} ---",
            incident.id,
            chrono::Utc::now().to_rfc3339(),
            invocation.program
        )
        .map_err(AgentError::workspace(ws.log_file()))?;
        Ok((invocation, stdin, log))
    }

    fn write_permissions(&self, ws: &Workspace, cluster: &str) -> Result<(), AgentError> {
        let value = match self.permissions(cluster) {
            Some(perms) => serde_json::to_value(perms),
            None => Ok(serde_json::json!({
                "cluster": cluster,
                "preflight": "not_run",
                "note": "no permission preflight has run for this cluster since nightcrier started",
            })),
        };
        let json = value
            .and_then(|v| serde_json::to_vec_pretty(&v))
            .map_err(|source| AgentError::Json {
                what: "cluster_permissions.json",
                source,
            })?;
        ws.write_input(&ws.permissions_file(), &json)
    }
}

/// The running [`log_cap::LogCapture`] of one run; aborted if the run's future is dropped.
struct Capture {
    task: tokio::task::JoinHandle<std::io::Result<log_cap::Captured>>,
    stop: CancellationToken,
}

impl Capture {
    fn start(capture: log_cap::LogCapture) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(capture.run(stop.clone()));
        Self { task, stop }
    }

    /// Waits (bounded) for the output to end, then for the tail to be written.
    async fn finish(mut self, incident: &Incident) {
        let result = match tokio::time::timeout(LOG_DRAIN_BOUND, &mut self.task).await {
            Ok(r) => r,
            Err(_) => {
                self.stop.cancel();
                (&mut self.task).await
            }
        };
        match result {
            Ok(Ok(c)) if c.cut > 0 => tracing::info!(
                incident_id = %incident.id, received = c.received, cut = c.cut,
                "agent output above agent.max_log_bytes was cut from agent.log"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(incident_id = %incident.id, error = %e, "writing agent.log failed")
            }
            Err(e) => {
                tracing::warn!(incident_id = %incident.id, error = %e, "agent log task failed")
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The presets' API-key variables present in an environment.
fn inherited_keys(get: impl Fn(&str) -> Option<String>) -> BTreeMap<String, Secret> {
    let presets = [
        AgentPreset::Claude,
        AgentPreset::Codex,
        AgentPreset::Gemini,
        AgentPreset::Goose,
    ];
    presets
        .iter()
        .flat_map(|p| presets::key_variables(*p).iter())
        .filter_map(|k| {
            Some((
                k.to_string(),
                Secret::new(get(k).filter(|v| !v.is_empty())?),
            ))
        })
        .collect()
}

/// What a run has gathered or started before its prompt and invocation are written.
#[derive(Clone, Copy)]
struct RunContext<'a> {
    evidence: Option<&'a crate::evidence::Bundle>,
    /// The per-run MCP endpoint, when MCP tools are offered.
    proxy: Option<&'a mcp_proxy::ProxyHandle>,
}

fn failed(reason: String) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed,
        reason: Some(reason),
        exit_code: None,
    }
}

/// Prefix of the reason of a run that could not start for lack of a resource.
pub const REASON_RESOURCES: &str = "resources exhausted, will retry";

/// Ends a run whose agent could not be started: `failed` for an error of the run itself; given
/// back ([`RunReport::retry_later`], the worker requeues it) when the machine ran out of
/// descriptors, memory or disk while preparing it.
fn not_started(
    mut report: RunReport,
    e: &AgentError,
    started: Instant,
    incident: &Incident,
) -> RunReport {
    report.retry_later = e.is_resource_exhausted();
    let outcome = if report.retry_later {
        failed(format!("{REASON_RESOURCES}: {e}"))
    } else {
        failed(e.to_string())
    };
    finish(report, outcome, started, incident)
}

/// Metrics (`nightcrier_agent_run*`) are the worker's: it knows what it records for a run.
fn finish(
    mut report: RunReport,
    outcome: RunOutcome,
    started: Instant,
    incident: &Incident,
) -> RunReport {
    report.duration = started.elapsed();
    report.outcome = outcome;
    tracing::debug!(
        incident_id = %incident.id,
        cluster = %incident.cluster,
        status = %report.outcome.status,
        reason = report.outcome.reason.as_deref().unwrap_or(""),
        duration_ms = report.duration.as_millis() as u64,
        "agent run finished"
    );
    report
}
