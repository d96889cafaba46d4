//! Accounting in the store: recording what a run consumed, and summing it over time windows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Result, Store, StoreError};
use crate::accounting::RunUsage;

/// Most incidents [`Store::incident_costs`] takes at once (a list page).
pub const MAX_COST_IDS: usize = super::MAX_LIST_LIMIT as usize;

/// What [`Store::cost_groups`] groups runs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKey {
    Cluster,
    FaultType,
    Model,
    /// The UTC day the run started (`YYYY-MM-DD`).
    Day,
}

/// Runs, tokens and spend of one group. Unknown counts add nothing; `runs_without_cost` says
/// how many runs the spend does not cover.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct CostGroup {
    pub key: String,
    pub runs: i64,
    pub runs_without_cost: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub turns: i64,
    pub cost_usd: f64,
}

impl CostGroup {
    /// The sum of several groups under `key` (a total line).
    pub fn total(key: &str, groups: &[CostGroup]) -> CostGroup {
        groups.iter().fold(
            CostGroup {
                key: key.into(),
                ..CostGroup::default()
            },
            |mut t, g| {
                t.runs += g.runs;
                t.runs_without_cost += g.runs_without_cost;
                t.input_tokens += g.input_tokens;
                t.output_tokens += g.output_tokens;
                t.cache_read_tokens += g.cache_read_tokens;
                t.cache_write_tokens += g.cache_write_tokens;
                t.turns += g.turns;
                t.cost_usd += g.cost_usd;
                t
            },
        )
    }
}

impl Store {
    /// Records what the attempt's agent consumed. Not fenced: a run that lost its lease still
    /// spent the money. `NotFound` when the attempt has no agent-run row.
    pub async fn set_run_usage(&self, id: Uuid, attempt: i32, usage: &RunUsage) -> Result<()> {
        if usage.cost_usd.is_some_and(|c| !c.is_finite() || c < 0.0) {
            return Err(StoreError::InvalidInput(format!(
                "run cost {:?} is not a non-negative number",
                usage.cost_usd
            )));
        }
        let (store, usage) = (self.clone(), usage.clone());
        super::detached(async move { on_portable!(store.set_run_usage(id, attempt, &usage)) }).await
    }

    /// Runs started since `since`, grouped by `key`, ordered by key.
    pub async fn cost_groups(&self, since: DateTime<Utc>, key: CostKey) -> Result<Vec<CostGroup>> {
        on_driver!(self.cost_groups(since, key))
    }

    /// The spend of each incident among `ids` over all its runs (`None`: no run has a known
    /// cost). Incidents without runs are absent.
    pub async fn incident_costs(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<f64>>> {
        if ids.len() > MAX_COST_IDS {
            return Err(StoreError::InvalidInput(format!(
                "{} incidents asked for at once; at most {MAX_COST_IDS}",
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        on_driver!(self.incident_costs(ids))
    }
}

/// The column a [`CostKey`] groups by; `day` is backend-specific.
pub(super) fn key_column(key: CostKey, day: &'static str) -> &'static str {
    match key {
        CostKey::Cluster => "i.cluster",
        CostKey::FaultType => "i.fault_type",
        CostKey::Model => "coalesce(r.model, 'unknown')",
        CostKey::Day => day,
    }
}
