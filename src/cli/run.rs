//! `nightcrier run`: producer, consumer and HTTP endpoint until a signal; `run --check`: the
//! fail-fast checks only.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agent::failfast;
use crate::app::App;
use crate::config::LoadedConfig;
use crate::sdnotify::{self, Notifier, Watchdog};
use crate::signals;
use crate::supervise::Tasks;

/// How long a panicked watchdog waits before it is started again (doubling on repeats).
const WATCHDOG_RESTART_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// `run --check`: one line per problem on stderr, exit 1 when there is any.
pub fn check(loaded: LoadedConfig) -> anyhow::Result<ExitCode> {
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let problems = failfast::check(&loaded.config);
    if problems.is_empty() {
        println!(
            "run check OK: agent binaries, API keys and kubeconfigs are in place ({} cluster(s))",
            loaded.config.clusters.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    Ok(ExitCode::FAILURE)
}

pub async fn run(loaded: LoadedConfig) -> anyhow::Result<ExitCode> {
    for w in &loaded.warnings {
        tracing::warn!("configuration: {w}");
    }
    // Not fatal at start (tests and demos run without keys); `run --check` makes them fatal.
    for p in failfast::check(&loaded.config) {
        tracing::warn!("agents will fail: {p}");
    }
    if loaded.config.clusters.is_empty() {
        tracing::warn!(
            "no clusters configured: nothing will be ingested (see examples/nightcrier.yaml, or try `nightcrier demo`)"
        );
    }
    let notifier = Arc::new(Notifier::from_env()?);
    let watchdog_every = sdnotify::watchdog_interval()?;
    let app = App::build(loaded.config).await?;
    app.log_summary();
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let handler = signals::spawn_handler(soft.clone(), hard.clone())?;

    // The database is migrated and the HTTP endpoint bound: ready. Sent before the first
    // watchdog ping, so the manager sees the start-up complete first.
    if let Err(e) = notifier.notify("READY=1") {
        tracing::warn!("systemd: {e}");
    }
    // Started like the application's own tasks (`crate::supervise`).
    let tasks = Tasks::new();
    let side = tasks.token();
    let watchdog = match watchdog_every {
        Some(every) if notifier.is_enabled() => {
            let notifier = notifier.clone();
            Some(tasks.spawn_restarting(
                "systemd watchdog",
                WATCHDOG_RESTART_BACKOFF,
                side.clone(),
                move |t| Watchdog::new(notifier.clone(), every).run(t),
            ))
        }
        _ => None,
    };
    let stopping = {
        let (notifier, soft, side) = (notifier.clone(), soft.clone(), side.clone());
        tasks.spawn_one_shot("systemd stopping", async move {
            tokio::select! {
                _ = soft.cancelled() => {
                    if let Err(e) = notifier.notify("STOPPING=1") {
                        tracing::warn!("systemd: {e}");
                    }
                }
                _ = side.cancelled() => {}
            }
        })
    };
    let result = app.run(soft, hard.clone()).await;
    side.cancel();
    if let Some(w) = watchdog {
        w.stopped().await;
    }
    stopping.stopped().await;
    handler.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}
