//! `record_faults` on SQLite: a handful of set-based statements per batch, whatever its size.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::{begin, rows};
use crate::fault::ReceivedFault;
use crate::incident::IncidentStatus;
use crate::store::batch::{self, Attach, Candidates, Existing, Group, KeyColumn, Target};
use crate::store::{time, Recorded, Result, StoreError};

/// Rows per multi-row statement: at most 16 parameters a row, well under SQLite's 32766.
const CHUNK: usize = 500;
const CTX: &str = "recording faults";

pub(in crate::store) async fn record_faults(
    pool: &sqlx::SqlitePool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
    related_window: Option<chrono::Duration>,
) -> Result<Vec<Recorded>> {
    let new_ids: Vec<String> = batch::new_ids(groups).iter().map(Uuid::to_string).collect();
    let mut tx = begin(pool, CTX).await?;
    let now = time::now();

    // 1. Every incident the groups could attach to, in one query per chunk.
    let oldest = groups
        .iter()
        .map(|g| batch::since(g, cooldown))
        .min()
        .unwrap_or(now);
    let existing = candidates(
        &mut tx,
        KeyColumn::FaultId,
        &batch::fault_keys(faults, groups),
        oldest,
    )
    .await?;

    // 1b. Incidents of related faults, for the groups no incident of their own takes.
    let keys = batch::needs_related(faults, groups, &existing, cooldown, related_window);
    let by_related = candidates(
        &mut tx,
        KeyColumn::RelatedKey,
        &batch::borrowed(&keys),
        oldest,
    )
    .await?;

    // 2. Decide per group: attach (and to what) or open.
    let candidates = Candidates {
        by_fault: existing,
        by_related,
    };
    let plan = batch::plan(
        faults,
        groups,
        &candidates,
        &new_ids,
        cooldown,
        related_window,
    );
    let incident_of: Vec<Target<String>> = batch::targets(&plan)?;
    let open: Vec<usize> = (0..groups.len())
        .filter(|&g| matches!(plan[g], Attach::Open { .. }))
        .collect();

    // 3. Count the attached occurrences.
    let added = batch::added(groups, &plan);
    for chunk in added.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH v(id, n, last) AS (");
        qb.push_values(chunk, |mut b, a| {
            b.push_bind(&a.id)
                .push_bind(a.n)
                .push_bind(time::to_micros(a.last_seen));
        });
        qb.push(
            ") UPDATE incidents SET occurrences = incidents.occurrences + v.n, \
             last_seen = max(incidents.last_seen, v.last) FROM v WHERE incidents.id = v.id",
        );
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }

    // 4. Open the new incidents.
    for chunk in open.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
             resource_kind, resource_name, resource_uid, context, status, occurrences, \
             first_seen, last_seen, created_at, finished_at, related_key) ",
        );
        qb.push_values(chunk, |mut b, &gi| {
            let g = &groups[gi];
            let f = &faults[g.first];
            let r = &f.fault.resource;
            let Target { id, status, .. } = &incident_of[gi];
            let (n, first_seen, last_seen) = batch::opened_totals(groups, &plan, gi);
            let finished = (*status == IncidentStatus::Skipped).then(|| time::to_micros(now));
            b.push_bind(id)
                .push_bind(&f.cluster)
                .push_bind(&f.fault.fault_id)
                .push_bind(&f.fault.fault_type)
                .push_bind(&f.fault.severity)
                .push_bind(&r.namespace)
                .push_bind(&r.kind)
                .push_bind(&r.name)
                .push_bind(&r.uid)
                .push_bind(&f.fault.context)
                .push_bind(status.as_str())
                .push_bind(n)
                .push_bind(time::to_micros(first_seen))
                .push_bind(time::to_micros(last_seen))
                .push_bind(time::to_micros(now))
                .push_bind(finished)
                .push_bind(f.fault.related_key());
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }

    // 5. Store every occurrence, as received.
    let mut member_incident: Vec<&str> = vec![""; faults.len()];
    for (g, t) in groups.iter().zip(&incident_of) {
        for &m in &g.members {
            member_incident[m] = &t.id;
        }
    }
    // Moved into the statement's arguments, not cloned: the raw notification is the largest field.
    let mut raws: Vec<String> = faults.iter().map(|f| f.raw.to_string()).collect();
    let indices: Vec<usize> = (0..faults.len()).collect();
    for chunk in indices.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
             namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
             received_at, raw) ",
        );
        qb.push_values(chunk, |mut b, &i| {
            let f = &faults[i];
            let r = &f.fault.resource;
            b.push_bind(member_incident[i])
                .push_bind(&f.cluster)
                .push_bind(&f.fault.fault_id)
                .push_bind(&f.fault.fault_type)
                .push_bind(&f.fault.severity)
                .push_bind(&r.namespace)
                .push_bind(&r.kind)
                .push_bind(&r.name)
                .push_bind(&r.uid)
                .push_bind(&f.fault.context)
                .push_bind(&f.fault.timestamp)
                .push_bind(time::to_micros(time::truncate(f.received_at)))
                .push_bind(std::mem::take(&mut raws[i]));
        });
        qb.build()
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;

    let mut results: Vec<Option<Recorded>> = vec![None; faults.len()];
    for (g, t) in groups.iter().zip(&incident_of) {
        let incident_id = Uuid::try_parse(&t.id)
            .map_err(|e| StoreError::decode(CTX, format!("incident id {:?}: {e}", t.id)))?;
        for &m in &g.members {
            results[m] = Some(Recorded {
                incident_id,
                created: t.created && m == g.first,
                status: t.status,
            });
        }
    }
    Ok(results.into_iter().flatten().collect())
}

type ByKey = HashMap<(String, String), Vec<Existing<String>>>;

/// The incidents matching any of `keys` on (cluster, `column`) that are open or finished after
/// `oldest`, in one query per chunk.
async fn candidates(
    tx: &mut sqlx::SqliteConnection,
    column: KeyColumn,
    keys: &[(&str, &str)],
    oldest: chrono::DateTime<chrono::Utc>,
) -> Result<ByKey> {
    let col = column.name();
    let mut out = ByKey::new();
    for chunk in keys.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("WITH k(cluster, {col}) AS ("));
        qb.push_values(chunk, |mut b, (cluster, key)| {
            b.push_bind(cluster).push_bind(key);
        });
        // Two index lookups per key (open; finished), not one OR: with an OR over hundreds of
        // keys SQLite builds a throwaway index over the whole table on every batch. CROSS JOIN
        // fixes the keys as the outer loop.
        let select = format!(
            "SELECT i.id, i.cluster, i.{col} AS k, i.status, i.finished_at, i.last_seen \
             FROM k CROSS JOIN incidents i ON i.cluster = k.cluster AND i.{col} = k.{col} "
        );
        qb.push(format!(
            ") {select} WHERE i.status IN ('pending', 'running') UNION ALL {select} \
             WHERE i.finished_at > "
        ))
        .push_bind(time::to_micros(oldest));
        let found = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
        for row in &found {
            out.entry((row.get("cluster"), row.get("k")))
                .or_default()
                .push(existing_row(row)?);
        }
    }
    Ok(out)
}

fn existing_row(row: &sqlx::sqlite::SqliteRow) -> Result<Existing<String>> {
    Ok(Existing {
        id: row.get("id"),
        status: rows::status(row.get("status"))?,
        finished_at: row
            .get::<Option<i64>, _>("finished_at")
            .map(time::from_micros)
            .transpose()?,
        last_seen: time::from_micros(row.get("last_seen"))?,
    })
}
