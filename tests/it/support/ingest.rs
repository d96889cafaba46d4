//! Helpers for the ingest and HTTP tests: numbered faults, reading back what the store holds in
//! order, waiting on conditions, and a Prometheus text-format checker.
#![allow(dead_code)]

pub use super::prom;

use std::collections::BTreeMap;
use std::time::Duration;

use nightcrier::fault::ReceivedFault;
use nightcrier::store::{ListFilter, Store};

use crate::support::common;

/// A fault of `cluster`/`fault_id` whose context carries `seq`, so the order in which
/// occurrences were stored can be read back.
pub fn seq_fault(cluster: &str, fault_id: &str, seq: usize) -> ReceivedFault {
    let mut f = common::fault(cluster, fault_id);
    f.fault.context = format!("seq={seq}");
    f.raw = serde_json::to_value(&f.fault).unwrap();
    f
}

/// `n` faults over `clusters` × `ids_per_cluster` fault ids, interleaved, numbered 0..n.
pub fn interleaved(n: usize, clusters: &[&str], ids_per_cluster: usize) -> Vec<ReceivedFault> {
    (0..n)
        .map(|seq| {
            let cluster = clusters[seq % clusters.len()];
            let id = format!("f{}", (seq / clusters.len()) % ids_per_cluster);
            seq_fault(cluster, &id, seq)
        })
        .collect()
}

pub type Sequences = BTreeMap<(String, String), Vec<usize>>;

/// The sequence numbers of each (cluster, faultId), in offer order.
pub fn expected(offered: &[ReceivedFault]) -> Sequences {
    let mut out = Sequences::new();
    for f in offered {
        out.entry((f.cluster.clone(), f.fault.fault_id.clone()))
            .or_default()
            .push(seq_of(&f.fault.context));
    }
    out
}

/// The sequence numbers of each (cluster, faultId) as stored: occurrences of every incident,
/// oldest first.
pub async fn stored(store: &Store) -> Sequences {
    let incidents = store
        .list(&ListFilter {
            limit: Some(10_000),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    let mut out = Sequences::new();
    for inc in incidents {
        let occ = store.occurrences(inc.id, 100_000).await.unwrap();
        out.entry((inc.cluster.clone(), inc.fault_id.clone()))
            .or_default()
            .extend(occ.iter().map(|o| seq_of(&o.context)));
    }
    out
}

pub fn count(s: &Sequences) -> usize {
    s.values().map(Vec::len).sum()
}

fn seq_of(context: &str) -> usize {
    context
        .strip_prefix("seq=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered fault: {context:?}"))
}

/// [`super::eventually`] for a condition without a value.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
    super::eventually(what, within, async || cond().await.then_some(())).await
}
