//! Shared helpers of the `mcp_*` tests: a sink that records what the supervisor hands off, fast
//! reconnect settings, and waiting on a condition with a deadline.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightcrier::config::{ClusterConfig, ReconnectConfig};
use nightcrier::fault::ReceivedFault;
use nightcrier::incident::ConnectionState;
use nightcrier::mcp::FaultSink;
use tokio::sync::Notify;

#[derive(Default)]
pub struct CollectingSink {
    pub faults: Mutex<Vec<ReceivedFault>>,
    pub states: Mutex<Vec<ConnectionState>>,
    changed: Notify,
}

impl CollectingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn faults(&self) -> Vec<ReceivedFault> {
        self.faults.lock().unwrap().clone()
    }

    pub fn fault_ids(&self) -> Vec<String> {
        self.faults()
            .into_iter()
            .map(|f| f.fault.fault_id)
            .collect()
    }

    pub fn states(&self) -> Vec<ConnectionState> {
        self.states.lock().unwrap().clone()
    }

    /// The newest state reported for `cluster`.
    pub fn last_state(&self, cluster: &str) -> Option<ConnectionState> {
        self.states
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s.cluster == cluster)
            .cloned()
    }

    /// Distinct subscription ids reported as `subscribed`, in order.
    pub fn subscriptions(&self, cluster: &str) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for s in self.states() {
            if s.cluster == cluster && s.state == "subscribed" {
                if let Some(id) = s.subscription_id {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        ids
    }

    /// Waits until `cond` holds, failing the test after `secs` seconds.
    pub async fn wait_for(&self, what: &str, secs: u64, cond: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let notified = self.changed.notified();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                assert!(cond(self), "timed out waiting for {what}");
                return;
            }
        }
    }
}

impl FaultSink for CollectingSink {
    fn offer(&self, fault: ReceivedFault) -> bool {
        self.faults.lock().unwrap().push(fault);
        self.changed.notify_waiters();
        true
    }

    fn report_state(&self, state: ConnectionState) {
        self.states.lock().unwrap().push(state);
        self.changed.notify_waiters();
    }
}

/// [`super::common::cluster`] with 5-second MCP request and subscribe timeouts.
pub fn cluster(name: &str, endpoint: &str) -> ClusterConfig {
    let mut c = super::common::cluster(name, endpoint);
    c.mcp.request_timeout = Duration::from_secs(5);
    c.mcp.subscribe_timeout = Duration::from_secs(5);
    c
}

/// Reconnects within tens of milliseconds; pings every `ping`.
pub fn fast_reconnect(ping: Duration) -> ReconnectConfig {
    ReconnectConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        healthy_after: Duration::from_secs(60),
        ping_interval: ping,
        ping_timeout: Duration::from_secs(2),
        subscription_check_interval: Duration::from_secs(300),
    }
}

/// [`super::eventually`] for a plain condition (on the simulator), failing after `secs` seconds.
pub async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    super::eventually(what, Duration::from_secs(secs), async || {
        cond().then_some(())
    })
    .await
}

pub fn client() -> reqwest::Client {
    nightcrier::mcp::http_client(Duration::from_secs(2)).unwrap()
}
