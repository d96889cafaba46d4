//! Panic supervision for long-running tasks.
//!
//! This module owns one rule: a panic in a supervised task is logged with the task's name and
//! the task is started again after a backoff, so one bug cannot silently stop ingestion or the
//! worker pool. It must not swallow normal completion (a task that returns is done) and must not
//! keep anything running after cancellation: the task gets the token and is awaited.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::telemetry::names;

/// Repeated panics double the backoff up to this factor of the base.
const MAX_BACKOFF_FACTOR: u32 = 32;

/// A run this long resets the backoff: the panic was not a crash loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What [`supervise`] saw before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SuperviseReport {
    /// Panics caught (each followed by a restart unless cancelled meanwhile).
    pub panics: u32,
}

/// Runs `factory(token)` as a spawned task, restarting it after `restart_backoff` (doubling on
/// consecutive panics) whenever it panics, until it returns normally or `token` is cancelled and
/// the current run has returned.
///
/// The task receives a clone of `token` and must stop promptly when it is cancelled. If the
/// future returned by `supervise` is dropped, the running task is aborted.
pub async fn supervise<F, Fut>(
    name: &str,
    restart_backoff: Duration,
    token: CancellationToken,
    mut factory: F,
) -> SuperviseReport
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut report = SuperviseReport::default();
    let mut factor = 1u32;
    loop {
        let started = Instant::now();
        let handle = AbortOnDropHandle::new(tokio::spawn(factory(token.clone())));
        let panic = match handle.await {
            Ok(()) => return report,
            Err(e) if e.is_panic() => e.into_panic(),
            Err(e) => {
                // Only an abort from outside gets here; nothing left to supervise.
                tracing::warn!(task = name, error = %e, "supervised task was aborted");
                return report;
            }
        };
        report.panics += 1;
        metrics::counter!(names::TASK_RESTARTS, "task" => name.to_string()).increment(1);
        if started.elapsed() >= HEALTHY_RUN {
            factor = 1;
        }
        let backoff = restart_backoff * factor;
        factor = (factor * 2).min(MAX_BACKOFF_FACTOR);
        tracing::error!(
            task = name,
            panic = %panic_message(panic.as_ref()),
            restart_in = %humantime::format_duration(backoff),
            "task panicked; restarting it"
        );
        tokio::select! {
            _ = token.cancelled() => return report,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_after_a_growing_backoff() {
        let runs = Arc::new(AtomicU32::new(0));
        let token = CancellationToken::new();
        let started = Instant::now();
        let r = runs.clone();
        let report = supervise("flaky", Duration::from_secs(1), token, move |_t| {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    panic!("boom {n}");
                }
            }
        })
        .await;
        assert_eq!(report.panics, 3);
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        // 1 s + 2 s + 4 s of paused time between the four runs.
        assert_eq!(started.elapsed().as_secs(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_task_and_no_restart_follows() {
        let runs = Arc::new(AtomicU32::new(0));
        let token = CancellationToken::new();
        let r = runs.clone();
        let sup = tokio::spawn(supervise(
            "steady",
            Duration::from_secs(1),
            token.clone(),
            move |t| {
                r.fetch_add(1, Ordering::SeqCst);
                async move { t.cancelled().await }
            },
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        token.cancel();
        let report = sup.await.unwrap();
        assert_eq!(report.panics, 0);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_during_the_backoff_returns_at_once() {
        let token = CancellationToken::new();
        let t2 = token.clone();
        let started = Instant::now();
        let report = supervise("doomed", Duration::from_secs(3600), token, move |_t| {
            t2.cancel();
            async { panic!("always") }
        })
        .await;
        assert_eq!(report.panics, 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn panic_payloads_become_text() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&String::from("owned")), "owned");
        assert_eq!(panic_message(&42u8), "(non-text panic payload)");
    }
}
