//! `nightcrier incidents ...`

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::output::{escaped, opt_time, table, time};
use crate::accounting::format_usd;
use crate::incident::{Incident, IncidentStatus};
use crate::store::{ListFilter, Store};

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        /// Only this status (pending, running, succeeded, failed, timed_out, cancelled, skipped).
        #[arg(long)]
        status: Option<IncidentStatus>,
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident, its attempts and its latest occurrences.
    Show {
        /// Full id or a unique prefix of at least 8 characters.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue a finished incident again (a fresh attempt budget).
    Retry { id: String },
    /// Cancel a pending or running incident (a running agent is stopped).
    Cancel { id: String },
}

pub async fn run(
    cmd: &IncidentsCommand,
    store: &Store,
    config: &crate::config::Config,
) -> anyhow::Result<ExitCode> {
    let workspace_root = &config.workspace_root;
    match cmd {
        IncidentsCommand::List {
            status,
            cluster,
            limit,
            json,
        } => {
            let filter = ListFilter {
                status: *status,
                cluster: cluster.clone(),
                limit: Some(*limit),
            };
            let incidents = store.list(&filter).await.context("listing incidents")?;
            let ids: Vec<_> = incidents.iter().map(|i| i.id).collect();
            let costs = store
                .incident_costs(&ids)
                .await
                .context("reading incident costs")?;
            let cost = |i: &Incident| costs.get(&i.id).copied().flatten();
            if *json {
                let mut values = Vec::with_capacity(incidents.len());
                for i in &incidents {
                    let mut v = serde_json::to_value(i)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("cost_usd".into(), serde_json::to_value(cost(i))?);
                    }
                    values.push(v);
                }
                println!("{}", serde_json::to_string_pretty(&values)?);
            } else if incidents.is_empty() {
                println!("no incidents");
            } else {
                print!("{}", list_table(&incidents, &cost));
            }
        }
        IncidentsCommand::Show { id, json } => {
            let incident = store.get(id).await?;
            let runs = store.agent_runs(incident.id).await?;
            let occurrences = store.occurrences(incident.id, 20).await?;
            let related = store
                .related_occurrences(incident.id, RELATED_SHOWN)
                .await?;
            let ws = workspace_root.join(incident.id.to_string());
            let verdict = crate::report::verdict::read(&ws);
            let evidence = crate::evidence::load_index(&ws);
            // The operator's description of the cluster, as configured now.
            let cluster = config.clusters.iter().find(|c| c.name == incident.cluster);
            let environment = cluster.and_then(|c| c.environment.clone());
            let labels = cluster.map(|c| c.labels.clone()).unwrap_or_default();
            if *json {
                let mut v = serde_json::to_value(&incident)?;
                if let Some(obj) = v.as_object_mut() {
                    if let Some(env) = &environment {
                        obj.insert("cluster_environment".into(), env.clone().into());
                    }
                    if !labels.is_empty() {
                        obj.insert("cluster_labels".into(), serde_json::to_value(&labels)?);
                    }
                    obj.insert("agent_runs".into(), serde_json::to_value(&runs)?);
                    obj.insert(
                        "recent_occurrences".into(),
                        serde_json::to_value(&occurrences)?,
                    );
                    obj.insert("related_faults".into(), serde_json::to_value(&related)?);
                    if let Some(v) = &verdict {
                        obj.insert("verdict".into(), serde_json::to_value(v)?);
                    }
                    if let Some(e) = &evidence {
                        obj.insert("evidence".into(), serde_json::to_value(e)?);
                    }
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", describe(&incident, environment.as_deref(), &labels));
                print!(
                    "{}",
                    investigation_lines(verdict.as_ref(), evidence.as_ref())
                );
                if !related.is_empty() {
                    println!("\nrelated faults (one investigation covers them):");
                    let rows: Vec<Vec<String>> = related
                        .iter()
                        .map(|o| {
                            let res = match &o.namespace {
                                Some(ns) => format!("{}/{ns}/{}", o.resource_kind, o.resource_name),
                                None => format!("{}/{}", o.resource_kind, o.resource_name),
                            };
                            vec![o.fault_type.clone(), res, time(&o.received_at)]
                        })
                        .collect();
                    print!("{}", table(&["FAULT", "RESOURCE", "LAST SEEN"], &rows));
                    if related.len() as u32 == RELATED_SHOWN {
                        println!("(first {RELATED_SHOWN} shown)");
                    }
                }
                if !runs.is_empty() {
                    println!("\nattempts:");
                    let rows: Vec<Vec<String>> = runs
                        .iter()
                        .map(|r| {
                            vec![
                                r.attempt.to_string(),
                                time(&r.started_at),
                                opt_time(&r.finished_at),
                                r.outcome
                                    .map_or_else(|| "running".into(), |o| o.to_string()),
                                r.reason.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(
                            &["ATTEMPT", "STARTED", "FINISHED", "OUTCOME", "REASON"],
                            &rows
                        )
                    );
                    print!("{}", usage_table(&runs));
                }
            }
        }
        IncidentsCommand::Retry { id } => {
            let incident = store.get(id).await?;
            let after = store.retry(incident.id).await?;
            println!("incident {} is {} again", after.id, after.status);
        }
        IncidentsCommand::Cancel { id } => {
            let incident = store.get(id).await?;
            let after = store.cancel(incident.id).await?;
            println!("incident {} is {}", after.id, after.status);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Related faults listed by `incidents show`.
const RELATED_SHOWN: u32 = 50;

fn resource(i: &Incident) -> String {
    match &i.namespace {
        Some(ns) => format!("{}/{}/{}", i.resource_kind, ns, i.resource_name),
        None => format!("{}/{}", i.resource_kind, i.resource_name),
    }
}

/// Per attempt: model, tokens, turns, cost and where the cost comes from.
fn usage_table(runs: &[crate::incident::AgentRun]) -> String {
    let n = |v: Option<i64>| v.map_or_else(|| "-".into(), |v| v.to_string());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| match &r.usage {
            None => vec![r.attempt.to_string(), "not accounted yet".into()],
            Some(u) => vec![
                r.attempt.to_string(),
                u.model.clone().unwrap_or_else(|| "-".into()),
                n(u.input_tokens),
                n(u.output_tokens),
                n(u.cache_read_tokens),
                n(u.cache_write_tokens),
                n(u.turns),
                format_usd(u.cost_usd),
                u.accounting.to_string(),
            ],
        })
        .collect();
    format!(
        "\nusage:\n{}",
        table(
            &[
                "ATTEMPT",
                "MODEL",
                "INPUT",
                "OUTPUT",
                "CACHE READ",
                "CACHE WRITE",
                "TURNS",
                "COST",
                "ACCOUNTING",
            ],
            &rows
        )
    )
}

fn list_table(incidents: &[Incident], cost: &dyn Fn(&Incident) -> Option<f64>) -> String {
    let rows: Vec<Vec<String>> = incidents
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.status.to_string(),
                i.cluster.clone(),
                i.fault_type.clone(),
                i.severity.clone(),
                resource(i),
                i.occurrences.to_string(),
                i.attempt.to_string(),
                time(&i.created_at),
                format_usd(cost(i)),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATUS", "CLUSTER", "FAULT", "SEVERITY", "RESOURCE", "SEEN", "ATTEMPT",
            "CREATED", "COST",
        ],
        &rows,
    )
}

fn describe(
    i: &Incident,
    environment: Option<&str>,
    labels: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("id", i.id.to_string()),
        ("status", i.status.to_string()),
        (
            "failure reason",
            i.failure_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        ("cluster", i.cluster.clone()),
        ("fault", format!("{} ({})", i.fault_type, i.fault_id)),
        ("severity", i.severity.clone()),
        ("resource", resource(i)),
        ("context", i.context.clone()),
        ("occurrences", i.occurrences.to_string()),
        ("first seen", time(&i.first_seen)),
        ("last seen", time(&i.last_seen)),
        ("created", time(&i.created_at)),
        ("started", opt_time(&i.started_at)),
        ("finished", opt_time(&i.finished_at)),
        ("attempt", i.attempt.to_string()),
    ];
    if let Some(env) = environment {
        fields.insert(4, ("environment", env.to_string()));
    }
    if !labels.is_empty() {
        let text = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        fields.insert(4, ("labels", text));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields
        .into_iter()
        .map(|(k, v)| format!("{k:<width$}  {}\n", escaped(&v)))
        .collect()
}

/// The verdict and the evidence bundle of `incidents show` (escaped: both come from the
/// cluster or the agent).
fn investigation_lines(
    verdict: Option<&crate::report::verdict::Verdict>,
    evidence: Option<&crate::evidence::Index>,
) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let mut out = String::new();
    if let Some(v) = verdict {
        if let Some(h) = v.headline() {
            out.push_str(&format!("verdict: {}\n", clean(&h)));
        } else if let Some(c) = &v.confidence {
            let missing = v.missing.as_deref().unwrap_or("");
            out.push_str(&format!("verdict: {} {}\n", clean(c), clean(missing)));
        }
        if !v.evidence.is_empty() {
            out.push_str(&format!(
                "verdict evidence: {}\n",
                clean(&v.evidence.join(", "))
            ));
        }
    }
    if let Some(e) = evidence {
        out.push_str(&format!(
            "evidence: {} calls, {} gaps, {} ms\n",
            e.calls.len(),
            e.gaps().count(),
            e.duration_ms
        ));
        if let Some(why) = &e.session_error {
            out.push_str(&format!("  no session: {}\n", clean(why)));
        }
        for c in &e.calls {
            let what = match &c.error {
                Some(err) => format!("gap: {}", clean(err)),
                None => format!("{} bytes", c.bytes),
            };
            out.push_str(&format!(
                "  {} {} ({} ms) {}\n",
                c.file.as_deref().map_or_else(|| c.label.clone(), clean),
                c.tool,
                c.duration_ms,
                what
            ));
        }
    }
    out
}
