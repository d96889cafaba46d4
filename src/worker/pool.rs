//! The worker pool: the dispatcher loop, one task per run, and the two-phase stop.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::reconcile::reconcile_restart;
use super::rescuer::Rescuer;
use super::run::{execute, format_duration, with_retry, RunDeps, RunEnd, SHUTDOWN_REASON};
use super::runner::IncidentRunner;
use super::settings::PoolSettings;
use super::wakeup::Wakeup;
use crate::incident::{RunOutcome, RunStatus};
use crate::store::{Claimed, Store, StoreError};
use crate::supervise::supervise;
use crate::telemetry::{names, RateLimited};

/// Dispatcher errors (the database is down...) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How long a panicked rescuer waits before it is started again (doubling on repeats).
const RESCUER_RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// What the pool remembers of a run while its task is alive, to account for it however the task
/// ends (including a panic, where the task returns nothing).
struct RunInfo {
    incident_id: Uuid,
    cluster: String,
    attempt: i32,
    slot: u32,
    started: Instant,
}

pub struct WorkerPool<R: IncidentRunner> {
    deps: RunDeps<R>,
    /// This boot's lease owner, `<instance>/<boot uuid>`.
    owner: String,
    /// Run tasks; dropping the pool aborts them (as a crash would, minus the bookkeeping).
    runs: JoinSet<RunEnd>,
    running: HashMap<Id, RunInfo>,
    /// Free slot numbers; a run holds one from claim until its task is accounted for, so this
    /// process never claims beyond `max_concurrent_agents` even before asking the database.
    free_slots: Vec<u32>,
    /// Restart reconciliation must succeed before the first claim.
    reconciled: bool,
    /// The soft stop of [`WorkerPool::run`]; checked before every claim so that a stop that
    /// arrives during a claim pass ends the pass.
    stop: CancellationToken,
    /// Cancelled when this process drains out of a fleet: running agents go on, no new claims.
    no_claims: CancellationToken,
    warn_limit: RateLimited,
}

impl<R: IncidentRunner> WorkerPool<R> {
    pub fn new(store: Store, runner: Arc<R>, settings: PoolSettings) -> Self {
        let owner = settings.new_owner();
        let free_slots = (0..settings.max_concurrent_agents).rev().collect();
        Self {
            deps: RunDeps {
                store,
                runner,
                settings: Arc::new(settings),
                terminate: CancellationToken::new(),
            },
            owner,
            runs: JoinSet::new(),
            running: HashMap::new(),
            free_slots,
            reconciled: false,
            stop: CancellationToken::new(),
            no_claims: CancellationToken::new(),
            warn_limit: RateLimited::new(WARN_EVERY),
        }
    }

    /// Stops claiming (for good) once `token` is cancelled: a drained fleet process.
    pub fn with_claims_stopped_by(mut self, token: CancellationToken) -> Self {
        self.no_claims = token;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs in flight.
    pub fn running(&self) -> usize {
        self.runs.len()
    }

    /// Restart reconciliation (see [`reconcile_restart`]); [`WorkerPool::run`] does it first.
    pub async fn reconcile(&mut self) -> Result<super::ReconcileCounts, StoreError> {
        let s = &self.deps.settings;
        let counts = reconcile_restart(
            &self.deps.store,
            self.deps.runner.as_ref(),
            &s.owner_prefix(),
            &self.owner,
            s.max_attempts,
        )
        .await?;
        self.reconciled = true;
        Ok(counts)
    }

    /// Claims while slots are free and incidents are pending, starting a run for each. Returns
    /// how many were claimed.
    pub async fn dispatch_once(&mut self) -> Result<usize, StoreError> {
        let limits = self.deps.settings.claim_limits();
        let mut claimed = 0;
        while !self.stop.is_cancelled() && !self.no_claims.is_cancelled() {
            let Some(slot) = self.free_slots.pop() else {
                break;
            };
            match self.deps.store.claim(&self.owner, limits).await {
                Ok(Some(c)) => {
                    self.start(c, slot);
                    claimed += 1;
                }
                Ok(None) => {
                    self.free_slots.push(slot);
                    break;
                }
                Err(e) => {
                    self.free_slots.push(slot);
                    return Err(e);
                }
            }
        }
        Ok(claimed)
    }

    /// Waits for one run to end and accounts for it. `None` when nothing runs.
    pub async fn join_next(&mut self) -> Option<()> {
        let joined = self.runs.join_next_with_id().await?;
        self.account(joined).await;
        Some(())
    }

    fn start(&mut self, claimed: Claimed, slot: u32) {
        let inc = &claimed.incident;
        info!(
            incident_id = %inc.id,
            cluster = %inc.cluster,
            attempt = claimed.attempt,
            slot,
            "worker started incident {}", crate::incident::short_id(inc.id)
        );
        let info = RunInfo {
            incident_id: inc.id,
            cluster: inc.cluster.clone(),
            attempt: claimed.attempt,
            slot,
            started: Instant::now(),
        };
        let handle = self.runs.spawn(execute(self.deps.clone(), claimed));
        self.running.insert(handle.id(), info);
        metrics::gauge!(names::AGENTS_RUNNING).set(self.runs.len() as f64);
    }

    /// Records how a run task ended; the one place a slot is given back.
    async fn account(&mut self, joined: Result<(Id, RunEnd), JoinError>) {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let Some(info) = self.running.remove(&id) else {
            error!(task = %id, "a run task ended that the pool did not know of");
            return;
        };
        self.free_slots.push(info.slot);
        metrics::gauge!(names::AGENTS_RUNNING).set(self.runs.len() as f64);
        let end = match joined {
            Ok((_, end)) => end,
            Err(e) if e.is_panic() => self.fail_panicked(&info, e.into_panic()).await,
            Err(_) => self.requeue_aborted(&info).await,
        };
        self.report(&info, &end);
    }

    async fn fail_panicked(&self, info: &RunInfo, payload: Box<dyn Any + Send>) -> RunEnd {
        let message = crate::supervise::panic_message(payload.as_ref());
        error!(incident_id = %info.incident_id, cluster = %info.cluster, panic = %message, "run panicked");
        let outcome = RunOutcome {
            status: RunStatus::Failed,
            reason: Some(format!("panic: {message}")),
            exit_code: None,
        };
        let store = &self.deps.store;
        match with_retry(|| store.complete(info.incident_id, info.attempt, &outcome)).await {
            Ok(recorded) => RunEnd::Finished { outcome, recorded },
            Err(e) => RunEnd::StoreFailed(e),
        }
    }

    /// A task aborted at the end of a stop did not do its own bookkeeping.
    async fn requeue_aborted(&self, info: &RunInfo) -> RunEnd {
        let store = &self.deps.store;
        let max = self.deps.settings.max_attempts;
        match with_retry(|| store.requeue(info.incident_id, info.attempt, SHUTDOWN_REASON, max))
            .await
        {
            Ok(recorded) => RunEnd::Interrupted { recorded },
            Err(e) => RunEnd::StoreFailed(e),
        }
    }

    fn report(&self, info: &RunInfo, end: &RunEnd) {
        let elapsed = info.started.elapsed();
        let took = format_duration(elapsed);
        let id = info.incident_id;
        match end {
            RunEnd::Finished { outcome, recorded } => {
                let reason = outcome.reason.as_deref().unwrap_or("");
                let shown = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                info!(
                    incident_id = %id, cluster = %info.cluster, attempt = info.attempt,
                    outcome = %outcome.status, reason, recorded,
                    "incident {id} finished: {}{shown} in {took}", outcome.status
                );
            }
            RunEnd::Interrupted { recorded } => info!(
                incident_id = %id, cluster = %info.cluster, attempt = info.attempt, recorded,
                "incident {id} interrupted by shutdown after {took}; given back"
            ),
            RunEnd::LeaseLost => info!(
                incident_id = %id, cluster = %info.cluster, attempt = info.attempt,
                "incident {id} stopped after {took}: lease lost (cancelled or rescued)"
            ),
            RunEnd::StoreFailed(e) => warn!(
                incident_id = %id, cluster = %info.cluster, attempt = info.attempt, error = %e,
                "incident {id} ended after {took} but its outcome could not be recorded; the rescuer will return it"
            ),
        }
        let outcome = end.label();
        metrics::histogram!(names::AGENT_RUN_DURATION, "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        metrics::counter!(
            names::AGENT_RUNS,
            "cluster" => info.cluster.clone(),
            "outcome" => outcome
        )
        .increment(1);
    }

    fn warn_limited(&mut self, what: &str, e: &StoreError) {
        if let Some(suppressed) = self.warn_limit.check() {
            warn!(error = %e, suppressed, "{what} failed; will retry");
        }
    }

    /// Reconciles, then dispatches until `soft` fires (stop claiming, let runs finish for
    /// `shutdown_grace`, then terminate and requeue them) or `hard` fires (terminate at once).
    /// Returns when every run is accounted for. The rescuer runs alongside. A claim already in
    /// flight when `soft` fires still starts its run, which then gets the grace like the others.
    pub async fn run(mut self, soft: CancellationToken, hard: CancellationToken) {
        self.stop = soft.clone();
        let settings = self.deps.settings.clone();
        let mut tick = tokio::time::interval(settings.poll_interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let rescuer_stop = CancellationToken::new();
        let mut rescuer: Option<AbortOnDropHandle<()>> = None;
        let mut wakeup = Wakeup::new(self.deps.store.clone());

        while !soft.is_cancelled() && !hard.is_cancelled() {
            if !self.reconciled {
                if let Err(e) = self.reconcile().await {
                    self.warn_limited("restart reconciliation", &e);
                }
            }
            if self.reconciled && rescuer.is_none() {
                let r = Rescuer::new(
                    self.deps.store.clone(),
                    settings.rescue_interval,
                    settings.max_attempts,
                );
                // Supervised: a panicking rescuer is logged, counted and started again; without
                // it expired leases would never be returned.
                let stop = rescuer_stop.clone();
                rescuer = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                    supervise("rescuer", RESCUER_RESTART_BACKOFF, stop, move |t| {
                        r.clone().run(t)
                    })
                    .await;
                })));
            }
            if self.reconciled {
                wakeup.arm();
                if let Err(e) = self.dispatch_once().await {
                    self.warn_limited("claiming incidents", &e);
                }
            }
            tokio::select! {
                biased;
                _ = soft.cancelled() => {}
                _ = hard.cancelled() => {}
                Some(joined) = self.runs.join_next_with_id() => self.account(joined).await,
                _ = wakeup.wait() => {}
                _ = tick.tick() => {}
            }
        }

        rescuer_stop.cancel();
        self.drain(&hard).await;
        if let Some(r) = rescuer {
            if let Err(e) = r.await {
                error!(error = %e, "rescuer task failed");
            }
        }
    }

    async fn drain(&mut self, hard: &CancellationToken) {
        let grace = self.deps.settings.shutdown_grace;
        if !self.runs.is_empty() && !hard.is_cancelled() {
            info!(running = self.runs.len(), grace = %format_duration(grace),
                "stopping: no new claims; waiting for running agents");
            let deadline = tokio::time::sleep(grace);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    biased;
                    _ = hard.cancelled() => break,
                    _ = &mut deadline => break,
                    joined = self.runs.join_next_with_id() => match joined {
                        Some(j) => self.account(j).await,
                        None => break,
                    },
                }
            }
        }
        if self.runs.is_empty() {
            return;
        }
        warn!(
            running = self.runs.len(),
            "terminating running agents; their incidents go back to pending"
        );
        self.deps.terminate.cancel();
        let deadline = tokio::time::sleep(self.deps.settings.terminate_timeout);
        tokio::pin!(deadline);
        let mut aborted = false;
        loop {
            if !aborted && hard.is_cancelled() {
                // A second signal: no waiting for the agents' kill grace. Dropping a run kills its
                // agent's group at once; the pool requeues what the aborted tasks could not.
                aborted = true;
                self.runs.abort_all();
            }
            tokio::select! {
                biased;
                _ = hard.cancelled(), if !aborted => {}
                _ = &mut deadline, if !aborted => {
                    aborted = true;
                    warn!(running = self.runs.len(), "runs did not stop in time; abandoning them");
                    self.runs.abort_all();
                }
                joined = self.runs.join_next_with_id() => match joined {
                    Some(j) => self.account(j).await,
                    None => break,
                },
            }
        }
    }
}
