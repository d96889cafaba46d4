//! Evidence gathered before an agent starts: the faulted object, its events, its pod's current
//! and previous logs, its owners, its node, read through the cluster's kubernetes-mcp-server
//! tools and kept in the workspace's `evidence/` (see [`bundle`]), then summarised for the
//! prompt (see [`summary`]).
//!
//! It runs on a session of its own ([`crate::mcp_client`]; kept for the cluster's next run by
//! [`Sessions`]), never on the producer's subscription session, and never fails a run: every
//! call is bounded in time and bytes, the whole gathering by a budget, and whatever fails
//! (server down, tool missing, hang, error) is recorded in the index as a gap. Calls of one
//! stage run concurrently so the worker slot is held no longer than the slowest call of each
//! stage.
//!
//! This module is consumer-side: it must not import `mcp` (the producer) nor write to the
//! database.

mod bundle;
mod plan;
mod sessions;
pub mod summary;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{EvidenceConfig, McpConfig};
use crate::mcp_client::{CallSession, ClientError, Endpoint};

pub use bundle::{load_bundle, load_index, Bundle, CallRecord, Index, EVIDENCE_DIR, INDEX_FILE};
pub use sessions::{Sessions, IDLE_MAX as SESSION_IDLE_MAX};
pub use summary::{highlights, Highlights};

/// Stages of follow-up calls at most (owner of the owner, pods of a workload, ...).
const MAX_STAGES: usize = 4;
/// Calls per bundle at most, whatever the plan says.
const MAX_CALLS: usize = 16;

/// The object a bundle is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub cluster: &'a str,
    pub fault_type: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl Target<'_> {
    fn resource(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Gathers the bundle for `target` into `dir` (emptied first). Never fails: what could not be
/// gathered is recorded in the index. Returns early, with what it has, when `cancel` fires.
pub async fn gather(
    client: &reqwest::Client,
    mcp: &McpConfig,
    cfg: &EvidenceConfig,
    target: Target<'_>,
    dir: &Path,
    cancel: &CancellationToken,
) -> Bundle {
    gather_with(client, None, mcp, cfg, target, dir, cancel).await
}

/// [`gather`] on a session kept from an earlier run of the cluster when `sessions` has one,
/// keeping its session there afterwards (see [`Sessions`]).
pub async fn gather_with(
    client: &reqwest::Client,
    sessions: Option<&Sessions>,
    mcp: &McpConfig,
    cfg: &EvidenceConfig,
    target: Target<'_>,
    dir: &Path,
    cancel: &CancellationToken,
) -> Bundle {
    let started = Instant::now();
    let mut bundle = Bundle {
        dir: dir.to_path_buf(),
        index: Index {
            cluster: target.cluster.to_string(),
            fault_type: target.fault_type.to_string(),
            resource: target.resource(),
            started_at: now_rfc3339(),
            duration_ms: 0,
            session_error: None,
            calls: Vec::new(),
        },
        texts: HashMap::new(),
    };
    let dir_ok = match bundle::reset_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            bundle.index.session_error = Some(format!("cannot prepare {}: {e}", dir.display()));
            false
        }
    };
    if dir_ok {
        let deadline = started + cfg.budget;
        tokio::select! {
            _ = collect(client, sessions, mcp, cfg, target, &mut bundle, deadline) => {}
            _ = cancel.cancelled() => {
                bundle.index.session_error.get_or_insert_with(|| "interrupted: the run was cancelled".into());
            }
        }
    }
    bundle.index.duration_ms = started.elapsed().as_millis() as u64;
    if dir_ok {
        let json = serde_json::to_vec_pretty(&bundle.index).unwrap_or_default();
        if let Err(e) = bundle::write_new(dir, INDEX_FILE, &json) {
            tracing::warn!(cluster = %target.cluster, error = %e, "cannot write the evidence index");
        }
    }
    bundle
}

async fn collect(
    client: &reqwest::Client,
    sessions: Option<&Sessions>,
    mcp: &McpConfig,
    cfg: &EvidenceConfig,
    target: Target<'_>,
    bundle: &mut Bundle,
    deadline: Instant,
) {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let endpoint = match Endpoint::new(&mcp.endpoint, &mcp.headers) {
        Ok(e) => e,
        Err(e) => {
            bundle.index.session_error = Some(e.to_string());
            return;
        }
    };
    let endpoint = &endpoint;
    let open = move || CallSession::open(client, endpoint, cfg.call_timeout.min(remaining()));
    let kept = sessions.and_then(|s| s.take(target.cluster, &mcp.endpoint));
    let mut reused = kept.is_some();
    let mut session = match kept {
        Some(s) => s,
        None => match open().await {
            Ok(s) => s,
            Err(e) => {
                bundle.index.session_error = Some(e.to_string());
                return;
            }
        },
    };
    // Whether the session is fit to be kept for the next run: no call failed on it.
    let mut sound = true;
    let tail = cfg.log_tail_lines;
    let mut stage = plan::first(&target, tail);
    for _ in 0..MAX_STAGES {
        stage.truncate(MAX_CALLS.saturating_sub(bundle.index.calls.len()));
        if stage.is_empty() {
            break;
        }
        let mut results = run_stage(&session, &stage, cfg, deadline).await;
        if reused && results.iter().any(|(p, _)| p.session_lost) {
            // The server no longer knows the kept session (restarted, expired it): the stage
            // again on a new one, once.
            match open().await {
                Ok(s) => {
                    session = s;
                    results = run_stage(&session, &stage, cfg, deadline).await;
                }
                Err(e) => {
                    bundle.index.session_error = Some(e.to_string());
                    return;
                }
            }
        }
        reused = false;
        sound &= results.iter().all(|(p, _)| !p.client_error);
        for (call, (record, text)) in stage.iter().zip(results) {
            store(bundle, call, record, text);
        }
        let done = |label: &str| bundle.index.calls.iter().any(|c| c.label == label);
        stage = plan::next(&target, &bundle.texts, &done, tail);
    }
    match sessions {
        Some(s) if sound => s.put(target.cluster, &mcp.endpoint, session),
        _ => session.close().await,
    }
}

/// The calls of one stage, concurrently.
async fn run_stage(
    session: &CallSession,
    stage: &[plan::Call],
    cfg: &EvidenceConfig,
    deadline: Instant,
) -> Vec<(Partial, Option<String>)> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    futures::future::join_all(stage.iter().map(|c| one_call(session, c, cfg, remaining))).await
}

/// What one call produced before it is numbered and written.
struct Partial {
    started_at: String,
    duration: Duration,
    tool_error: bool,
    error: Option<String>,
    /// The call failed at the protocol level (transport, HTTP status, timeout, bad reply).
    client_error: bool,
    /// The server answered 404: it does not know the session.
    session_lost: bool,
}

async fn one_call(
    session: &CallSession,
    call: &plan::Call,
    cfg: &EvidenceConfig,
    remaining: Duration,
) -> (Partial, Option<String>) {
    let started_at = now_rfc3339();
    let t0 = Instant::now();
    if remaining.is_zero() {
        let p = Partial {
            started_at,
            duration: Duration::ZERO,
            tool_error: false,
            error: Some("not made: the evidence budget was spent".into()),
            client_error: false,
            session_lost: false,
        };
        return (p, None);
    }
    let timeout = cfg.call_timeout.min(remaining);
    let reply = session
        .call_tool(call.tool, call.args.clone(), timeout, cfg.max_call_bytes)
        .await;
    let duration = t0.elapsed();
    match reply {
        Ok(r) => (
            Partial {
                started_at,
                duration,
                tool_error: r.is_error,
                error: None,
                client_error: false,
                session_lost: false,
            },
            Some(r.text),
        ),
        Err(e) => (
            Partial {
                started_at,
                duration,
                tool_error: false,
                error: Some(e.to_string()),
                client_error: true,
                session_lost: matches!(e, ClientError::Http { status: 404, .. }),
            },
            None,
        ),
    }
}

fn store(bundle: &mut Bundle, call: &plan::Call, p: Partial, text: Option<String>) {
    let seq = bundle.index.calls.len() + 1;
    let ext = match call.tool {
        "pods_get" | "resources_get" | "events_list" => "yaml",
        _ => "txt",
    };
    let mut record = CallRecord {
        seq,
        label: call.label.clone(),
        tool: call.tool.to_string(),
        arguments: call.args.clone(),
        file: None,
        started_at: p.started_at,
        duration_ms: p.duration.as_millis() as u64,
        bytes: text.as_ref().map_or(0, String::len),
        tool_error: p.tool_error,
        error: p.error,
    };
    if let Some(text) = text {
        let name = format!("{seq:02}-{}.{ext}", call.label);
        match bundle::write_new(&bundle.dir, &name, text.as_bytes()) {
            Ok(()) => record.file = Some(name),
            Err(e) => record.error = Some(format!("answer not kept: cannot write {name}: {e}")),
        }
        if record.tool_error {
            // The server's own words say what is missing (e.g. no previous container).
            record.error = Some(text.chars().take(300).collect());
        } else {
            bundle.texts.insert(call.label.clone(), text);
        }
    }
    bundle.index.calls.push(record);
}
