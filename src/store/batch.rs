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
