//! Validation and grouping of a `record_faults` batch, shared by both backends.
//!
//! Faults of one (cluster, faultId) in a batch must all land on the same incident, so the backends
//! work per group: one lookup, one insert or update, then the occurrence rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use super::{time, Result, StoreError};
use crate::fault::ReceivedFault;
use crate::incident::IncidentStatus;

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

/// An incident of a group's fault (or of a related fault) that the group may attach to.
#[derive(Debug)]
pub(crate) struct Existing<I> {
    pub id: I,
    pub status: IncidentStatus,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_seen: DateTime<Utc>,
}

/// Where a group's faults go: the decision of [`plan`], executed by each backend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Attach<I> {
    /// To an incident that exists (of the same fault, or of a related one).
    Existing { id: I, status: IncidentStatus },
    /// To a new incident this group opens.
    Open { id: I, status: IncidentStatus },
    /// To the incident that the group at this index opens in the same batch (a related fault).
    Follow(usize),
}

/// The incidents a batch's groups may attach to, as the backend found them.
pub(crate) struct Candidates<I> {
    /// By (cluster, faultId).
    pub by_fault: HashMap<(String, String), Vec<Existing<I>>>,
    /// By (cluster, related key), looked up only for groups in [`needs_related`].
    pub by_related: HashMap<(String, String), Vec<Existing<I>>>,
}

/// The (cluster, related key) of a group, when coalescing is on and the fault has one.
pub(crate) fn related_key(
    faults: &[ReceivedFault],
    g: &Group,
    window: Option<chrono::Duration>,
) -> Option<(String, String)> {
    window?;
    let f = &faults[g.first];
    f.fault.related_key().map(|k| (f.cluster.clone(), k))
}

/// The incident column a candidate lookup matches (with the cluster): the fault's own id, or
/// the related key. A closed set, so the column name can be written into the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyColumn {
    FaultId,
    RelatedKey,
}

impl KeyColumn {
    pub fn name(self) -> &'static str {
        match self {
            KeyColumn::FaultId => "fault_id",
            KeyColumn::RelatedKey => "related_key",
        }
    }
}

/// The (cluster, faultId) of every group, the keys of the first lookup.
pub(crate) fn fault_keys<'a>(
    faults: &'a [ReceivedFault],
    groups: &[Group],
) -> Vec<(&'a str, &'a str)> {
    groups
        .iter()
        .map(|g| {
            let f = &faults[g.first];
            (f.cluster.as_str(), f.fault.fault_id.as_str())
        })
        .collect()
}

/// Owned keys as the borrowed pairs a lookup takes.
pub(crate) fn borrowed(keys: &[(String, String)]) -> Vec<(&str, &str)> {
    keys.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Groups whose related incidents must be looked up: coalescing is on, the fault has a related
/// key, and no incident of its own faultId takes it.
pub(crate) fn needs_related<I>(
    faults: &[ReceivedFault],
    groups: &[Group],
    by_fault: &HashMap<(String, String), Vec<Existing<I>>>,
    cooldown: chrono::Duration,
    window: Option<chrono::Duration>,
) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = groups
        .iter()
        .filter(|g| {
            let f = &faults[g.first];
            let own = by_fault
                .get(&(f.cluster.clone(), f.fault.fault_id.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            pick(own, since(g, cooldown)).is_none()
        })
        .filter_map(|g| related_key(faults, g, window))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Decides, for every group, where its faults go. The rules both backends share:
/// 1. an open incident of the same (cluster, faultId), else one that finished within the
///    cooldown ([`pick`]);
/// 2. with coalescing on (`window`), an incident of a related fault (same workload or object,
///    [`crate::fault::Fault::related_key`]): an open one last seen within `window` before the
///    group, else one that finished within the cooldown;
/// 3. a related group earlier in this batch (by arrival) that opens an incident;
/// 4. else a new incident, `pending`, or `skipped` when triage is off for the cluster.
pub(crate) fn plan<I: Clone>(
    faults: &[ReceivedFault],
    groups: &[Group],
    found: &Candidates<I>,
    new_ids: &[I],
    cooldown: chrono::Duration,
    window: Option<chrono::Duration>,
) -> Vec<Attach<I>> {
    let mut plan: Vec<Option<Attach<I>>> = vec![None; groups.len()];
    let mut opened: HashMap<(String, String), usize> = HashMap::new();
    let mut by_arrival: Vec<usize> = (0..groups.len()).collect();
    by_arrival.sort_by_key(|&g| groups[g].first);
    for gi in by_arrival {
        let g = &groups[gi];
        let f = &faults[g.first];
        let since = since(g, cooldown);
        let own = found
            .by_fault
            .get(&(f.cluster.clone(), f.fault.fault_id.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let related = related_key(faults, g, window);
        let decided = if let Some(e) = pick(own, since) {
            Attach::Existing {
                id: e.id.clone(),
                status: e.status,
            }
        } else if let Some(e) = related.as_ref().and_then(|key| {
            let window = window.unwrap_or_default();
            let open_since = g
                .first_seen
                .checked_sub_signed(window)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let candidates = found
                .by_related
                .get(key)
                .map(Vec::as_slice)
                .unwrap_or_default();
            candidates
                .iter()
                .find(|e| e.status.is_open() && e.last_seen > open_since)
                .or_else(|| pick_finished(candidates, since))
        }) {
            Attach::Existing {
                id: e.id.clone(),
                status: e.status,
            }
        } else if let Some(&leader) = related.as_ref().and_then(|k| opened.get(k)) {
            Attach::Follow(leader)
        } else {
            if let Some(key) = related {
                opened.insert(key, gi);
            }
            let status = if f.triage_enabled {
                IncidentStatus::Pending
            } else {
                IncidentStatus::Skipped
            };
            Attach::Open {
                id: new_ids[gi].clone(),
                status,
            }
        };
        plan[gi] = Some(decided);
    }
    plan.into_iter().flatten().collect()
}

/// The incident a group's faults end on, once the plan is executed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target<I> {
    pub id: I,
    pub status: IncidentStatus,
    /// True when the group opened it.
    pub created: bool,
}

/// The target of every group, in group order: a follower gets its leader's incident (never
/// `created`).
pub(crate) fn targets<I: Clone>(plan: &[Attach<I>]) -> Result<Vec<Target<I>>> {
    let direct = |a: &Attach<I>| match a {
        Attach::Existing { id, status } => Some(Target {
            id: id.clone(),
            status: *status,
            created: false,
        }),
        Attach::Open { id, status } => Some(Target {
            id: id.clone(),
            status: *status,
            created: true,
        }),
        Attach::Follow(_) => None,
    };
    plan.iter()
        .enumerate()
        .map(|(gi, a)| {
            let t = match a {
                Attach::Follow(l) => plan.get(*l).and_then(direct).map(|t| Target {
                    created: false,
                    ..t
                }),
                other => direct(other),
            };
            // `plan` makes every leader open an incident; anything else is a bug in it.
            t.ok_or_else(|| {
                StoreError::decode("recording faults", format!("group {gi} follows no leader"))
            })
        })
        .collect()
}

/// Occurrences added to one existing incident by a batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Added<I> {
    pub id: I,
    pub n: i64,
    pub last_seen: DateTime<Utc>,
}

/// What the batch adds to each existing incident, one entry per incident: several groups (a
/// fault and its related ones) may attach to the same incident, and an `UPDATE ... FROM` applies
/// only one source row per target row.
pub(crate) fn added<I: Clone + Eq + std::hash::Hash>(
    groups: &[Group],
    plan: &[Attach<I>],
) -> Vec<Added<I>> {
    let mut out: Vec<Added<I>> = Vec::new();
    let mut at: HashMap<I, usize> = HashMap::new();
    for (g, a) in groups.iter().zip(plan) {
        let Attach::Existing { id, .. } = a else {
            continue;
        };
        match at.get(id) {
            Some(&i) => {
                out[i].n = out[i].n.saturating_add(g.count());
                out[i].last_seen = out[i].last_seen.max(g.last_seen);
            }
            None => {
                at.insert(id.clone(), out.len());
                out.push(Added {
                    id: id.clone(),
                    n: g.count(),
                    last_seen: g.last_seen,
                });
            }
        }
    }
    out
}

/// The occurrences, first and last sighting of the incident a group opens: its own and those of
/// the groups that follow it.
pub(crate) fn opened_totals<I>(
    groups: &[Group],
    plan: &[Attach<I>],
    gi: usize,
) -> (i64, DateTime<Utc>, DateTime<Utc>) {
    let g = &groups[gi];
    let (mut n, mut first, mut last) = (g.count(), g.first_seen, g.last_seen);
    for (other, a) in groups.iter().zip(plan) {
        if matches!(a, Attach::Follow(l) if *l == gi) {
            n = n.saturating_add(other.count());
            first = first.min(other.first_seen);
            last = last.max(other.last_seen);
        }
    }
    (n, first, last)
}

/// The incident a group attaches to: the open one, else the one that finished last, if that was
/// after `since` (the group's first sighting minus the cooldown).
pub(crate) fn pick<I>(existing: &[Existing<I>], since: DateTime<Utc>) -> Option<&Existing<I>> {
    existing
        .iter()
        .find(|e| e.status.is_open())
        .or_else(|| pick_finished(existing, since))
}

fn pick_finished<I>(existing: &[Existing<I>], since: DateTime<Utc>) -> Option<&Existing<I>> {
    existing
        .iter()
        .filter(|e| e.finished_at.is_some_and(|f| f > since))
        .max_by_key(|e| e.finished_at)
}

/// Oldest finish time that can still absorb a group's faults.
pub(crate) fn since(g: &Group, cooldown: chrono::Duration) -> DateTime<Utc> {
    g.first_seen
        .checked_sub_signed(cooldown)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One fresh id per group, generated in arrival order (v7 ids sort by creation), so incidents
/// opened by one batch are claimed in the order their faults arrived.
pub(crate) fn new_ids(groups: &[Group]) -> Vec<Uuid> {
    let mut by_arrival: Vec<usize> = (0..groups.len()).collect();
    by_arrival.sort_by_key(|&g| groups[g].first);
    let mut ids = vec![Uuid::nil(); groups.len()];
    for g in by_arrival {
        ids[g] = Uuid::now_v7();
    }
    ids
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
