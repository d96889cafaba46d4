//! Test support for the reporting tests: a local Slack webhook receiver (real HTTP on loopback,
//! scripted answers, every request recorded with its arrival time) and finished incidents in a
//! real SQLite store with real workspaces.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use nightcrier::agent::Workspace;
use nightcrier::incident::{Incident, IncidentStatus, RunOutcome};
use nightcrier::store::{ClaimLimits, Store};
use tokio::sync::Notify;

pub use super::common;

/// The secret part of the test webhook URL: it must never show in logs or errors.
pub const WEBHOOK_SECRET: &str = "T0000/B0000/xoxb-SECRET-TOKEN";

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub body: serde_json::Value,
}

/// One scripted answer: status and optional `Retry-After` seconds.
pub type Answer = (StatusCode, Option<u64>);

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Answer>>,
    /// Answer once the script is used up.
    fallback: Mutex<Option<Answer>>,
    arrived: Notify,
}

/// A webhook receiver on 127.0.0.1:0; aborted on drop.
pub struct Receiver {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: String) -> Response {
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    inner.received.lock().unwrap().push(Received {
        at: Instant::now(),
        body,
    });
    inner.arrived.notify_waiters();
    let answer = inner
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*inner.fallback.lock().unwrap())
        .unwrap_or((StatusCode::OK, None));
    let mut resp = (answer.0, if answer.0.is_success() { "ok" } else { "no" }).into_response();
    if let Some(secs) = answer.1 {
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    resp
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/services/{*rest}", post(hook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { inner, addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/services/{WEBHOOK_SECRET}", self.addr)
    }

    /// Answers to the next requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.script.lock().unwrap().extend(answers);
    }

    pub fn always(&self, answer: Answer) {
        *self.inner.fallback.lock().unwrap() = Some(answer);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// The `text` of every message received, in order.
    pub fn texts(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

pub const WIDE: ClaimLimits = ClaimLimits {
    max_concurrent_agents: 100,
    max_agents_per_cluster: 100,
    lease: Duration::from_secs(60),
};

/// Records a fault, claims it, writes `report` (when given) into its workspace under `root` and
/// completes it with `status` and `reason`.
pub async fn finished(
    store: &Store,
    root: &Path,
    fault_id: &str,
    status: IncidentStatus,
    reason: Option<&str>,
    report: Option<&str>,
) -> Incident {
    let f = common::fault("prod-eu-1", fault_id);
    store.record_faults(&[f.clone(), f]).await.unwrap();
    let claimed = store.claim("w1", WIDE).await.unwrap().expect("pending");
    let ws = Workspace::new(root, claimed.incident.id);
    ws.prepare().unwrap();
    if let Some(md) = report {
        std::fs::write(ws.report_file(), md).unwrap();
    }
    std::fs::write(ws.log_file(), "agent started\nagent done\n").unwrap();
    let outcome = RunOutcome {
        status: status.try_into().expect("a status a run can end with"),
        reason: reason.map(str::to_string),
        exit_code: Some(0),
    };
    assert!(store
        .complete(claimed.incident.id, claimed.attempt, &outcome)
        .await
        .unwrap());
    store.get(&claimed.incident.id.to_string()).await.unwrap()
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reports")
            .join(name),
    )
    .unwrap()
}
