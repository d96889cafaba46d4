//! `nightcrier status`: read from the database, so it works while `run` runs elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use chrono::{TimeDelta, Utc};
use serde::Serialize;

use super::output::{duration, opt_time, table};
use crate::config::Config;
use crate::incident::{short_id, ConnectionState, Incident, IncidentStatus};
use crate::store::Store;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub clusters: Vec<ClusterStatus>,
    /// Incidents per status across all clusters.
    pub totals: BTreeMap<String, i64>,
    /// Failed, timed-out and cancelled incidents of the last 24 hours, newest first.
    pub recent_failures: Vec<Incident>,
    /// This hour's and today's agent runs and spend.
    pub spend: super::costs::Spend,
    /// Processes and cluster owners of a fleet on PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<super::fleet::FleetStatus>,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    /// False for a cluster seen in the database but absent from this configuration.
    pub configured: bool,
    pub connection: Option<ConnectionState>,
    pub pending: i64,
    pub running: i64,
    pub incidents: BTreeMap<String, i64>,
}

pub async fn gather(config: &Config, store: &Store) -> anyhow::Result<StatusReport> {
    let states = store.connection_states().await?;
    let counts = store.status_counts().await?;
    let failures = store
        .recent_failures(Utc::now() - TimeDelta::hours(24), 10)
        .await?;

    let mut names: BTreeSet<String> = config.clusters.iter().map(|c| c.name.clone()).collect();
    names.extend(states.iter().map(|s| s.cluster.clone()));
    names.extend(counts.iter().map(|c| c.cluster.clone()));

    let mut totals: BTreeMap<String, i64> = IncidentStatus::ALL
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    let mut clusters = Vec::new();
    for name in names {
        let mut incidents = BTreeMap::new();
        for c in counts.iter().filter(|c| c.cluster == name) {
            incidents.insert(c.status.to_string(), c.count);
            *totals.entry(c.status.to_string()).or_default() += c.count;
        }
        let get = |s: IncidentStatus| incidents.get(s.as_str()).copied().unwrap_or(0);
        clusters.push(ClusterStatus {
            configured: config.clusters.iter().any(|c| c.name == name),
            connection: states.iter().find(|s| s.cluster == name).cloned(),
            pending: get(IncidentStatus::Pending),
            running: get(IncidentStatus::Running),
            incidents,
            name,
        });
    }
    Ok(StatusReport {
        clusters,
        totals,
        recent_failures: failures,
        spend: super::costs::spend_now(store).await?,
        fleet: super::fleet::gather(config, store).await?,
    })
}

pub async fn run(config: &Config, store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let report = gather(config, store).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&report));
    Ok(ExitCode::SUCCESS)
}

pub fn render(report: &StatusReport) -> String {
    let now = Utc::now();
    let mut out = String::new();
    if report.clusters.is_empty() {
        out.push_str("no clusters configured and nothing recorded yet\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .clusters
            .iter()
            .map(|c| {
                let conn = c.connection.as_ref();
                vec![
                    if c.configured {
                        c.name.clone()
                    } else {
                        format!("{} (not configured)", c.name)
                    },
                    conn.map_or_else(|| "never connected".into(), |s| s.state.to_string()),
                    conn.and_then(|s| s.last_event_at)
                        .map_or_else(|| "-".into(), |t| format!("{} ago", duration(now - t))),
                    conn.map_or_else(|| "-".into(), |s| s.events_received.to_string()),
                    c.pending.to_string(),
                    c.running.to_string(),
                    conn.and_then(|s| s.last_error.clone())
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "CLUSTER",
                "CONNECTION",
                "LAST EVENT",
                "EVENTS",
                "PENDING",
                "RUNNING",
                "LAST ERROR",
            ],
            &rows,
        ));
    }
    let totals: Vec<String> = report
        .totals
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    out.push_str(&format!(
        "\nincidents: {}\n",
        if totals.is_empty() {
            "none".to_string()
        } else {
            totals.join(", ")
        }
    ));
    out.push_str(&super::costs::render_spend(&report.spend));
    if let Some(fleet) = &report.fleet {
        out.push_str(&super::fleet::render(fleet));
    }
    if !report.recent_failures.is_empty() {
        out.push_str("\nrecent failures (24h):\n");
        let rows: Vec<Vec<String>> = report
            .recent_failures
            .iter()
            .map(|i| {
                vec![
                    short_id(i.id),
                    i.cluster.clone(),
                    i.status.to_string(),
                    i.failure_reason.clone().unwrap_or_else(|| "-".into()),
                    opt_time(&i.finished_at),
                ]
            })
            .collect();
        out.push_str(&table(
            &["ID", "CLUSTER", "STATUS", "REASON", "FINISHED"],
            &rows,
        ));
    }
    out
}
