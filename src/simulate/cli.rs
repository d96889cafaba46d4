//! The `nightcrier simulate` entry: N simulated clusters, one server each on consecutive ports.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Rate, SimConfig, SimError, SimHandle, Simulator};

/// Arguments of `nightcrier simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Address of the first simulated cluster; cluster N listens on port + N - 1 (port 0: each
    /// cluster gets a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Simulated clusters, each a separate MCP server (context names sim-1, sim-2, ...).
    #[arg(long, default_value_t = 1)]
    pub clusters: u16,
    /// Fault occurrences per cluster, as COUNT/UNIT (s, m, h): 2/s, 100/m.
    #[arg(long, default_value = "1/s")]
    pub rate: Rate,
    /// Distinct faults per cluster; each is re-sent as the real server re-sends it.
    #[arg(long, default_value_t = 50)]
    pub faults: usize,
    /// How soon a subscription gets the same fault again (the server uses 15m).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub reemit_every: Duration,
    /// Seed of the simulated faults (same seed, same faultIds).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl SimulateArgs {
    /// The configuration of cluster `i` (0-based).
    pub fn sim_config(&self, i: u16) -> Result<SimConfig, SimError> {
        let port = match self.listen.port() {
            0 => 0,
            p => p.checked_add(i).ok_or_else(|| {
                SimError::Invalid(format!(
                    "--listen port {p} + {} clusters goes past 65535",
                    self.clusters
                ))
            })?,
        };
        Ok(SimConfig {
            listen: SocketAddr::new(self.listen.ip(), port),
            context: format!("sim-{}", i + 1),
            rate: Some(self.rate),
            faults: self.faults,
            reemit_every: self.reemit_every,
            seed: self.seed.wrapping_add(u64::from(i)),
            diagnostic_every: Some(Duration::from_secs(60)),
            ..SimConfig::default()
        })
    }
}

/// Starts the clusters, prints their endpoints and a matching `clusters:` block, and serves
/// until `shutdown`.
pub async fn run_cli(args: SimulateArgs, shutdown: CancellationToken) -> Result<(), SimError> {
    if args.clusters == 0 {
        return Err(SimError::Invalid("--clusters must be at least 1".into()));
    }
    let mut sims: Vec<SimHandle> = Vec::with_capacity(usize::from(args.clusters));
    for i in 0..args.clusters {
        sims.push(Simulator::start(args.sim_config(i)?).await?);
    }
    println!(
        "simulating {} cluster(s), {} distinct faults each at {}; paste into your config:",
        sims.len(),
        args.faults,
        args.rate
    );
    println!("clusters:");
    for s in &sims {
        println!(
            "  - name: {}\n    mcp:\n      endpoint: {}",
            s.context(),
            s.endpoint()
        );
    }
    shutdown.cancelled().await;
    for s in sims {
        s.shutdown().await;
    }
    Ok(())
}
