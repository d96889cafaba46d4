//! The key facts beside an incident's rendered report that come from the store: the run's
//! accounting and the related faults one investigation covered. One owner, so the page the
//! reporter writes and the page the HTTP server renders on request say the same.

use crate::incident::{FaultOccurrence, Incident};
use crate::store::Store;

/// Related faults named on the page; the count says how many there are in all, up to
/// [`RELATED_QUERIED`] (each row read carries its context and raw notification, up to ~150 KB:
/// the bound keeps a page render within ~15 MB however large the storm).
const RELATED_NAMED: usize = 10;
const RELATED_QUERIED: u32 = 100;

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
    let count = if related.len() >= RELATED_QUERIED as usize {
        format!("{}+", related.len())
    } else {
        related.len().to_string()
    };
    let mut text = format!("{count}: {}", named.join(", "));
    if more > 0 {
        text.push_str(&format!(", and {more} more"));
    }
    Some(("Related faults", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn occ(i: usize) -> FaultOccurrence {
        FaultOccurrence {
            id: i as i64,
            incident_id: uuid::Uuid::nil(),
            cluster: "prod".into(),
            fault_id: format!("f{i}"),
            fault_type: "CrashLoop".into(),
            severity: "critical".into(),
            namespace: Some("shop".into()),
            resource_kind: "Pod".into(),
            resource_name: format!("web-{i}"),
            resource_uid: String::new(),
            context: String::new(),
            server_timestamp: String::new(),
            received_at: chrono::Utc::now(),
            raw: serde_json::Value::Null,
        }
    }

    #[test]
    fn names_the_first_related_faults_and_counts_the_rest() {
        assert_eq!(related_row(&[]), None);
        let some: Vec<_> = (0..12).map(occ).collect();
        let (_, text) = related_row(&some).unwrap();
        assert!(text.starts_with("12: CrashLoop Pod shop/web-0, "), "{text}");
        assert!(text.ends_with("shop/web-9, and 2 more"), "{text}");
        let capped: Vec<_> = (0..RELATED_QUERIED as usize).map(occ).collect();
        let (_, text) = related_row(&capped).unwrap();
        assert!(text.starts_with("100+: "), "{text}");
    }
}
