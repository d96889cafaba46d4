//! `nightcrier simulate`: a fault source that speaks kubernetes-mcp-server's real protocol
//! (see `docs/fault-event-protocol.md`), for users without a cluster, for tests and for benchmarks.
//!
//! One [`Simulator`] is one MCP server watching one cluster (its kubeconfig context is
//! [`SimConfig::context`]), with the server's limits and quirks: sessions kept in memory (404
//! after a restart), one GET stream per session (409 for a second), notifications dropped until
//! `logging/setLevel`, faults only to faults-mode subscriptions with an attached stream (a
//! delivery without one cancels the subscription), per-subscription re-emission of a persistent
//! fault with the same faultId, cancelled subscriptions that keep delivering on their session
//! (the server's leak), and diagnostic log lines now and then.
//!
//! Test hooks on [`SimHandle`]: `restart` (all sessions lost, same port), `expire_sessions`
//! (404 while streams stay open), `drop_streams`, `inject_raw`/`inject_json`, `emit_fault`,
//! `fail_subscriptions`, `set_subscribe_hangs`, `set_pings_hang`, and counters (deliveries,
//! accepted TCP connections, sessions, subscriptions, per-session method logs).
//!
//! This module must not be used by production paths: it exists to be talked to.

mod cli;
mod events;
mod http;
mod scenarios;
mod state;
mod tools;
mod world;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cli::{run_cli, SimulateArgs};
pub use scenarios::Scenario;
pub use tools::{ToolFault, MUTATING_TOOLS};
pub use world::{FaultSpec, InvalidRate, Rate};

use state::SimState;

/// How long a restart waits for the old connections to close before it gives up on them.
const RESTART_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `127.0.0.1:0` picks a free port.
    pub listen: SocketAddr,
    /// The server's kubeconfig context name, sent as `cluster` (may be empty, as real servers do).
    pub context: String,
    /// Fault occurrences observed by the server's informers; `None`: only [`SimHandle::emit_fault`].
    pub rate: Option<Rate>,
    /// Distinct broken objects; occurrences cycle through them.
    pub faults: usize,
    /// A subscription sends the same fault again only after this long (the server's dedup).
    pub reemit_every: Duration,
    pub seed: u64,
    /// How long `events_subscribe` in faults mode waits for the informers to sync.
    pub subscribe_delay: Duration,
    /// A `kubernetes-mcp-server` diagnostic line this often; `None` for never.
    pub diagnostic_every: Option<Duration>,
    /// Answer POSTs with plain JSON instead of SSE bodies (both are legal).
    pub json_responses: bool,
    pub max_subscriptions_per_session: usize,
    pub max_subscriptions_total: usize,
    /// When set, `/mcp` answers 401 unless `Authorization: Bearer <token>` is sent (as a server
    /// behind an authenticating proxy does).
    pub bearer_token: Option<String>,
    /// Send the GET stream's response headers only with its first event (as some servers do),
    /// so a client that waits for them before going on hangs.
    pub late_stream_headers: bool,
    /// Leave the mutating tools out of `tools/list`, as a server started with `--read-only`
    /// does. Either way calling one gets that server's `unknown tool` error.
    pub read_only: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            context: "sim-1".into(),
            rate: None,
            faults: 50,
            reemit_every: Duration::from_secs(15 * 60),
            seed: 1,
            subscribe_delay: Duration::ZERO,
            diagnostic_every: None,
            json_responses: false,
            max_subscriptions_per_session: 10,
            max_subscriptions_total: 100,
            bearer_token: None,
            late_stream_headers: false,
            read_only: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid simulator settings: {0}")]
    Invalid(String),
}

/// Entry point: [`Simulator::start`].
pub struct Simulator;

impl Simulator {
    pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        if cfg.faults == 0 {
            return Err(SimError::Invalid("faults must be at least 1".into()));
        }
        let state = Arc::new(SimState::new(cfg.clone()));
        let listener = bind(cfg.listen).await?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let server = serve(state.clone(), listener);
        let generator = tokio::spawn(generate(state.clone()));
        Ok(SimHandle {
            state,
            addr,
            server: tokio::sync::Mutex::new(Some(server)),
            generator,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Bind { addr, source })
}

struct ServerTask {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

fn serve(state: Arc<SimState>, listener: TcpListener) -> ServerTask {
    let stop = CancellationToken::new();
    *state.generation.lock().unwrap_or_else(|p| p.into_inner()) = stop.clone();
    let counting = state.clone();
    let listener = listener.tap_io(move |_| {
        counting
            .counters
            .accepted_connections
            .fetch_add(1, Ordering::Relaxed);
    });
    let app = http::router(state);
    let signal = stop.clone().cancelled_owned();
    let join = tokio::spawn(async move {
        // Serving only ends on the signal; accept errors are retried inside axum.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await;
    });
    ServerTask { stop, join }
}

/// The informers: occurrences at the configured rate, diagnostics now and then.
async fn generate(state: Arc<SimState>) {
    let cfg = state.cfg.clone();
    let far = Duration::from_secs(365 * 24 * 3600);
    let mut occurrences = tokio::time::interval(cfg.rate.map_or(far, |r| r.interval()));
    let mut diagnostics = tokio::time::interval(cfg.diagnostic_every.unwrap_or(far));
    let mut prune = tokio::time::interval(cfg.reemit_every.max(Duration::from_secs(1)));
    occurrences.tick().await;
    diagnostics.tick().await;
    prune.tick().await;
    let mut i = 0usize;
    loop {
        tokio::select! {
            _ = occurrences.tick(), if cfg.rate.is_some() => {
                let spec = FaultSpec::generate(i % cfg.faults, cfg.seed);
                i = i.wrapping_add(1);
                state.emit_fault(&spec).await;
            }
            _ = diagnostics.tick(), if cfg.diagnostic_every.is_some() => {
                state.emit_diagnostic("informer cache resynced").await;
            }
            t = prune.tick() => state.prune(t, cfg.reemit_every),
        }
    }
}

/// A running simulator. Dropping it stops the server and the fault generator.
pub struct SimHandle {
    state: Arc<SimState>,
    addr: SocketAddr,
    server: tokio::sync::Mutex<Option<ServerTask>>,
    generator: JoinHandle<()>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr/mcp`, ready for a cluster's `mcp.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn context(&self) -> &str {
        &self.state.cfg.context
    }

    /// A server restart: every connection closes, every session and subscription is lost, and
    /// the same port serves again (old session ids get 404).
    pub async fn restart(&self) -> Result<(), SimError> {
        self.stop_serving().await;
        self.serve_again().await
    }

    /// The server dies: every connection closes, every session and subscription is lost, and
    /// the port refuses connections until [`SimHandle::serve_again`]. The fault generator keeps
    /// running (its occurrences reach no one meanwhile).
    pub async fn stop_serving(&self) {
        let mut server = self.server.lock().await;
        if let Some(old) = server.take() {
            stop_server(old).await;
        }
        self.state.forget_all(false);
    }

    /// Serves again on the same port after [`SimHandle::stop_serving`]; does nothing while
    /// serving.
    pub async fn serve_again(&self) -> Result<(), SimError> {
        let mut server = self.server.lock().await;
        if server.is_none() {
            let listener = bind(self.addr).await?;
            *server = Some(serve(self.state.clone(), listener));
        }
        Ok(())
    }

    /// Forgets every session while their streams stay open: the next request gets 404.
    pub fn expire_sessions(&self) {
        self.state.forget_all(true);
    }

    /// Ends every GET stream; the sessions remain (their next delivery fails).
    pub fn drop_streams(&self) -> usize {
        self.state.drop_streams()
    }

    /// Makes `events_subscribe` in faults mode block until the next restart (no RBAC).
    pub fn set_subscribe_hangs(&self, hang: bool) {
        self.state.subscribe_hangs.store(hang, Ordering::Relaxed);
    }

    /// Leaves every ping unanswered until the next restart (or until set back to false for
    /// pings sent afterwards).
    pub fn set_pings_hang(&self, hang: bool) {
        self.state.pings_hang.store(hang, Ordering::Relaxed);
    }

    /// One occurrence of `spec`, through the server's rules. Returns notifications delivered.
    pub async fn emit_fault(&self, spec: &FaultSpec) -> usize {
        self.state.emit_fault(spec).await
    }

    /// Raw bytes (a whole SSE frame, or anything) to every attached stream.
    pub async fn inject_raw(&self, bytes: impl Into<Bytes>) -> usize {
        self.state.inject_raw(bytes.into()).await
    }

    /// A JSON message framed as `event: message` to every attached stream.
    pub async fn inject_json(&self, msg: &Value) -> usize {
        self.state.inject_raw(state::frame(msg)).await
    }

    pub async fn emit_diagnostic(&self, text: &str) -> usize {
        self.state.emit_diagnostic(text).await
    }

    /// Sends `kubernetes/subscription_error` for every active subscription.
    pub async fn fail_subscriptions(&self, error: &str) -> usize {
        self.state.fail_subscriptions(error).await
    }

    /// Fault notifications written to streams so far.
    pub fn delivered(&self) -> u64 {
        self.state.counters.delivered.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far (to check that clients reuse connections).
    pub fn accepted_connections(&self) -> u64 {
        self.state
            .counters
            .accepted_connections
            .load(Ordering::Relaxed)
    }

    pub fn sessions_created(&self) -> u64 {
        self.state.counters.sessions_created.load(Ordering::Relaxed)
    }

    /// Sessions that opened a GET stream: the subscribers' sessions, not the short-lived
    /// tool sessions (evidence gathering) that only call tools.
    pub fn stream_sessions_created(&self) -> u64 {
        self.state.counters.stream_sessions.load(Ordering::Relaxed)
    }

    /// Subscriptions cancelled because a delivery found no GET stream.
    pub fn cancelled_subscriptions(&self) -> u64 {
        self.state
            .counters
            .cancelled_subscriptions
            .load(Ordering::Relaxed)
    }

    pub fn session_ids(&self) -> Vec<String> {
        self.state.lock().sessions.keys().cloned().collect()
    }

    /// How many times live sessions sent `method` (as named in [`SimHandle::method_log`]).
    pub fn method_count(&self, method: &str) -> usize {
        self.state
            .lock()
            .sessions
            .values()
            .map(|s| s.counts.get(method).copied().unwrap_or(0) as usize)
            .sum()
    }

    pub fn sessions(&self) -> usize {
        self.state.lock().sessions.len()
    }

    pub fn subscriptions(&self) -> usize {
        self.state.lock().total_subs
    }

    /// Sessions with a GET stream attached right now.
    pub fn attached_streams(&self) -> usize {
        self.state
            .lock()
            .sessions
            .values()
            .filter(|s| s.stream.as_ref().is_some_and(|t| !t.is_closed()))
            .count()
    }

    /// What one session did, in order (`initialize`, `GET`, methods, `tools/call:<name>`,
    /// `DELETE`); also for sessions that have ended.
    pub fn method_log(&self, session_id: &str) -> Option<Vec<String>> {
        self.state.method_log(session_id)
    }

    /// Makes the read-only tool `tool` misbehave (`None`: answer normally again).
    pub fn set_tool_fault(&self, tool: &str, fault: Option<ToolFault>) {
        self.state.cluster.set_fault(tool, fault);
    }

    /// Adds the objects, logs and events of `spec`'s scenario to the cluster the tools serve,
    /// without emitting the fault (emitting also adds them).
    pub fn add_to_cluster(&self, spec: &FaultSpec) {
        self.state.cluster.register(spec);
    }

    pub async fn shutdown(self) {
        if let Some(s) = self.server.lock().await.take() {
            stop_server(s).await;
        }
        self.generator.abort();
    }
}

async fn stop_server(server: ServerTask) {
    server.stop.cancel();
    let mut join = server.join;
    if tokio::time::timeout(RESTART_GRACE, &mut join)
        .await
        .is_err()
    {
        join.abort();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.generator.abort();
        if let Ok(mut s) = self.server.try_lock() {
            if let Some(s) = s.take() {
                s.stop.cancel();
                s.join.abort();
            }
        }
    }
}
