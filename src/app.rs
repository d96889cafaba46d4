//! The application: producer, consumer and HTTP endpoint wired together from one configuration,
//! stopped by one pair of tokens.
//!
//! This module owns the wiring and the order of shutdown (producers first, then the writer's
//! drain, then the worker pool's two-phase stop, the HTTP endpoint last). It must not contain the
//! behaviour of any part: each part is a struct from its own module with a `run`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentRunner, DEFAULT_PREFLIGHT_TIMEOUT};
use crate::config::Config;
use crate::fleet::{FleetMember, FleetSettings};
use crate::health::Health;
use crate::http::{HttpServer, HttpState};
use crate::ingest;
use crate::intake::{AlertmanagerIntake, IntakeError};
use crate::mcp::{self, McpFleet};
use crate::report::{ReportError, Reporter};
use crate::store::{Store, StoreError, StoreOptions};
use crate::supervise::Tasks;
use crate::telemetry::{self, MetricsUpkeep};
use crate::worker::{PoolSettings, WorkerPool};

/// How long a panicked task waits before it is started again (doubling on repeats).
const TASK_RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// How often histogram summaries are refreshed for `/metrics`.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Connect timeout of the HTTP client shared by every MCP session.
const MCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the database {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Mcp(#[from] mcp::McpError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    TaskPanicked(#[from] crate::supervise::TaskPanicked),
}

/// A built application: the database is open and migrated and the HTTP address is bound, so
/// the errors a user can fix show before anything runs.
pub struct App {
    config: Config,
    store: Store,
    health: Health,
    http: Option<HttpServer>,
    metrics: PrometheusHandle,
    /// Renders, archives and announces finished runs; a side task.
    reporter: Reporter,
    /// `kubectl auth can-i` checks at start (off for the demo, which has no real cluster).
    preflight: bool,
    /// The alert receivers on a listener of their own (`intake.listen`); a producer, stopped
    /// with the MCP sessions. On `http.listen` they are part of `http`.
    intake: Option<HttpServer>,
}

pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        url: config.database.url.expose().to_string(),
        max_connections: config.database.max_connections,
        acquire_timeout: config.database.acquire_timeout,
        dedup_cooldown: config.dedup.cooldown,
    }
}

/// Where ingest spills faults when the database is corrupt: next to the SQLite file, or in the
/// workspace root for PostgreSQL; bounded like the buffer (`ingest.buffer_bytes`).
pub fn spill_file(config: &Config) -> ingest::spill::SpillFile {
    let path = match crate::store::sqlite_file(config.database.url.expose()) {
        Some(db) => {
            let mut name = db.into_os_string();
            name.push("-spill.jsonl");
            std::path::PathBuf::from(name)
        }
        None => config.workspace_root.join(".ingest-spill.jsonl"),
    };
    ingest::spill::SpillFile::new(path, config.ingest.buffer_bytes as u64)
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let metrics = telemetry::install_metrics_recorder()?;
        telemetry::describe_metrics();
        telemetry::record_cluster_info(&config.clusters);
        let store = Store::connect(store_options(&config))
            .await
            .map_err(|source| AppError::Store {
                url: config.database.url.redacted(),
                source,
            })?;
        store
            .check_writable()
            .await
            .map_err(|source| AppError::Store {
                url: config.database.url.redacted(),
                source,
            })?;
        store.set_budgets(crate::store::BudgetPolicy::from_config(&config));
        store.set_related_window(config.dedup.related());
        store.set_ingest_synchronous_commit(
            config.database.ingest_synchronous_commit == crate::config::SynchronousCommit::On,
        );
        let health = Health::new();
        let reporter = Reporter::from_config(store.clone(), &config)?;
        let mut http = HttpServer::bind_configured(
            &config.http,
            HttpState::new(store.clone(), health.clone(), metrics.clone())
                .with_workspace_root(config.workspace_root.clone())
                .with_clusters(config.clusters.clone())
                .with_agent_limits(config.limits),
        )
        .await?;
        let mut intake = None;
        if let Some(receiver) = AlertmanagerIntake::from_config(&config, store.clone())? {
            let listen = config.intake.listen.trim();
            if listen.is_empty() {
                http = http.map(|h| h.merge(receiver.router()));
            } else {
                // The same connection bounds as the HTTP endpoint: a slow client must not hold
                // the receiver's descriptors either.
                intake = Some(
                    HttpServer::bind_routes(listen, receiver.router())
                        .await
                        .map_err(IntakeError::Listen)?
                        .with_limits(crate::http::ConnLimits {
                            max_connections: config.http.max_connections,
                            header_read_timeout: config.http.header_read_timeout,
                        }),
                );
            }
        }
        Ok(App {
            config,
            store,
            health,
            http,
            metrics,
            reporter,
            preflight: true,
            intake,
        })
    }

    /// Skips the start-up permission preflight (its results then say that none ran).
    pub fn without_preflight(mut self) -> Self {
        self.preflight = false;
        self
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served, when enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Where the alert receivers listen when `intake.listen` is set.
    pub fn intake_addr(&self) -> Option<SocketAddr> {
        self.intake.as_ref().map(HttpServer::local_addr)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// One line per fact an operator wants at start; secrets redacted.
    pub fn log_summary(&self) {
        let c = &self.config;
        let clusters: Vec<&str> = c.clusters.iter().map(|c| c.name.as_str()).collect();
        tracing::info!(
            clusters = clusters.len(),
            names = %clusters.join(","),
            database = %c.database.url.redacted(),
            backend = self.store.backend(),
            agent = ?c.agent.preset,
            max_concurrent_agents = c.limits.max_concurrent_agents,
            max_agents_per_cluster = c.limits.max_agents_per_cluster,
            http = %self.http_addr().map_or_else(|| "off".to_string(), |a| a.to_string()),
            workspace_root = %c.workspace_root.display(),
            "nightcrier starting"
        );
    }

    /// Runs until `soft` is cancelled (graceful: producers stop, received faults are written,
    /// running agents get `worker.shutdown_grace`) or `hard` is (agents are terminated at once).
    /// Either way interrupted incidents go back to `pending`.
    pub async fn run(
        self,
        soft: CancellationToken,
        hard: CancellationToken,
    ) -> Result<(), AppError> {
        let App {
            config,
            store,
            health,
            http,
            metrics,
            reporter,
            preflight,
            intake,
        } = self;

        // Producer: sessions → channel → writer.
        let (sender, writer) = ingest::build(
            &config.ingest,
            store.clone(),
            health.clone(),
            Some(spill_file(&config)),
        );
        let unwritten = sender.clone();
        let fleet = McpFleet::new(
            config.clusters.clone(),
            config.reconnect,
            mcp::http_client(MCP_CONNECT_TIMEOUT)?,
            Arc::new(sender),
        );

        // Consumer.
        let runner = AgentRunner::new(&config);
        // Said at start, not at the first incident: the agent would fail on every run.
        for problem in runner.missing_api_keys() {
            tracing::error!("{problem}");
        }
        let pool = WorkerPool::new(
            store.clone(),
            Arc::new(runner.clone()),
            PoolSettings::from_config(&config),
        );
        // A fleet on PostgreSQL: this process subscribes only to the clusters it leases.
        let member = (config.fleet.enabled && store.backend() == "postgres").then(|| {
            Arc::new(
                FleetMember::new(
                    store.clone(),
                    crate::fleet::instance_record(
                        &config,
                        pool.owner(),
                        http.as_ref().map(|h| h.local_addr().to_string()),
                    ),
                    config.clusters.iter().map(|c| c.name.clone()).collect(),
                    FleetSettings::from_config(&config),
                )
                .with_unwritten(Arc::new(move || unwritten.depth())),
            )
        });
        let (fleet, pool) = match &member {
            Some(m) => (
                fleet.with_ownership(m.subscribe()),
                pool.with_claims_stopped_by(m.stop_claiming_token()),
            ),
            None => (fleet, pool),
        };

        // Every task is started through `tasks` (see `crate::supervise` for the panic policies)
        // and held by a handle that aborts it when dropped: dropping this future stops them all.
        let tasks = Tasks::new();
        let producers = tasks.token();
        let writer_token = tasks.token();
        let http_token = tasks.token();
        let side = tasks.token();
        let member_token = tasks.token();
        let mut side_tasks = Vec::new();
        // Before any session starts: a SIGUSR2 sent once the process is seen subscribed is caught
        // (the first run is created, and so the handler installed, by `spawn_restarting`).
        if member.is_none() {
            side_tasks.push(tasks.spawn_restarting(
                "drain signal",
                TASK_RESTART_BACKOFF,
                side.clone(),
                crate::fleet::ignore_drain_signal,
            ));
        }

        // Restart policies (ARCHITECTURE.md, "Tasks"): the sessions hold their clusters' state
        // and restart their own supervisors, the pool holds running agents: a panic in either
        // stops the application (the next start reconciles). The writer, the fleet member and
        // the reporter keep their state in the store and are restarted.
        let fleet_task = tasks.spawn_critical("mcp fleet", fleet.run(producers.clone()));
        let member_task = member.map(|m| {
            tasks.spawn_restarting(
                "fleet",
                TASK_RESTART_BACKOFF,
                member_token.clone(),
                move |tok| m.clone().run(tok),
            )
        });
        let writer_task = tasks.spawn_restarting(
            "ingest-writer",
            TASK_RESTART_BACKOFF,
            writer_token.clone(),
            move |tok| writer.clone().run(tok),
        );
        let (pool_soft, pool_hard) = (tasks.token(), hard.child_token());
        let pool_task = tasks.spawn_critical("worker pool", pool.run(pool_soft.clone(), pool_hard));
        // Preflight results land in the workspaces of runs that start after it finishes.
        if preflight {
            let t = side.clone();
            side_tasks.push(tasks.spawn_one_shot("preflight", async move {
                tokio::select! {
                    _ = t.cancelled() => {}
                    _ = runner.preflight_all(DEFAULT_PREFLIGHT_TIMEOUT) => {}
                }
            }));
        }
        side_tasks.push(tasks.spawn_restarting(
            "metrics upkeep",
            TASK_RESTART_BACKOFF,
            side.clone(),
            move |t| MetricsUpkeep::new(metrics.clone(), METRICS_UPKEEP_INTERVAL).run(t),
        ));
        // A restarted reporter is built again from the configuration (it was built from it once
        // already); what it had not marked reported is reported again from the store.
        let mut first_reporter = Some(reporter);
        let (reporter_store, reporter_config) = (store.clone(), config.clone());
        side_tasks.push(tasks.spawn_restarting(
            "reporter",
            TASK_RESTART_BACKOFF,
            side.clone(),
            move |t| {
                let reporter = first_reporter.take().map(Ok).unwrap_or_else(|| {
                    Reporter::from_config(reporter_store.clone(), &reporter_config)
                });
                async move {
                    match reporter {
                        Ok(r) => r.run(t).await,
                        Err(e) => tracing::error!(error = %e, "cannot rebuild the reporter"),
                    }
                }
            },
        ));
        let intake_task = intake.map(|server| {
            let t = producers.clone();
            tasks.spawn_critical("intake listener", async move {
                if let Err(e) = server.run(t).await {
                    tracing::warn!(error = %e, "intake listener stopped with an error");
                }
            })
        });
        let http_task = http.map(|server| {
            let t = http_token.clone();
            tasks.spawn_critical("http", async move {
                if let Err(e) = server.run(t).await {
                    tracing::warn!(error = %e, "HTTP endpoint stopped with an error");
                }
            })
        });

        tokio::select! {
            _ = soft.cancelled() => {}
            _ = hard.cancelled() => {}
            _ = tasks.failed() => {}
        }
        tracing::info!("shutting down: stopping MCP sessions, then the writer, then the workers");
        // Producers first, so the writer's drain sees everything that was received.
        producers.cancel();
        side.cancel();
        pool_soft.cancel();
        fleet_task.stopped().await;
        // Sessions are closed: now hand the leases over (before the writer's drain, which may
        // take a while; what it writes was received while the leases were ours).
        member_token.cancel();
        if let Some(task) = member_task {
            task.stopped().await;
        }
        if let Some(task) = intake_task {
            task.stopped().await;
        }
        writer_token.cancel();
        writer_task.stopped().await;
        pool_task.stopped().await;
        for task in side_tasks {
            let name = task.name();
            task.stopped().await;
            tracing::debug!(task = name, "stopped");
        }
        http_token.cancel();
        if let Some(h) = http_task {
            h.stopped().await;
        }
        store.close().await;
        if let Some(failure) = tasks.failure() {
            tracing::error!("nightcrier stopped after a task panicked");
            return Err(failure.into());
        }
        tracing::info!("nightcrier stopped");
        Ok(())
    }
}
