//! The command line: parses arguments, loads the configuration, calls into the library and
//! prints for humans (or JSON for scripts).
//!
//! This is the only module that prints to stdout for people and the only one that uses `anyhow`.
//! It must not contain logic that tests cannot reach through the library.

mod config_cmd;
mod costs;
mod fleet;
mod gocompat_cmd;
mod incidents;
mod output;
mod run;

mod status;
mod tail;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, LoadedConfig};
use crate::store::Store;
use crate::telemetry::{self, LogFormat};

/// `--version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NIGHTCRIER_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "nightcrier",
    version = VERSION,
    about = "Watches Kubernetes clusters through their MCP servers and runs an AI triage agent on every fault."
)]
pub struct Cli {
    /// Configuration file [default: ./nightcrier.yaml, then /etc/nightcrier/nightcrier.yaml].
    #[arg(long, global = true, env = "NIGHTCRIER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Format of the system log on stdout.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `debug` or `nightcrier=debug,sqlx=warn` (RUST_LOG is used when absent).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the configured clusters and triage their faults (until SIGINT/SIGTERM).
    Run {
        /// Check what agents need (binary, API key, kubeconfigs) and exit: 0 when all is there.
        #[arg(long)]
        check: bool,
    },
    /// A self-contained demo: simulated clusters, embedded SQLite, a built-in demo agent.
    Demo(crate::demo::DemoArgs),
    /// Serve simulated clusters that speak the fault-event protocol (for trials, tests, benchmarks).
    Simulate(crate::simulate::SimulateArgs),
    /// The built-in demo agent (started by nightcrier itself in the demo).
    #[command(hide = true)]
    DemoAgent {
        /// How long the demo agent pretends to investigate.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        think: std::time::Duration,
    },
    /// Create or upgrade the database schema.
    Migrate {
        /// Also copy the incidents of a Go nightcrier SQLite file into this database (the Go
        /// file is only read).
        #[arg(long, value_name = "GO_DB")]
        import_go: Option<PathBuf>,
    },
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List, show, retry and cancel incidents.
    #[command(subcommand)]
    Incidents(incidents::IncidentsCommand),
    /// Per-cluster connection state, pending and running incidents, recent failures.
    Status {
        /// One JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Ask a fleet process (by `worker.instance_name` or id) to hand its clusters over and stop
    /// claiming incidents, e.g. before an upgrade; it then waits for SIGTERM.
    Drain {
        /// The instance name, or a full instance id as `status` shows it.
        instance: String,
    },
    /// Agent runs, tokens and spend over a time span, grouped.
    Costs {
        /// How far back (`24h`, `7d`).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// What to group by.
        #[arg(long, value_enum, default_value_t = costs::By::Cluster)]
        by: costs::By,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an incident's agent log and follow it until the run ends.
    Tail {
        /// Full id or a unique prefix of at least 8 characters.
        id: String,
        /// Print what exists and exit.
        #[arg(long)]
        no_follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted.
    Check,
    /// Print a nightcrier.yaml equivalent to a Go nightcrier config.yaml (with notes on what
    /// changed); the Go program's environment variables are taken into account.
    ImportGo {
        /// The Go nightcrier's config.yaml.
        go_config: PathBuf,
        /// Its tuning.yaml, if any.
        #[arg(long, value_name = "FILE")]
        tuning: Option<PathBuf>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nightcrier")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cause_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once. Most layers already include their
/// source's message in their own (`cannot listen on ...: Address in use`), so printing the
/// whole chain (`{:#}`) repeated the cause three or four times; a cause whose text is already
/// on the line is left out. Escaped, since causes quote configuration and cluster data.
fn cause_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if line.contains(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    output::escaped(&line)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that log (rather than print for humans) get the system log on stdout.
    if matches!(
        cli.command,
        Command::Run { check: false }
            | Command::Demo(_)
            | Command::Simulate(_)
            | Command::Migrate { .. }
    ) {
        telemetry::init_tracing(cli.log_format, cli.log_level.as_deref())?;
    }
    match &cli.command {
        Command::Run { check: true } => run::check(load_config(&cli)?),
        Command::Run { check: false } => run::run(load_config(&cli)?).await,
        Command::Demo(args) => {
            crate::demo::run(args.clone()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(args) => {
            let shutdown = tokio_util::sync::CancellationToken::new();
            let handler = crate::signals::spawn_handler(shutdown.clone(), shutdown.clone())?;
            crate::simulate::run_cli(args.clone(), shutdown).await?;
            handler.abort();
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoAgent { think } => {
            crate::demo::agent::run(*think).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check) => config_cmd::check(cli.config.as_deref()),
        Command::Config(ConfigCommand::ImportGo { go_config, tuning }) => {
            gocompat_cmd::import_config(go_config, tuning.as_deref())
        }
        Command::Migrate { import_go } => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            store.migrate().await.context("applying migrations")?;
            if let Some(go_db) = import_go {
                gocompat_cmd::import_database(&store, go_db).await?;
            }
            println!(
                "database {} is up to date ({})",
                loaded.config.database.url.redacted(),
                store.backend()
            );
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Incidents(cmd) => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            let code = incidents::run(cmd, &store, &loaded.config).await;
            store.close().await;
            code
        }
        Command::Status { json } => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            let code = status::run(&loaded.config, &store, *json).await;
            store.close().await;
            code
        }
        Command::Drain { instance } => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            let code = fleet::drain(&loaded.config, &store, instance).await;
            store.close().await;
            code
        }
        Command::Costs { since, by, json } => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            let code = costs::run(&store, *since, *by, *json).await;
            store.close().await;
            code
        }
        Command::Tail { id, no_follow } => {
            let loaded = load_config(&cli)?;
            let store = open_store(&loaded).await?;
            let code = tail::run(&loaded.config.workspace_root, &store, id, !no_follow).await;
            store.close().await;
            code
        }
    }
}

pub(crate) fn load_config(cli: &Cli) -> anyhow::Result<LoadedConfig> {
    Ok(config::load(cli.config.as_deref(), std::env::vars())?)
}

pub(crate) async fn open_store(loaded: &LoadedConfig) -> anyhow::Result<Store> {
    let c = &loaded.config;
    Store::connect(crate::app::store_options(c))
        .await
        .with_context(|| format!("opening database {}", c.database.url.redacted()))
}
