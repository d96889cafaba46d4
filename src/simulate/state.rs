//! The simulated server's memory: sessions, their GET streams and subscriptions, and delivery of
//! notifications with the real server's rules (level gating, per-subscription deduplication,
//! cancellation of a subscription whose delivery fails for want of a GET stream).
//!
//! The lock is a std mutex held only for bookkeeping, never across an await: frames are sent
//! after it is released.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::world::FaultSpec;
use super::SimConfig;

/// Frames a GET stream may hold before the sender waits (the real server blocks too).
pub(crate) const STREAM_BUFFER: usize = 256;
/// Ghost subscriptions kept per session.
const MAX_GHOSTS: usize = 10;
/// Method logs of ended sessions kept for tests.
const ENDED_LOGS: usize = 1000;
/// Entries of one session's method log (pings would grow it forever).
pub(crate) const LOG_ENTRIES: usize = 1000;

/// MCP logging levels in increasing severity.
pub(crate) const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

pub(crate) fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

pub(crate) struct Subscription {
    pub id: String,
    pub mode: String,
    pub created_at: String,
    pub filters: Value,
    pub degraded: bool,
    /// When each fault (by faultId) was last sent: the server's 15-minute deduplication.
    sent: HashMap<String, Instant>,
}

impl Subscription {
    /// True when `fault_id` may be sent now; records the send. The server's deduplication.
    fn due(&mut self, fault_id: &str, now: Instant, period: Duration) -> bool {
        if let Some(at) = self.sent.get(fault_id) {
            if now.duration_since(*at) < period {
                return false;
            }
        }
        self.sent.insert(fault_id.to_string(), now);
        true
    }
}

pub(crate) struct Session {
    pub level: Option<usize>,
    pub stream: Option<mpsc::Sender<Bytes>>,
    pub subs: Vec<Subscription>,
    /// Cancelled subscriptions whose notifications the real server keeps sending on the session
    /// (a known leak: re-subscribing in place yields duplicates).
    pub ghosts: Vec<Subscription>,
    /// What the client did, in order: methods, `GET`, `DELETE` (the first [`LOG_ENTRIES`]).
    pub log: Vec<String>,
    /// Every request by method, however long the session lives.
    pub counts: HashMap<String, u64>,
}

impl Session {
    pub fn record(&mut self, what: String) {
        *self.counts.entry(what.clone()).or_insert(0) += 1;
        if self.log.len() < LOG_ENTRIES {
            self.log.push(what);
        }
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub sessions: HashMap<String, Session>,
    pub total_subs: usize,
    ended: VecDeque<(String, Vec<String>)>,
    /// Streams of sessions forgotten by `expire_sessions`: kept open so only requests see 404.
    orphans: Vec<mpsc::Sender<Bytes>>,
}

impl Inner {
    fn end_session(&mut self, id: &str) -> Option<Session> {
        let s = self.sessions.remove(id)?;
        self.total_subs -= s.subs.len();
        if self.ended.len() == ENDED_LOGS {
            self.ended.pop_front();
        }
        self.ended.push_back((id.to_string(), s.log.clone()));
        Some(s)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub delivered: AtomicU64,
    pub accepted_connections: AtomicU64,
    pub sessions_created: AtomicU64,
    pub cancelled_subscriptions: AtomicU64,
    /// Sessions that opened a GET stream (subscribers; tool-only sessions never do).
    pub stream_sessions: AtomicU64,
}

pub(crate) struct SimState {
    pub cfg: SimConfig,
    pub inner: Mutex<Inner>,
    pub counters: Counters,
    /// Cancelled when the server stops or restarts: ends every stream and hanging call.
    pub generation: Mutex<CancellationToken>,
    pub subscribe_hangs: AtomicBool,
    /// Pings are never answered (a stuck server behind a live TCP connection).
    pub pings_hang: AtomicBool,
    next_id: AtomicU64,
    /// The objects, logs and events the read-only Kubernetes tools serve.
    pub cluster: super::tools::Cluster,
}

/// A frame ready to go to one stream, and the subscription to cancel if it cannot.
struct Delivery {
    tx: mpsc::Sender<Bytes>,
    frame: Bytes,
    session: String,
    sub: String,
}

pub(crate) fn frame(msg: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {msg}\n\n"))
}

fn log_notification(level: &str, logger: &str, data: Value) -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/message",
           "params":{"data":data,"level":level,"logger":logger}})
}

impl SimState {
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner::default()),
            counters: Counters::default(),
            generation: Mutex::new(CancellationToken::new()),
            subscribe_hangs: AtomicBool::new(false),
            pings_hang: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            cluster: super::tools::Cluster::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain bookkeeping behind: keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh id with the given prefix; random-looking so ids from before a restart never
    /// come back.
    pub fn new_id(&self, prefix: &str, hex_len: usize) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let r: u128 = rand::random();
        let s = format!("{:032x}", r ^ u128::from(n));
        format!("{prefix}{}", &s[..hex_len])
    }

    pub fn create_session(&self) -> String {
        let id = self.new_id("", 32).to_uppercase();
        self.lock().sessions.insert(
            id.clone(),
            Session {
                level: None,
                stream: None,
                subs: Vec::new(),
                ghosts: Vec::new(),
                log: vec!["initialize".into()],
                counts: HashMap::from([("initialize".to_string(), 1)]),
            },
        );
        self.counters
            .sessions_created
            .fetch_add(1, Ordering::Relaxed);
        id
    }

    pub fn delete_session(&self, id: &str) -> bool {
        let mut inner = self.lock();
        if let Some(s) = inner.sessions.get_mut(id) {
            s.record("DELETE".into());
        }
        inner.end_session(id).is_some()
    }

    /// Forgets every session (a restart): streams end, later requests get 404.
    pub fn forget_all(&self, keep_streams_open: bool) {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.sessions.keys().cloned().collect();
        for id in ids {
            if let Some(s) = inner.end_session(&id) {
                if keep_streams_open {
                    inner.orphans.extend(s.stream);
                }
            }
        }
        if !keep_streams_open {
            inner.orphans.clear();
        }
    }

    pub fn drop_streams(&self) -> usize {
        let mut inner = self.lock();
        inner.orphans.clear();
        inner
            .sessions
            .values_mut()
            .filter_map(|s| s.stream.take())
            .count()
    }

    pub fn method_log(&self, id: &str) -> Option<Vec<String>> {
        let inner = self.lock();
        if let Some(s) = inner.sessions.get(id) {
            return Some(s.log.clone());
        }
        inner
            .ended
            .iter()
            .rev()
            .find(|(sid, _)| sid == id)
            .map(|(_, log)| log.clone())
    }

    /// One occurrence of `spec` seen by the server's informers: sent to every faults-mode
    /// subscription that has not sent this fault within the re-emission period (and to the
    /// session's ghosts, as the server leaks them). Returns how many notifications were
    /// delivered.
    pub async fn emit_fault(&self, spec: &FaultSpec) -> usize {
        self.cluster.register(spec);
        let cluster = &self.cfg.context;
        let fid = spec.fault_id(cluster);
        let now = Instant::now();
        let period = self.cfg.reemit_every;
        let warning = level_rank("warning").unwrap_or(3);
        let info = level_rank("info").unwrap_or(1);
        let mut deliveries = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let mut cancelled = 0;
            for (sid, session) in inner.sessions.iter_mut() {
                let open = session
                    .stream
                    .as_ref()
                    .filter(|tx| !tx.is_closed())
                    .cloned();
                // Without setLevel the server drops the notification silently.
                let level_ok = session.level.is_some_and(|l| l <= warning);
                // Events mode: every occurrence is forwarded as a Warning event (no 15-minute
                // deduplication there; Kubernetes aggregates events itself).
                if let Some(tx) = open
                    .as_ref()
                    .filter(|_| session.level.is_some_and(|l| l <= info))
                {
                    for sub in session
                        .subs
                        .iter()
                        .filter(|s| s.mode == "events" && !s.degraded)
                    {
                        if super::events::wanted(&sub.filters, spec) {
                            let data = super::events::event_data(spec, cluster, &sub.id);
                            deliveries.push(Delivery {
                                tx: tx.clone(),
                                frame: frame(&log_notification(
                                    "info",
                                    super::events::LOGGER,
                                    data,
                                )),
                                session: sid.clone(),
                                sub: sub.id.clone(),
                            });
                        }
                    }
                }
                let mut deliver = |sub: &Subscription| {
                    if let Some(tx) = &open {
                        let data = serde_json::to_value(spec.to_fault(cluster, &sub.id))
                            .unwrap_or(Value::Null);
                        deliveries.push(Delivery {
                            tx: tx.clone(),
                            frame: frame(&log_notification("warning", "kubernetes/faults", data)),
                            session: sid.clone(),
                            sub: sub.id.clone(),
                        });
                    }
                };
                let mut kept = Vec::with_capacity(session.subs.len());
                for mut sub in std::mem::take(&mut session.subs) {
                    let active = sub.mode == "faults" && !sub.degraded;
                    if !active || !sub.due(&fid, now, period) || !level_ok {
                        kept.push(sub);
                    } else if open.is_some() {
                        deliver(&sub);
                        kept.push(sub);
                    } else {
                        // Delivery without a GET stream fails: the server cancels.
                        cancelled += 1;
                        session.ghosts.push(sub);
                    }
                }
                session.subs = kept;
                for ghost in &mut session.ghosts {
                    if ghost.due(&fid, now, period) && level_ok {
                        deliver(ghost);
                    }
                }
                let excess = session.ghosts.len().saturating_sub(MAX_GHOSTS);
                session.ghosts.drain(..excess);
            }
            inner.total_subs -= cancelled;
            self.counters
                .cancelled_subscriptions
                .fetch_add(cancelled as u64, Ordering::Relaxed);
        }
        let mut delivered = 0;
        for d in deliveries {
            if d.tx.send(d.frame).await.is_ok() {
                delivered += 1;
            } else {
                self.cancel_subscription(&d.session, &d.sub);
            }
        }
        self.counters
            .delivered
            .fetch_add(delivered as u64, Ordering::Relaxed);
        delivered
    }

    /// Cancels a subscription; it lives on as a ghost (the server's leak).
    fn cancel_subscription(&self, session: &str, sub: &str) -> bool {
        let mut inner = self.lock();
        let Some(s) = inner.sessions.get_mut(session) else {
            return false;
        };
        let Some(pos) = s.subs.iter().position(|x| x.id == sub) else {
            return false;
        };
        let ghost = s.subs.remove(pos);
        s.ghosts.push(ghost);
        inner.total_subs -= 1;
        self.counters
            .cancelled_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Every attached stream whose level lets `level` through, with a frame for it.
    fn streams_at(&self, level: &str) -> Vec<mpsc::Sender<Bytes>> {
        let rank = level_rank(level).unwrap_or(0);
        self.lock()
            .sessions
            .values()
            .filter(|s| s.level.is_some_and(|l| l <= rank))
            .filter_map(|s| s.stream.clone())
            .collect()
    }

    /// A `kubernetes-mcp-server` diagnostic line to every session that listens at info.
    pub async fn emit_diagnostic(&self, text: &str) -> usize {
        let f = frame(&log_notification(
            "info",
            "kubernetes-mcp-server",
            Value::String(text.into()),
        ));
        let mut n = 0;
        for tx in self.streams_at("info") {
            n += usize::from(tx.send(f.clone()).await.is_ok());
        }
        n
    }

    /// Raw bytes to every attached stream, level or not (the caller builds the frame).
    pub async fn inject_raw(&self, bytes: Bytes) -> usize {
        let txs: Vec<_> = {
            let inner = self.lock();
            inner
                .sessions
                .values()
                .filter_map(|s| s.stream.clone())
                .collect()
        };
        let mut n = 0;
        for tx in txs {
            n += usize::from(tx.send(bytes.clone()).await.is_ok());
        }
        n
    }

    /// Marks every faults-mode subscription degraded and tells its session so.
    pub async fn fail_subscriptions(&self, error: &str) -> usize {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            for s in inner.sessions.values_mut() {
                for sub in s.subs.iter_mut().filter(|x| !x.degraded) {
                    sub.degraded = true;
                    let msg = log_notification(
                        "warning",
                        "kubernetes/subscription_error",
                        json!({"subscriptionId": sub.id, "cluster": self.cfg.context,
                               "error": error, "degraded": true}),
                    );
                    if let Some(tx) = &s.stream {
                        out.push((tx.clone(), frame(&msg)));
                    }
                }
            }
        }
        let mut n = 0;
        for (tx, f) in out {
            n += usize::from(tx.send(f).await.is_ok());
        }
        n
    }

    /// Adds a subscription, enforcing the per-session and per-server limits.
    pub fn subscribe(&self, session: &str, mode: &str, filters: Value) -> Result<Value, String> {
        let id = self.new_id("sub-", 8);
        let mut inner = self.lock();
        let total = inner.total_subs;
        let s = inner
            .sessions
            .get_mut(session)
            .ok_or_else(|| "session not found".to_string())?;
        if s.subs.len() >= self.cfg.max_subscriptions_per_session {
            return Err(format!(
                "failed to create subscription: session has reached maximum subscriptions ({})",
                self.cfg.max_subscriptions_per_session
            ));
        }
        if total >= self.cfg.max_subscriptions_total {
            return Err(format!(
                "failed to create subscription: server has reached maximum subscriptions ({})",
                self.cfg.max_subscriptions_total
            ));
        }
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        s.subs.push(Subscription {
            id: id.clone(),
            mode: mode.to_string(),
            created_at: created_at.clone(),
            filters: filters.clone(),
            degraded: false,
            sent: HashMap::new(),
        });
        inner.total_subs += 1;
        Ok(
            json!({"cluster": self.cfg.context, "createdAt": created_at, "filters": filters,
                  "mode": mode, "status": "active", "subscriptionId": id}),
        )
    }

    pub fn unsubscribe(&self, session: &str, sub: &str) -> Result<Value, String> {
        if !self.cancel_subscription(session, sub) {
            return Err("subscription not found".into());
        }
        Ok(json!({"status": "cancelled", "subscriptionId": sub}))
    }

    pub fn list_subscriptions(&self, session: &str) -> Value {
        let inner = self.lock();
        let subs: Vec<Value> = inner
            .sessions
            .get(session)
            .map(|s| {
                s.subs
                    .iter()
                    .map(|x| {
                        json!({"cluster": self.cfg.context, "createdAt": x.created_at,
                               "degraded": x.degraded, "filters": x.filters, "mode": x.mode,
                               "subscriptionId": x.id})
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({"subscriptions": subs, "total": subs.len()})
    }

    /// Drops deduplication entries that can no longer suppress anything (bounded memory).
    pub fn prune(&self, now: Instant, period: Duration) {
        let mut inner = self.lock();
        for s in inner.sessions.values_mut() {
            for sub in s.subs.iter_mut().chain(s.ghosts.iter_mut()) {
                sub.sent.retain(|_, at| now.duration_since(*at) < period);
            }
        }
    }
}
