//! How long-running tasks are started, supervised and owned.
//!
//! This module owns three rules. Every long-running task of the application is started through
//! [`Tasks`], with one of three answers to a panic, chosen per task where it is started
//! (`src/app.rs`) and listed in ARCHITECTURE.md:
//! - **restart** ([`Tasks::spawn_restarting`], [`supervise`]): the panic is logged with the
//!   task's name and counted, and the task is started again after a backoff that doubles on
//!   repeats, for tasks whose state lives in the store (writer, reporter, rescuer, fleet member);
//! - **shut down** ([`Tasks::spawn_critical`]): the panic is logged and counted and the
//!   application stops in order, as on SIGTERM, and `App::run` returns the panic as an error,
//!   for tasks that hold what cannot be rebuilt in place (the worker pool's running agents, the
//!   MCP sessions, the listeners);
//! - **report** ([`Tasks::spawn_one_shot`]): a one-off helper's panic is logged and counted.
//!
//! Every task gets a token that is a child of the [`Tasks`]' root, and its handle aborts the
//! task when dropped; dropping `Tasks` cancels the root. So dropping the future of `App::run`
//! stops everything it started. The module must not swallow normal completion (a task that
//! returns is done) and must not keep anything running after cancellation.

use std::any::Any;
use std::future::Future;
use std::sync::{Arc, Mutex};
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
    factory: F,
) -> SuperviseReport
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    supervise_from(name, restart_backoff, token, None, factory).await
}

/// [`supervise`], with the first run already created (so that what the factory does when
/// called, such as installing a signal handler, happens before the caller goes on).
async fn supervise_from<F, Fut>(
    name: &str,
    restart_backoff: Duration,
    token: CancellationToken,
    mut first: Option<Fut>,
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
        let run = first.take().unwrap_or_else(|| factory(token.clone()));
        let handle = AbortOnDropHandle::new(tokio::spawn(run));
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
        metrics::counter!(names::TASK_PANICS, "task" => name.to_string()).increment(1);
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

/// A task whose panic stops the application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task panicked ({message}); the application was stopped")]
pub struct TaskPanicked {
    pub task: &'static str,
    pub message: String,
}

/// Starts and owns the long-running tasks of one application run (see the module docs).
/// Dropping it cancels every token it handed out.
pub struct Tasks {
    root: CancellationToken,
    /// Cancelled when a critical task panicked.
    failed: CancellationToken,
    failure: Arc<Mutex<Option<TaskPanicked>>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Self {
            root: CancellationToken::new(),
            failed: CancellationToken::new(),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// A token for one task (or a group stopped together): cancel it to stop them; it is also
    /// cancelled when `Tasks` is dropped.
    pub fn token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Runs `factory(token)`, restarting it after a panic (see [`supervise`]). The first run is
    /// created now.
    pub fn spawn_restarting<F, Fut>(
        &self,
        name: &'static str,
        restart_backoff: Duration,
        token: CancellationToken,
        mut factory: F,
    ) -> Task
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let first = factory(token.clone());
        Task::spawn(name, async move {
            supervise_from(name, restart_backoff, token, Some(first), factory).await;
        })
    }

    /// Runs `task`; if it panics, the panic is logged and counted and [`Tasks::failed`] fires,
    /// so that the application stops.
    pub fn spawn_critical(
        &self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Task {
        let failed = self.failed.clone();
        let failure = self.failure.clone();
        Task::spawn(name, async move {
            if let Some(message) = run_catching(name, task).await {
                tracing::error!(
                    task = name,
                    panic = %message,
                    "task panicked; stopping the application"
                );
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(TaskPanicked {
                        task: name,
                        message,
                    });
                failed.cancel();
            }
        })
    }

    /// Runs a one-off helper; a panic is logged and counted, nothing else.
    pub fn spawn_one_shot(
        &self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Task {
        Task::spawn(name, async move {
            if let Some(message) = run_catching(name, task).await {
                tracing::error!(task = name, panic = %message, "task panicked");
            }
        })
    }

    /// Resolves once a critical task has panicked.
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }

    /// The first critical task that panicked, if any.
    pub fn failure(&self) -> Option<TaskPanicked> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

/// Runs `task` as a task of its own; `Some(panic message)` when it panicked (counted).
async fn run_catching(
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
) -> Option<String> {
    match AbortOnDropHandle::new(tokio::spawn(task)).await {
        Ok(()) => None,
        Err(e) if e.is_panic() => {
            metrics::counter!(names::TASK_PANICS, "task" => name).increment(1);
            Some(panic_message(e.into_panic().as_ref()))
        }
        Err(e) => {
            tracing::warn!(task = name, error = %e, "task was aborted");
            None
        }
    }
}

/// A started task; dropping the handle aborts it.
pub struct Task {
    name: &'static str,
    handle: AbortOnDropHandle<()>,
}

impl Task {
    fn spawn(name: &'static str, f: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            name,
            handle: AbortOnDropHandle::new(tokio::spawn(f)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Waits until the task has stopped (its panics were handled where it was started).
    pub async fn stopped(self) {
        let name = self.name;
        if let Err(e) = self.handle.await {
            tracing::error!(task = name, error = %e, "task failed while stopping");
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

    #[tokio::test]
    async fn a_critical_panic_is_reported_and_stops_nothing_by_itself() {
        let metrics = crate::telemetry::install_metrics_recorder().unwrap();
        let tasks = Tasks::new();
        let steady_token = tasks.token();
        let steady = tasks.spawn_critical("steady", {
            let t = steady_token.clone();
            async move { t.cancelled().await }
        });
        let boom = tasks.spawn_critical("reporter", async { panic!("boom") });
        tasks.failed().await;
        assert_eq!(
            tasks.failure(),
            Some(TaskPanicked {
                task: "reporter",
                message: "boom".into()
            })
        );
        boom.stopped().await;
        assert!(
            metrics
                .render()
                .contains(r#"nightcrier_task_panics_total{task="reporter"} 1"#),
            "the panic is counted"
        );
        // The application decides the order of shutdown; other tasks still run.
        assert!(!steady_token.is_cancelled());
        steady_token.cancel();
        steady.stopped().await;
    }

    #[tokio::test]
    async fn a_one_shot_panic_is_not_a_failure() {
        let tasks = Tasks::new();
        tasks
            .spawn_one_shot("preflight", async { panic!("oops") })
            .stopped()
            .await;
        assert_eq!(tasks.failure(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restarting_task_is_started_again_and_its_first_run_is_created_at_once() {
        let tasks = Tasks::new();
        let created = Arc::new(AtomicU32::new(0));
        let c = created.clone();
        let token = tasks.token();
        let task =
            tasks.spawn_restarting("flaky", Duration::from_secs(1), token.clone(), move |t| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        panic!("first run");
                    }
                    t.cancelled().await
                }
            });
        assert_eq!(created.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(created.load(Ordering::SeqCst), 2);
        token.cancel();
        task.stopped().await;
        assert_eq!(tasks.failure(), None);
    }

    #[tokio::test]
    async fn dropping_tasks_and_handles_cancels_and_aborts_what_was_started() {
        struct Flag(Arc<AtomicU32>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicU32::new(0));
        let tasks = Tasks::new();
        let token = tasks.token();
        let flag = Flag(dropped.clone());
        // Ignores its token: only the abort stops it.
        let stubborn = tasks.spawn_critical("stubborn", async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        tokio::task::yield_now().await;
        drop(tasks);
        assert!(token.is_cancelled());
        drop(stubborn);
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
