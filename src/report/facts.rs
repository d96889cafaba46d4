//! The key facts beside an incident's rendered report that come from the store: the run's
//! accounting and the related faults one investigation covered. One owner, so the page the
//! reporter writes and the page the HTTP server renders on request say the same.

use crate::incident::{FaultOccurrence, Incident};
use crate::store::Store;

/// Related faults named on the page; the count says how many there are in all (up to the query's
/// bound).
const RELATED_NAMED: usize = 10;
const RELATED_QUERIED: u32 = 1000;

/// The facts for `incident`'s page. A store error leaves a fact out (logged at debug): the page
/// is still worth rendering without it.
pub async fn page_facts(store: &Store, incident: &Incident) -> Vec<(&'static str, String)> {
    let usage = match store.agent_runs(incident.id).await {
        Ok(runs) => runs
            .into_iter()
            .find(|r| r.attempt == incident.attempt)
            .and_then(|r| r.usage),
        Err(e) => {
            tracing::debug!(incident_id = %incident.id, error = %e, "cannot read the run's usage for the page");
            None
        }
    };
    let mut rows = super::cost::usage_rows(usage.as_ref());
    match store
        .related_occurrences(incident.id, RELATED_QUERIED)
        .await
    {
        Ok(related) => rows.extend(related_row(&related)),
        Err(e) => {
            tracing::debug!(incident_id = %incident.id, error = %e, "cannot read related faults for the page")
        }
    }
    rows
}

/// "N: CrashLoop Pod shop/web-…, …" naming the first few related faults.
pub fn related_row(related: &[FaultOccurrence]) -> Option<(&'static str, String)> {
    if related.is_empty() {
        return None;
    }
    let named: Vec<String> = related
        .iter()
        .take(RELATED_NAMED)
        .map(|o| match &o.namespace {
            Some(ns) => format!(
                "{} {} {ns}/{}",
                o.fault_type, o.resource_kind, o.resource_name
            ),
            None => format!("{} {} {}", o.fault_type, o.resource_kind, o.resource_name),
        })
        .collect();
    let more = related.len().saturating_sub(named.len());
    let mut text = format!("{}: {}", related.len(), named.join(", "));
    if more > 0 {
        text.push_str(&format!(", and {more} more"));
    }
    Some(("Related faults", text))
}
