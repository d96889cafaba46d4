//! One supervisor per configured cluster, each in its own task that is restarted after a panic.
//!
//! A panic in one cluster's supervisor is logged with the cluster's name and that supervisor
//! alone is started again after a backoff; the process and the other clusters go on.

use std::any::Any;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::error;

use super::sink::{ClusterStats, FaultSink, Phase};
use super::supervisor::{Backoff, Supervisor};
use crate::config::{ClusterConfig, ReconnectConfig};

/// All clusters' supervisors, stopped together by one token.
pub struct McpFleet {
    clusters: Vec<ClusterConfig>,
    reconnect: ReconnectConfig,
    client: reqwest::Client,
    sink: Arc<dyn FaultSink>,
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl McpFleet {
    /// `client` is the one HTTP client (connection pool) every session shares.
    pub fn new(
        clusters: Vec<ClusterConfig>,
        reconnect: ReconnectConfig,
        client: reqwest::Client,
        sink: Arc<dyn FaultSink>,
    ) -> Self {
        Self {
            clusters,
            reconnect,
            client,
            sink,
        }
    }

    /// Runs every supervisor until `cancel`; sessions are DELETEd on the way out.
    pub async fn run(self, cancel: CancellationToken) {
        let mut tasks = JoinSet::new();
        for cluster in self.clusters {
            tasks.spawn(supervise(
                cluster,
                self.reconnect,
                self.client.clone(),
                self.sink.clone(),
                cancel.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Runs one cluster's supervisor, restarting it after a panic.
async fn supervise(
    cluster: ClusterConfig,
    reconnect: ReconnectConfig,
    client: reqwest::Client,
    sink: Arc<dyn FaultSink>,
    cancel: CancellationToken,
) {
    let stats = Arc::new(ClusterStats::new(cluster.name.clone()));
    let mut backoff = Backoff::new(reconnect.initial_backoff, reconnect.max_backoff);
    let mut rng = StdRng::from_os_rng();
    loop {
        let sup = Supervisor::new(
            cluster.clone(),
            reconnect,
            client.clone(),
            sink.clone(),
            stats.clone(),
        );
        // Aborted on drop, so an aborted fleet never leaks a supervisor.
        let task = AbortOnDropHandle::new(tokio::spawn(sup.run(cancel.clone())));
        let panic = match task.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => panic_message(&*e.into_panic()),
            Err(_) => return, // aborted: we are being shut down
        };
        let delay = backoff.next_delay(&mut rng);
        error!(cluster = %cluster.name, panic = %panic, retry_in = ?delay, "MCP supervisor panicked; restarting it");
        sink.report_state(stats.set_phase(
            Phase::BackingOff,
            None,
            Some(format!("supervisor panicked: {panic}")),
        ));
        metrics::gauge!("nightcrier_mcp_connected", "cluster" => cluster.name.clone()).set(0.0);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
