//! SIGINT/SIGTERM handling for long-running commands: the first signal asks for a graceful
//! stop, the second for an immediate one.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Signals closer together than this are one request.
const SAME_REQUEST: std::time::Duration = std::time::Duration::from_millis(300);

/// Cancels `soft` on the first SIGINT or SIGTERM and `hard` on the second. The returned task
/// ends after the second signal or when `hard` is cancelled otherwise.
pub fn spawn_handler(
    soft: CancellationToken,
    hard: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        let mut first: Option<tokio::time::Instant> = None;
        loop {
            let name = tokio::select! {
                _ = hard.cancelled() => return,
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            // `timeout(1)` and some supervisors signal the process and then its whole group: the
            // same request arrives twice within microseconds and must not count as "stop now".
            if first.is_some_and(|t| t.elapsed() < SAME_REQUEST) {
                continue;
            }
            if first.is_none() {
                first = Some(tokio::time::Instant::now());
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
