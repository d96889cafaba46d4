//! SIGINT/SIGTERM handling for long-running commands: the first signal asks for a graceful
//! stop, the second for an immediate one.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancels `soft` on the first SIGINT or SIGTERM and `hard` on the second. The returned task
/// ends after the second signal or when `hard` is cancelled otherwise.
pub fn spawn_handler(
    soft: CancellationToken,
    hard: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = hard.cancelled() => return,
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            seen += 1;
            if seen == 1 {
                tracing::info!(
                    signal = name,
                    "stopping gracefully; send it again to stop at once"
                );
                soft.cancel();
            } else {
                tracing::warn!(signal = name, "stopping at once");
                hard.cancel();
                return;
            }
        }
    }))
}
