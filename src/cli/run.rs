//! `nightcrier run`: producer, consumer and HTTP endpoint until a signal.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::LoadedConfig;
use crate::signals;

pub async fn run(loaded: LoadedConfig) -> anyhow::Result<ExitCode> {
    for w in &loaded.warnings {
        tracing::warn!("configuration: {w}");
    }
    if loaded.config.clusters.is_empty() {
        tracing::warn!(
            "no clusters configured: nothing will be ingested (see examples/nightcrier.yaml, or try `nightcrier demo`)"
        );
    }
    let app = App::build(loaded.config).await?;
    app.log_summary();
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let handler = signals::spawn_handler(soft.clone(), hard.clone())?;
    app.run(soft, hard.clone()).await?;
    handler.abort();
    Ok(ExitCode::SUCCESS)
}
