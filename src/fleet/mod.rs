//! A fleet of nightcrier processes on one PostgreSQL: which process owns which cluster.
//!
//! This module owns the membership task ([`FleetMember`]): registering the process, the
//! heartbeat that renews its cluster leases, the balancing rule (bounded churn: a process over
//! its share releases only the excess, one under it takes only free or expired leases), drain
//! and hand-over at exit. It publishes the clusters it holds on a watch channel (read by the MCP
//! side, which subscribes only to those) and installs the store's fence (so a late writer's
//! faults are refused). It must not subscribe, write faults or run agents itself, and it holds no
//! SQL (the store does). Both producer and consumer may read it; it imports neither.
//!
//! Timing: a process holds a lease until `beat start + lease_ttl` by its own clock, which is
//! never later than the database's expiry (`now() + lease_ttl` at the beat), so a live process
//! with peers has dropped a cluster's session before anyone else may take the cluster over.
//! A process takes nothing during its first lease TTL (processes started together see each other
//! first; a crashed predecessor's leases expire), and others give clusters up to it only after
//! that, so a join moves only the clusters that even out the fleet, once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::store::{Beat, InstanceRecord, LeaseFence, Store, StoreError};
use crate::telemetry::RateLimited;

/// The clusters a process holds, with each lease's fencing epoch.
pub type Owned = BTreeMap<String, i64>;

/// Database errors of the heartbeat are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The fingerprint of everything processes of one fleet must agree on: the cluster list and the
/// agent configuration (not the per-process keys such as the instance name or HTTP address).
pub fn config_fingerprint(config: &Config) -> String {
    // Through `Value`, whose maps are ordered, so equal configurations hash equally.
    let value = serde_json::json!({
        "clusters": serde_json::to_value(&config.clusters).unwrap_or_default(),
        "agent": serde_json::to_value(&config.agent).unwrap_or_default(),
    });
    let digest = Sha256::digest(value.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// This process's registry entry: `id` is the worker pool's lease owner (so `status` can count
/// its running agents).
pub fn instance_record(config: &Config, id: &str, http_addr: Option<String>) -> InstanceRecord {
    InstanceRecord {
        id: id.to_string(),
        host: hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        pid: i64::from(std::process::id()),
        http_addr,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_hash: config_fingerprint(config),
    }
}

/// How many of `clusters` the process `me` should hold when `peers` are the other live
/// processes: an even split, the remainder going to the first processes in id order, so every
/// process computes the same division.
pub fn share(me: &str, peers: &[&str], clusters: usize) -> usize {
    let mut all: BTreeSet<&str> = peers.iter().copied().collect();
    all.insert(me);
    let n = all.len();
    let rank = all.iter().position(|id| *id == me).unwrap_or(0);
    clusters / n + usize::from(rank < clusters % n)
}

/// The knobs of [`FleetMember`], from `fleet.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSettings {
    pub heartbeat_interval: Duration,
    pub lease_ttl: Duration,
}

impl FleetSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            heartbeat_interval: config.fleet.heartbeat_interval,
            lease_ttl: config.fleet.lease_ttl,
        }
    }
}

/// What the process does with the clusters it holds and how to reach it; see the module docs.
pub struct FleetMember {
    store: Store,
    me: InstanceRecord,
    clusters: Vec<String>,
    settings: FleetSettings,
    owned: watch::Sender<Owned>,
    /// Cancelled to drain: hand every cluster over and stay out of the fleet's division.
    drain: CancellationToken,
    /// Cancelled once this process drains, so the worker pool stops claiming.
    stop_claiming: CancellationToken,
    /// Faults received and not yet written (the ingest buffer's depth): a hand-over frees its
    /// leases once this is 0, so what the stopped sessions received is written while still ours.
    unwritten: Arc<dyn Fn() -> usize + Send + Sync>,
}

impl FleetMember {
    pub fn new(store: Store, me: InstanceRecord, clusters: Vec<String>, s: FleetSettings) -> Self {
        Self {
            store,
            me,
            clusters,
            settings: s,
            owned: watch::Sender::new(Owned::new()),
            drain: CancellationToken::new(),
            stop_claiming: CancellationToken::new(),
            unwritten: Arc::new(|| 0),
        }
    }

    /// How many received faults are not yet written (see the field); without it a hand-over
    /// frees its leases one beat after stopping the sessions.
    pub fn with_unwritten(mut self, unwritten: Arc<dyn Fn() -> usize + Send + Sync>) -> Self {
        self.unwritten = unwritten;
        self
    }

    /// The clusters held, updated on every change (empty until the first leases are taken).
    pub fn subscribe(&self) -> watch::Receiver<Owned> {
        self.owned.subscribe()
    }

    /// Cancel it to drain this process (SIGUSR2 does; `nightcrier drain` asks through the
    /// database instead).
    pub fn drain_token(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Cancelled when this process has drained: the worker pool stops claiming.
    pub fn stop_claiming_token(&self) -> CancellationToken {
        self.stop_claiming.clone()
    }

    /// Registers, then beats every `heartbeat_interval` until `cancel`; then hands every lease
    /// over and marks the process stopped. Publish an empty set first on the way out so the
    /// sessions are gone before the leases are free.
    pub async fn run(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let mut state = State::default();
        // SIGUSR2 drains (see docs/fleet.md); without a handler the signal would kill us.
        let mut usr2 = signal(SignalKind::user_defined2())
            .map_err(
                |e| warn!(error = %e, "cannot listen for SIGUSR2; drain with `nightcrier drain`"),
            )
            .ok();
        // Registration is retried: the database may be restarting while we start.
        let mut wait = self.settings.heartbeat_interval;
        loop {
            match self.store.fleet_register(&self.me, &self.clusters).await {
                Ok(()) => break,
                Err(e) => state.warn_db("registering in the fleet", &e),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(self.settings.lease_ttl);
        }
        info!(
            instance = %self.me.id,
            clusters = self.clusters.len(),
            config = %self.me.config_hash,
            "joined the fleet"
        );
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Taking nothing for one TTL after joining lets processes started together see each
        // other first (no process takes everything to give most of it back a moment later), and
        // lets a crashed predecessor's leases expire.
        let settles_at = Instant::now() + self.settings.lease_ttl;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
                _ = self.drain.cancelled(), if !state.draining => {}
                Some(()) = recv(&mut usr2) => {
                    info!("SIGUSR2: draining");
                    self.drain.cancel();
                }
            }
            self.beat(&mut state, Instant::now() >= settles_at).await;
        }
        self.leave(&mut state).await;
    }

    async fn beat(&self, state: &mut State, settled: bool) {
        let started = Instant::now();
        let beat = match self
            .store
            .fleet_beat(&self.me.id, &self.clusters, self.settings.lease_ttl)
            .await
        {
            Ok(b) => b,
            Err(StoreError::NotFound(_)) => {
                // Our row is gone (a database restored from backup, a manual cleanup): join
                // again; the leases follow at the next beat.
                if let Err(e) = self.store.fleet_register(&self.me, &self.clusters).await {
                    state.warn_db("registering in the fleet again", &e);
                }
                self.expire_if_late(state);
                return;
            }
            Err(e) => {
                state.warn_db("renewing the fleet heartbeat", &e);
                self.expire_if_late(state);
                return;
            }
        };
        state.valid_until = Some(started + self.settings.lease_ttl);
        state.had_peers = !beat.peers.is_empty();
        let mut held: Owned = beat.leases.iter().cloned().collect();
        // Second phase of a hand-over: the sessions of these clusters stopped at least a beat
        // ago; once what was received is written (still fenced as ours), or after one TTL at
        // most, free them.
        let written = (self.unwritten)() == 0
            || state
                .releasing_since
                .is_some_and(|t| t.elapsed() >= self.settings.lease_ttl);
        for n in state.releasing.keys() {
            held.remove(n);
        }
        if !state.releasing.is_empty() && written {
            let names: Vec<String> = state.releasing.keys().cloned().collect();
            match self.store.fleet_release(&self.me.id, Some(&names)).await {
                Ok(n) => {
                    info!(released = n, clusters = %names.join(","), "handed clusters over");
                    state.releasing.clear();
                    state.releasing_since = None;
                }
                Err(e) => state.warn_db("releasing leases", &e),
            }
        }
        for lost in state.held.keys().filter(|c| !held.contains_key(*c)) {
            warn!(cluster = %lost, "cluster lease lost (taken over by another process); dropping its session");
        }
        self.note_peers(state, &beat);
        if (beat.drain_requested || self.drain.is_cancelled()) && !state.draining {
            state.draining = true;
            self.drain.cancel();
            self.stop_claiming.cancel();
            info!(
                clusters = held.len(),
                "draining: handing every cluster over and claiming no more incidents"
            );
        }
        if state.draining {
            // First phase: stop the sessions now, free the leases at a later beat.
            if !held.is_empty() {
                state.releasing_since.get_or_insert_with(Instant::now);
            }
            state.releasing.extend(std::mem::take(&mut held));
        } else if settled {
            // Shares are taken with every live peer counted (so nobody takes what a newcomer is
            // about to take), but given up only to settled peers (so nothing is released to a
            // process that will not take it for a while). Only peers with this configuration
            // count: one configured for other clusters might never take what we give up, so
            // processes of different configurations are not balanced against each other (each
            // takes what is free among its own clusters).
            let same = |p: &&crate::store::FleetPeer| p.config_hash == self.me.config_hash;
            let peers: Vec<&str> = beat
                .peers
                .iter()
                .filter(same)
                .map(|p| p.id.as_str())
                .collect();
            let settled_peers: Vec<&str> = beat
                .peers
                .iter()
                .filter(same)
                .filter(|p| p.settled)
                .map(|p| p.id.as_str())
                .collect();
            let target = share(&self.me.id, &peers, self.clusters.len());
            let keep = share(&self.me.id, &settled_peers, self.clusters.len());
            if held.len() > keep {
                let excess: Vec<String> =
                    held.keys().rev().take(held.len() - keep).cloned().collect();
                info!(
                    clusters = %excess.join(","),
                    share = keep,
                    live = peers.len() + 1,
                    "handing clusters over to even out the fleet"
                );
                state.releasing_since.get_or_insert_with(Instant::now);
                for c in excess {
                    if let Some(epoch) = held.remove(&c) {
                        state.releasing.insert(c, epoch);
                    }
                }
            } else if held.len() < target && beat.free > 0 {
                let want = u32::try_from(target - held.len()).unwrap_or(u32::MAX);
                match self
                    .store
                    .fleet_acquire(&self.me.id, &self.clusters, want, self.settings.lease_ttl)
                    .await
                {
                    Ok(taken) => {
                        for a in taken {
                            match &a.previous {
                                Some(prev) => info!(
                                    cluster = %a.cluster,
                                    epoch = a.epoch,
                                    from = %prev,
                                    how = if a.handed_over { "handed over" } else { "lease expired" },
                                    "took the cluster over"
                                ),
                                None => {
                                    info!(cluster = %a.cluster, epoch = a.epoch, "took the cluster")
                                }
                            }
                            held.insert(a.cluster, a.epoch);
                        }
                    }
                    Err(e) => state.warn_db("taking cluster leases", &e),
                }
            }
        }
        self.publish(state, held);
    }

    /// Without a renewal in time, every lease is past its expiry in the database too, and a peer
    /// that still reaches the database may take them over: drop all. Alone in the fleet, keep the
    /// sessions through a database outage (the ingest buffer holds the faults, as without a
    /// fleet): nobody can take the leases without the database, and the next beat renews them.
    fn expire_if_late(&self, state: &mut State) {
        if state.had_peers
            && state
                .valid_until
                .is_some_and(|until| Instant::now() >= until)
            && !state.held.is_empty()
        {
            warn!(
                clusters = state.held.len(),
                "cluster leases expired without renewal (database unreachable); dropping every session"
            );
            state.releasing.clear();
            self.publish(state, Owned::new());
        }
    }

    /// Says once per change which live processes have a different configuration.
    fn note_peers(&self, state: &mut State, beat: &Beat) {
        let differing: BTreeSet<String> = beat
            .peers
            .iter()
            .filter(|p| p.config_hash != self.me.config_hash)
            .map(|p| format!("{} ({})", p.id, p.config_hash))
            .collect();
        if differing != state.differing {
            if !differing.is_empty() {
                warn!(
                    mine = %self.me.config_hash,
                    others = %differing.iter().cloned().collect::<Vec<_>>().join(", "),
                    "live fleet processes have a different cluster or agent configuration; \
                     this process takes only clusters it is configured for"
                );
            }
            state.differing = differing;
        }
    }

    /// Sessions follow `held`; the fence also covers the clusters being handed over, whose
    /// last received faults are still being written.
    fn publish(&self, state: &mut State, held: Owned) {
        let epochs: std::collections::HashMap<String, i64> = held
            .iter()
            .chain(state.releasing.iter())
            .map(|(c, e)| (c.clone(), *e))
            .collect();
        if held != state.held || epochs != state.fenced {
            self.store.set_fence(Some(LeaseFence {
                owner: self.me.id.clone(),
                epochs: epochs.clone(),
            }));
            state.fenced = epochs;
            state.held = held.clone();
            self.owned.send_replace(held);
        }
    }

    async fn leave(&self, state: &mut State) {
        // Faults received before the hand-over are still written by the writer's drain.
        self.store.set_fence(None);
        state.held.clear();
        state.releasing.clear();
        self.owned.send_replace(Owned::new());
        match self.store.fleet_stop(&self.me.id).await {
            Ok(n) => info!(released = n, "left the fleet: clusters handed over"),
            Err(e) => {
                warn!(error = %e, "could not hand the clusters over; they are taken over when their leases expire")
            }
        }
    }
}

/// For a process that is not in a fleet (SQLite, or `fleet.enabled: false`): SIGUSR2 would
/// otherwise kill it (the default action), so an operator's drain signal sent to the wrong
/// process is caught and explained instead. The handler is installed when this is called (not
/// when the future is first polled), so a signal right after start is caught too; the future
/// runs until `cancel`.
pub fn ignore_drain_signal(
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send {
    let mut usr2 = signal(SignalKind::user_defined2())
        .map_err(|e| warn!(error = %e, "cannot listen for SIGUSR2"))
        .ok();
    async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(()) = recv(&mut usr2) => warn!(
                    "SIGUSR2 ignored: draining hands clusters to the other processes of a fleet \
                     on PostgreSQL, and this process runs alone (SQLite or fleet.enabled: \
                     false); stop it with SIGTERM"
                ),
            }
        }
    }
}

/// The next signal, or never when there is no handler.
async fn recv(sig: &mut Option<Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct State {
    held: Owned,
    valid_until: Option<Instant>,
    /// Whether the last successful beat saw live peers.
    had_peers: bool,
    /// Clusters whose sessions were stopped and whose leases are freed at a later beat.
    releasing: Owned,
    /// When the first of `releasing` was stopped.
    releasing_since: Option<Instant>,
    /// What the store's fence holds now.
    fenced: std::collections::HashMap<String, i64>,
    draining: bool,
    differing: BTreeSet<String>,
    warn_limit: DbWarnLimit,
}

/// Store failures are warned about at most every [`WARN_EVERY`].
struct DbWarnLimit(RateLimited);

impl Default for DbWarnLimit {
    fn default() -> Self {
        Self(RateLimited::new(WARN_EVERY))
    }
}

impl State {
    fn warn_db(&mut self, doing: &str, e: &StoreError) {
        if let Some(suppressed) = self.warn_limit.0.check() {
            warn!(error = %e, suppressed, "fleet: {doing} failed; retrying at the next beat");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        let ids = ["a", "b", "c", "d"];
        for n in 1..=4 {
            for clusters in [0, 1, 7, 30, 1000] {
                let shares: Vec<usize> = ids[..n]
                    .iter()
                    .map(|me| {
                        let peers: Vec<&str> =
                            ids[..n].iter().copied().filter(|p| p != me).collect();
                        share(me, &peers, clusters)
                    })
                    .collect();
                assert_eq!(shares.iter().sum::<usize>(), clusters, "{n} processes");
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
            }
        }
        assert_eq!(share("b", &["a", "c"], 30), 10);
    }

    #[test]
    fn the_fingerprint_ignores_per_process_keys() {
        let mut a = Config::default();
        let mut b = Config::default();
        b.worker.instance_name = Some("other".into());
        b.http.listen = "127.0.0.1:1".into();
        assert_eq!(config_fingerprint(&a), config_fingerprint(&b));
        a.agent.timeout = Duration::from_secs(1);
        assert_ne!(config_fingerprint(&a), config_fingerprint(&b));
    }
}
