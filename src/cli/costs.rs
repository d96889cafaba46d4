//! `nightcrier costs` and the spend lines of `nightcrier status`: runs, tokens and US dollars
//! over time windows, from the agent-run rows.

use std::process::ExitCode;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::output::{table, time};
use crate::accounting::{day_start, format_usd, hour_start};
use crate::store::{CostGroup, CostKey, Store};

/// What `costs --by` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Cluster,
    FaultType,
    Model,
    Day,
}

impl From<By> for CostKey {
    fn from(by: By) -> Self {
        match by {
            By::Cluster => CostKey::Cluster,
            By::FaultType => CostKey::FaultType,
            By::Model => CostKey::Model,
            By::Day => CostKey::Day,
        }
    }
}

#[derive(Debug, Serialize)]
struct CostsReport {
    since: DateTime<Utc>,
    by: &'static str,
    groups: Vec<CostGroup>,
    total: CostGroup,
}

pub async fn run(
    store: &Store,
    since: std::time::Duration,
    by: By,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let span =
        TimeDelta::from_std(since).map_err(|_| anyhow::anyhow!("--since {since:?} is too long"))?;
    let since = Utc::now()
        .checked_sub_signed(span)
        .ok_or_else(|| anyhow::anyhow!("--since {since:?} reaches before the calendar's start"))?;
    let groups = store.cost_groups(since, by.into()).await?;
    let report = CostsReport {
        since,
        by: match by {
            By::Cluster => "cluster",
            By::FaultType => "fault_type",
            By::Model => "model",
            By::Day => "day",
        },
        total: CostGroup::total("total", &groups),
        groups,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.groups.is_empty() {
        println!("no agent runs since {}", time(&report.since));
    } else {
        println!("agent runs since {}:", time(&report.since));
        print!("{}", groups_table(report.by, &report.groups, &report.total));
    }
    Ok(ExitCode::SUCCESS)
}

fn groups_table(by: &str, groups: &[CostGroup], total: &CostGroup) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .chain(std::iter::once(total))
        .map(|g| {
            vec![
                g.key.clone(),
                g.runs.to_string(),
                g.input_tokens.to_string(),
                g.output_tokens.to_string(),
                g.cache_read_tokens.to_string(),
                g.cache_write_tokens.to_string(),
                g.turns.to_string(),
                spend(g),
            ]
        })
        .collect();
    table(
        &[
            &by.to_uppercase(),
            "RUNS",
            "INPUT",
            "OUTPUT",
            "CACHE READ",
            "CACHE WRITE",
            "TURNS",
            "SPEND",
        ],
        &rows,
    )
}

/// `$1.23`, with the runs whose cost is unknown named so a total is never read as complete.
fn spend(g: &CostGroup) -> String {
    let usd = format_usd(Some(g.cost_usd));
    match g.runs_without_cost {
        0 => usd,
        n => format!("{usd} (+{n} unknown)"),
    }
}

/// This hour's and today's runs and spend (UTC windows), per cluster and in total.
#[derive(Debug, Serialize)]
pub struct Spend {
    pub hour_since: DateTime<Utc>,
    pub day_since: DateTime<Utc>,
    pub hour: Vec<CostGroup>,
    pub today: Vec<CostGroup>,
    pub hour_total: CostGroup,
    pub today_total: CostGroup,
}

pub async fn spend_now(store: &Store) -> anyhow::Result<Spend> {
    let now = Utc::now();
    let (hour_since, day_since) = (hour_start(now), day_start(now));
    let hour = store.cost_groups(hour_since, CostKey::Cluster).await?;
    let today = store.cost_groups(day_since, CostKey::Cluster).await?;
    Ok(Spend {
        hour_since,
        day_since,
        hour_total: CostGroup::total("total", &hour),
        today_total: CostGroup::total("total", &today),
        hour,
        today,
    })
}

pub fn render_spend(s: &Spend) -> String {
    let find = |groups: &[CostGroup], key: &str| {
        groups
            .iter()
            .find(|g| g.key == key)
            .cloned()
            .unwrap_or_default()
    };
    let mut keys: Vec<&str> = s.today.iter().map(|g| g.key.as_str()).collect();
    keys.extend(s.hour.iter().map(|g| g.key.as_str()));
    keys.sort_unstable();
    keys.dedup();
    let mut rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let (h, d) = (find(&s.hour, k), find(&s.today, k));
            vec![
                k.to_string(),
                h.runs.to_string(),
                spend(&h),
                d.runs.to_string(),
                spend(&d),
            ]
        })
        .collect();
    rows.push(vec![
        "total".into(),
        s.hour_total.runs.to_string(),
        spend(&s.hour_total),
        s.today_total.runs.to_string(),
        spend(&s.today_total),
    ]);
    format!(
        "\nagent spend (UTC; hour since {}, day since {}):\n{}",
        time(&s.hour_since),
        time(&s.day_since),
        table(
            &[
                "CLUSTER",
                "RUNS (HOUR)",
                "SPEND (HOUR)",
                "RUNS (TODAY)",
                "SPEND (TODAY)"
            ],
            &rows
        )
    )
}
