//! The fleet in `nightcrier status` (processes and cluster owners) and `nightcrier drain`.

use std::process::ExitCode;

use chrono::Utc;
use serde::Serialize;

use super::output::{duration, table};
use crate::config::Config;
use crate::store::{InstanceRow, LeaseRow, Store};

/// The fleet part of `status` (PostgreSQL with `fleet.enabled` only).
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    /// Newest first; dead and stopped processes stay listed.
    pub instances: Vec<InstanceRow>,
    /// Every leased cluster and its owner.
    pub leases: Vec<LeaseRow>,
    /// The fingerprint of this configuration; processes with another one are flagged.
    pub config_hash: String,
}

pub async fn gather(config: &Config, store: &Store) -> anyhow::Result<Option<FleetStatus>> {
    if !config.fleet.enabled || store.backend() != "postgres" {
        return Ok(None);
    }
    let (instances, leases) = store.fleet_status(config.fleet.lease_ttl).await?;
    Ok(Some(FleetStatus {
        instances,
        leases,
        config_hash: crate::fleet::config_fingerprint(config),
    }))
}

pub fn render(fleet: &FleetStatus) -> String {
    let now = Utc::now();
    let mut out = String::from("\nfleet:\n");
    if fleet.instances.is_empty() {
        out.push_str("no process has joined yet\n");
        return out;
    }
    let rows: Vec<Vec<String>> = fleet
        .instances
        .iter()
        .map(|i| {
            let state = match (i.alive, i.stopped_at.is_some(), i.draining) {
                (true, _, true) => "draining",
                (true, _, false) => "alive",
                (false, true, _) => "stopped",
                (false, false, _) => "dead",
            };
            vec![
                i.id.clone(),
                i.host.clone(),
                i.pid.to_string(),
                state.to_string(),
                format!("{} ago", duration(now - i.heartbeat_at)),
                i.clusters_owned.to_string(),
                i.agents_running.to_string(),
                if i.config_hash == fleet.config_hash {
                    i.config_hash.clone()
                } else {
                    format!("{} (differs)", i.config_hash)
                },
                i.http_addr.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "INSTANCE",
            "HOST",
            "PID",
            "STATE",
            "HEARTBEAT",
            "CLUSTERS",
            "AGENTS",
            "CONFIG",
            "HTTP",
        ],
        &rows,
    ));
    let rows: Vec<Vec<String>> = fleet
        .leases
        .iter()
        .map(|l| {
            vec![
                l.cluster.clone(),
                match (&l.owner, l.held) {
                    (Some(o), true) => o.clone(),
                    (Some(o), false) => format!("(expired: {o})"),
                    (None, _) => "(free)".into(),
                },
                l.epoch.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["CLUSTER", "OWNER", "EPOCH"], &rows));
    out
}

/// `nightcrier drain <instance>`: asks the live processes whose id starts with `instance` (a
/// `worker.instance_name`, or a full id from `status`) to hand their clusters over and stop
/// claiming. They act at their next heartbeat; the command does not wait.
pub async fn drain(config: &Config, store: &Store, instance: &str) -> anyhow::Result<ExitCode> {
    if store.backend() != "postgres" || !config.fleet.enabled {
        anyhow::bail!(
            "drain needs a fleet: database.url must be PostgreSQL and fleet.enabled true"
        );
    }
    // A bare name means all boots of that instance (`<name>/...`).
    let prefix = if instance.contains('/') {
        instance.to_string()
    } else {
        format!("{instance}/")
    };
    let asked = store.fleet_request_drain(&prefix).await?;
    if asked.is_empty() {
        eprintln!("no running fleet process matches {instance:?} (see `nightcrier status`)");
        return Ok(ExitCode::FAILURE);
    }
    for id in asked {
        println!("drain requested: {id}");
    }
    Ok(ExitCode::SUCCESS)
}
