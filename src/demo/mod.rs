//! `nightcrier demo`: the newcomer's first command. Simulated clusters, embedded SQLite and the
//! built-in demo agent, all in one process, with nothing configured.
//!
//! This module owns the demo's set-up (a configuration written to the demo directory so other
//! terminals can watch with `--config`); it must not be used by production paths.

pub mod agent;
mod alerts;
pub mod diagnose;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, AppError};
use crate::config::{AgentPreset, ClusterConfig, Config, DatabaseUrl, McpConfig, TriageConfig};
use crate::incident::IncidentStatus;
use crate::simulate::{Rate, SimConfig, SimError, SimHandle, Simulator};
use crate::store::ListFilter;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Stop after this long (Ctrl-C stops earlier).
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Where the database, workspaces and the demo's configuration go.
    #[arg(long, default_value = "./nightcrier-demo")]
    pub dir: PathBuf,
    /// Simulated clusters.
    #[arg(long, default_value_t = 3)]
    pub clusters: u16,
    /// Distinct faults per cluster.
    #[arg(long, default_value_t = 4)]
    pub faults: usize,
    /// How long the demo agent pretends to investigate each incident.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub agent_think: Duration,
    /// Address of /healthz, /readyz and /metrics (a free port is used if it is taken).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub http_listen: String,
    /// Also turn on the Alertmanager receiver and post an Alertmanager-shaped alert to it.
    #[arg(long)]
    pub alertmanager: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare the demo directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("cannot find nightcrier's own executable for the demo agent: {0}")]
    Exe(std::io::Error),
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
}

/// The demo's configuration: everything under `dir`, agents limited so the limits show.
pub fn demo_config(args: &DemoArgs, dir: &Path, exe: &Path, endpoints: &[String]) -> Config {
    let mut c = Config::default();
    c.database.url = DatabaseUrl::new(format!("sqlite://{}", dir.join("nightcrier.db").display()));
    c.workspace_root = dir.join("incidents");
    c.limits.max_concurrent_agents = 2;
    c.limits.max_agents_per_cluster = 1;
    c.worker.poll_interval = Duration::from_secs(1);
    c.http.listen = args.http_listen.clone();
    c.agent.preset = AgentPreset::Command;
    c.agent.timeout = Duration::from_secs(120);
    c.agent.command = vec![
        exe.display().to_string(),
        "demo-agent".into(),
        "--think".into(),
        humantime::format_duration(args.agent_think).to_string(),
    ];
    c.clusters = endpoints
        .iter()
        .enumerate()
        .map(|(i, endpoint)| ClusterConfig {
            name: format!("demo-{}", i + 1),
            mcp: McpConfig::new(endpoint.clone()),
            triage: TriageConfig::default(),
            agent: None,
            evidence: Default::default(),
            environment: None,
            labels: Default::default(),
        })
        .collect();
    c
}

fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    cwd.and_then(|d| path.strip_prefix(d).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = std::path::absolute(&args.dir).map_err(|source| DemoError::Dir {
        path: args.dir.clone(),
        source,
    })?;
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::Dir {
        path: dir.clone(),
        source,
    })?;
    let exe = std::env::current_exe().map_err(DemoError::Exe)?;

    let mut sims: Vec<SimHandle> = Vec::new();
    for i in 0..args.clusters {
        sims.push(
            Simulator::start(SimConfig {
                context: format!("kind-demo-{}", i + 1),
                rate: Some(Rate {
                    count: 1,
                    per: Duration::from_secs(3),
                }),
                faults: args.faults,
                // Re-sent often, so the demo shows repeats attaching to open incidents.
                reemit_every: Duration::from_secs(20),
                seed: 42 + u64::from(i),
                diagnostic_every: Some(Duration::from_secs(30)),
                ..SimConfig::default()
            })
            .await?,
        );
    }
    let endpoints: Vec<String> = sims.iter().map(SimHandle::endpoint).collect();
    let mut config = demo_config(&args, &dir, &exe, &endpoints);
    if args.alertmanager && !config.clusters.is_empty() {
        alerts::enable(&mut config, &dir).map_err(|source| DemoError::Dir {
            path: dir.clone(),
            source,
        })?;
    }

    let config_path = dir.join("nightcrier.yaml");
    let yaml = format!(
        "# Written by `nightcrier demo`: lets other terminals watch the demo with --config.\n{}",
        config.to_redacted_yaml()
    );
    std::fs::write(&config_path, yaml).map_err(|source| DemoError::Dir {
        path: config_path.clone(),
        source,
    })?;

    let app = match App::build(config.clone()).await {
        Ok(app) => app,
        Err(AppError::Http(e)) => {
            tracing::warn!(error = %e, "HTTP address taken; using a free port instead");
            config.http.listen = "127.0.0.1:0".into();
            App::build(config.clone()).await?
        }
        Err(e) => return Err(e.into()),
    }
    // The simulated clusters have no API server for kubectl to ask.
    .without_preflight();
    let metrics_url = app.http_addr().map_or_else(
        || "(HTTP off)".to_string(),
        |a| format!("http://{a}/metrics"),
    );
    let me = format!("{} --config {}", shown(&exe), shown(&config_path));
    println!(
        "\nnightcrier demo: {n} simulated clusters, SQLite in {dir}, the built-in DEMO agent (no AI).\n\
         Limits: 2 agents at once, 1 per cluster. Stops after {dur} or on Ctrl-C.\n\n\
         Watch it from another terminal:\n  \
         {me} status\n  \
         {me} incidents list\n  \
         {me} tail <incident-id>\n  \
         curl -s {metrics_url}\n\n\
         Reports land in {ws}/<incident-id>/output/investigation.md\n",
        n = args.clusters,
        dir = shown(&dir),
        dur = humantime::format_duration(args.duration),
        ws = shown(&config.workspace_root),
    );
    // Dropped (aborted) when the demo ends.
    let tasks = crate::supervise::Tasks::new();
    let mut poster = None;
    if let (true, Some(addr)) = (config.intake.alertmanager.is_some(), app.http_addr()) {
        println!(
            "An Alertmanager-shaped alert is posted to the receiver in a moment; post it again with:\n  \
             curl -H \"Authorization: Bearer $(cat {token})\" -H 'content-type: application/json' \
             --data @{body} http://{addr}{path}\n",
            token = shown(&alerts::token_file(&dir)),
            body = shown(&alerts::payload_file(&dir)),
            path = crate::intake::ALERTMANAGER_PATH,
        );
        poster = Some(tasks.spawn_one_shot("demo alert", alerts::post_example(addr, dir.clone())));
    }
    app.log_summary();

    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let handler =
        crate::signals::spawn_handler(soft.clone(), hard.clone()).map_err(DemoError::Signals)?;
    let timer = {
        let soft = soft.clone();
        let d = args.duration;
        tasks.spawn_one_shot("demo timer", async move {
            tokio::time::sleep(d).await;
            tracing::info!("demo duration reached");
            soft.cancel();
        })
    };
    let result = app.run(soft, hard.clone()).await;
    drop((timer, poster));
    handler.abort();
    for sim in sims {
        sim.shutdown().await;
    }
    result?;

    summarize(&store_summary_config(&config), &config.workspace_root).await;
    Ok(())
}

fn store_summary_config(config: &Config) -> crate::store::StoreOptions {
    crate::app::store_options(config)
}

/// Final words: what happened, where the reports are.
async fn summarize(opts: &crate::store::StoreOptions, workspace_root: &Path) {
    let Ok(store) = crate::store::Store::connect(opts.clone()).await else {
        return;
    };
    let all = store
        .list(&ListFilter {
            limit: Some(1000),
            ..ListFilter::default()
        })
        .await
        .unwrap_or_default();
    let count = |s: IncidentStatus| all.iter().filter(|i| i.status == s).count();
    let occurrences: i64 = all.iter().map(|i| i.occurrences).sum();
    println!(
        "\ndemo finished: {} incidents from {} fault notifications; {} succeeded, {} failed, {} pending, {} running.",
        all.len(),
        occurrences,
        count(IncidentStatus::Succeeded),
        count(IncidentStatus::Failed) + count(IncidentStatus::TimedOut),
        count(IncidentStatus::Pending),
        count(IncidentStatus::Running),
    );
    // What the demo agent concluded from each incident's evidence bundle.
    for i in all
        .iter()
        .filter(|i| i.status == IncidentStatus::Succeeded)
        .take(12)
    {
        let ws = workspace_root.join(i.id.to_string());
        if let Some(h) = crate::report::verdict::read(&ws).and_then(|v| v.headline()) {
            println!(
                "  {} {}/{}: {h}",
                i.fault_type, i.resource_kind, i.resource_name
            );
        }
    }
    if let Some(done) = all.iter().find(|i| i.status == IncidentStatus::Succeeded) {
        println!(
            "an example report: {}",
            shown(&crate::agent::Workspace::new(workspace_root, done.id).report_file())
        );
    }
    store.close().await;
}
