//! Evidence sessions kept open between runs: at most one idle session per cluster, so that the
//! next run's evidence starts with its first tool call instead of the MCP handshake
//! (`initialize`, `notifications/initialized`) and ends without a `DELETE`, three round trips
//! to the cluster's server fewer per run.
//!
//! A session is reused only while fresh ([`IDLE_MAX`]) and only after a gathering in which no
//! call failed at the protocol level; a kept session the server no longer knows (restart,
//! expiry: HTTP 404) is replaced once by a new one (see `collect`). Idle sessions past
//! [`IDLE_MAX`] are ended in the background at the next take or put (of any cluster); those
//! left when runs stop are ended by the server's own expiry (one per cluster at most).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mcp_client::CallSession;

/// How long an unused session is kept. Well under the servers' own session expiry.
pub const IDLE_MAX: Duration = Duration::from_secs(30);

struct Idle {
    /// The endpoint it was opened on (a cluster's endpoint does not change in a process, but a
    /// session must never go to another server).
    endpoint: String,
    session: CallSession,
    since: Instant,
}

/// The idle sessions, by cluster name. Cheap to share (`Arc`) between runs.
#[derive(Default)]
pub struct Sessions {
    /// A std lock: never held across an await.
    idle: Mutex<HashMap<String, Idle>>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The idle session of `cluster` on `endpoint`, when there is a fresh one. Taken: a second
    /// run of the same cluster at the same time opens its own.
    pub(crate) fn take(&self, cluster: &str, endpoint: &str) -> Option<CallSession> {
        let mut idle = self.lock();
        expire(&mut idle);
        match idle.remove(cluster) {
            Some(i) if i.endpoint == endpoint => Some(i.session),
            Some(i) => {
                close_later(i.session);
                None
            }
            None => None,
        }
    }

    /// Keeps `session` for the next run of `cluster`; one is kept per cluster, so a session
    /// already idle there is ended instead.
    pub(crate) fn put(&self, cluster: &str, endpoint: &str, session: CallSession) {
        let mut idle = self.lock();
        expire(&mut idle);
        let kept = Idle {
            endpoint: endpoint.to_string(),
            session,
            since: Instant::now(),
        };
        if let Some(old) = idle.insert(cluster.to_string(), kept) {
            close_later(old.session);
        }
    }

    /// Idle sessions held now (tests).
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends the sessions idle past [`IDLE_MAX`].
fn expire(idle: &mut HashMap<String, Idle>) {
    let stale: Vec<String> = idle
        .iter()
        .filter(|(_, i)| i.since.elapsed() > IDLE_MAX)
        .map(|(c, _)| c.clone())
        .collect();
    for cluster in stale {
        if let Some(i) = idle.remove(&cluster) {
            close_later(i.session);
        }
    }
}

/// The `DELETE` (bounded by the client) off the run's path.
fn close_later(session: CallSession) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(session.close());
        }
        // No runtime (a drop at exit): the server expires it.
        Err(_) => drop(session),
    }
}
