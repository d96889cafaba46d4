//! Validation and grouping of a `record_faults` batch, shared by both backends.
//!
//! Faults of one (cluster, faultId) in a batch must all land on the same incident, so the backends
//! work per group: one lookup, one insert or update, then the occurrence rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{time, Result, StoreError};
use crate::fault::ReceivedFault;

/// The faults of one (cluster, faultId) in a batch.
#[derive(Debug)]
pub(crate) struct Group {
    /// Index of the first fault of the group: it describes a new incident.
    pub first: usize,
    /// Every member, in input order.
    pub members: Vec<usize>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Group {
    pub fn count(&self) -> i64 {
        i64::try_from(self.members.len()).unwrap_or(i64::MAX)
    }
}

/// Validates every fault, then groups them by (cluster, faultId). Groups are sorted by that key
/// so that concurrent batches lock incident rows in the same order (no deadlocks on PostgreSQL).
pub(crate) fn group(faults: &[ReceivedFault]) -> Result<Vec<Group>> {
    for (index, f) in faults.iter().enumerate() {
        validate(f).map_err(|reason| StoreError::InvalidFault { index, reason })?;
    }
    let mut by_key: HashMap<(&str, &str), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let received = time::truncate(f.received_at);
        let slot = *by_key
            .entry((f.cluster.as_str(), f.fault.fault_id.as_str()))
            .or_insert_with(|| {
                groups.push(Group {
                    first: i,
                    members: Vec::new(),
                    first_seen: received,
                    last_seen: received,
                });
                groups.len() - 1
            });
        let g = &mut groups[slot];
        g.members.push(i);
        g.first_seen = g.first_seen.min(received);
        g.last_seen = g.last_seen.max(received);
    }
    groups.sort_by(|a, b| {
        let (fa, fb) = (&faults[a.first], &faults[b.first]);
        (&fa.cluster, &fa.fault.fault_id).cmp(&(&fb.cluster, &fb.fault.fault_id))
    });
    Ok(groups)
}

fn validate(f: &ReceivedFault) -> Result<(), String> {
    if f.cluster.trim().is_empty() {
        return Err("cluster is empty".into());
    }
    if f.fault.fault_id.trim().is_empty() {
        return Err("faultId is empty".into());
    }
    let r = &f.fault.resource;
    let fields = [
        ("cluster", f.cluster.as_str()),
        ("faultId", &f.fault.fault_id),
        ("faultType", &f.fault.fault_type),
        ("severity", &f.fault.severity),
        ("resource.kind", &r.kind),
        ("resource.name", &r.name),
        ("resource.namespace", r.namespace.as_deref().unwrap_or("")),
        ("resource.uid", &r.uid),
        ("context", &f.fault.context),
        ("timestamp", &f.fault.timestamp),
    ];
    // PostgreSQL text cannot hold NUL; reject it on both backends so they behave the same.
    match fields.iter().find(|(_, v)| v.contains('\0')) {
        Some((name, _)) => Err(format!("{name} contains a NUL character")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::fault::{Fault, ResourceRef};

    fn rf(cluster: &str, fault_id: &str, secs: i64) -> ReceivedFault {
        let fault = Fault {
            subscription_id: "s".into(),
            cluster: cluster.into(),
            fault_id: fault_id.into(),
            fault_type: "CrashLoop".into(),
            severity: "critical".into(),
            resource: ResourceRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: "p".into(),
                namespace: None,
                uid: "u".into(),
            },
            context: String::new(),
            timestamp: String::new(),
        };
        ReceivedFault {
            cluster: cluster.into(),
            fault,
            received_at: Utc.timestamp_opt(secs, 0).unwrap(),
            raw: serde_json::Value::Null,
            triage_enabled: true,
        }
    }

    #[test]
    fn groups_by_fault_sorted_by_key_with_members_in_input_order() {
        let faults = [
            rf("b", "2", 30),
            rf("a", "1", 20),
            rf("b", "2", 10),
            rf("a", "2", 40),
        ];
        let groups = group(&faults).unwrap();
        let keys: Vec<_> = groups
            .iter()
            .map(|g| (faults[g.first].cluster.as_str(), g.members.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![("a", vec![1]), ("a", vec![3]), ("b", vec![0, 2])]
        );
        let b = &groups[2];
        assert_eq!(b.count(), 2);
        assert_eq!(b.first_seen.timestamp(), 10, "earliest, not first in input");
        assert_eq!(b.last_seen.timestamp(), 30);
    }

    #[test]
    fn the_first_bad_fault_is_named_by_index_and_field() {
        let mut bad = rf("a", "1", 0);
        bad.fault.resource.name = "x\0".into();
        let err = group(&[rf("a", "1", 0), rf("a", "", 0), bad]).unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidFault { index: 1, reason } if reason == "faultId is empty"),
            "{err:?}"
        );
        let mut bad = rf("a", "1", 0);
        bad.fault.resource.name = "x\0".into();
        let err = group(&[bad]).unwrap_err();
        assert!(err.to_string().contains("resource.name"), "{err}");
    }
}
