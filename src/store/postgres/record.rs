//! `record_faults` on PostgreSQL: array parameters (`unnest`), so a batch of any size is a fixed
//! handful of statements.
//!
//! Several processes may record the same new fault at once: the insert goes through the partial
//! unique index on open incidents (`ON CONFLICT ... DO UPDATE`), so the later one attaches to the
//! earlier one's incident instead of opening a second. Attached rows are locked in id order first,
//! which keeps concurrent batches from deadlocking in the common case; a deadlock that remains
//! (an insert waiting on another batch's new row) is retried by `with_retry`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{notify_pending, rows, with_retry};
use crate::fault::ReceivedFault;
use crate::incident::IncidentStatus;
use crate::store::batch::{self, Attach, Candidates, Existing, Group, KeyColumn, Target};
use crate::store::{time, LeaseFence, Recorded, Result, StoreError};

const CTX: &str = "recording faults";

pub(in crate::store) async fn record_faults(
    pool: &PgPool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
    related_window: Option<chrono::Duration>,
    synchronous_commit: bool,
) -> Result<Vec<Recorded>> {
    with_retry(|| {
        record_once(
            pool,
            faults,
            groups,
            cooldown,
            related_window,
            synchronous_commit,
            None,
        )
    })
    .await
}

/// [`record_faults`] that first checks and holds the leases `fence` names (see
/// `Store::record_faults_fenced`).
pub(in crate::store) async fn record_faults_fenced(
    pool: &PgPool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
    related_window: Option<chrono::Duration>,
    synchronous_commit: bool,
    fence: &LeaseFence,
) -> Result<Vec<Recorded>> {
    with_retry(|| {
        record_once(
            pool,
            faults,
            groups,
            cooldown,
            related_window,
            synchronous_commit,
            Some(fence),
        )
    })
    .await
}

async fn record_once(
    pool: &PgPool,
    faults: &[ReceivedFault],
    groups: &[Group],
    cooldown: chrono::Duration,
    related_window: Option<chrono::Duration>,
    synchronous_commit: bool,
    fence: Option<&LeaseFence>,
) -> Result<Vec<Recorded>> {
    let new_ids = batch::new_ids(groups);
    let mut tx = pool.begin().await.map_err(StoreError::db(CTX))?;
    if !synchronous_commit {
        // The operator's durability choice (`database.ingest_synchronous_commit: off`): the
        // commit returns before its WAL flush, for this transaction only.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
    }
    if let Some(fence) = fence {
        crate::store::fleet::check_fence(&mut tx, fence, faults).await?;
    }
    let now = time::now();

    // 1. Every incident the groups could attach to.
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
    let mut plan = batch::plan(
        faults,
        groups,
        &candidates,
        &new_ids,
        cooldown,
        related_window,
    );

    // 3. Count the attached occurrences.
    let added = batch::added(groups, &plan);
    if !added.is_empty() {
        let ids: Vec<Uuid> = added.iter().map(|a| a.id).collect();
        let counts: Vec<i64> = added.iter().map(|a| a.n).collect();
        let lasts: Vec<DateTime<Utc>> = added.iter().map(|a| a.last_seen).collect();
        sqlx::query("SELECT 1 FROM incidents WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db(CTX))?;
        sqlx::query(
            "UPDATE incidents i SET occurrences = i.occurrences + v.n, \
             last_seen = GREATEST(i.last_seen, v.last) \
             FROM unnest($1::uuid[], $2::int8[], $3::timestamptz[]) AS v(id, n, last) \
             WHERE i.id = v.id",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&lasts)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
    }

    // 4. Open the new incidents, or attach to one another process opened meanwhile.
    let open: Vec<usize> = (0..groups.len())
        .filter(|&g| matches!(plan[g], Attach::Open { .. }))
        .collect();
    if !open.is_empty() {
        let col = |f: &dyn Fn(&ReceivedFault) -> &str| -> Vec<&str> {
            open.iter().map(|&g| f(&faults[groups[g].first])).collect()
        };
        let namespaces: Vec<Option<&str>> = open
            .iter()
            .map(|&g| faults[groups[g].first].fault.resource.namespace.as_deref())
            .collect();
        let opening: Vec<(Uuid, IncidentStatus)> = open
            .iter()
            .filter_map(|&g| match plan[g] {
                Attach::Open { id, status } => Some((id, status)),
                _ => None,
            })
            .collect();
        let statuses: Vec<&str> = opening.iter().map(|(_, s)| s.as_str()).collect();
        let ids: Vec<Uuid> = opening.iter().map(|(id, _)| *id).collect();
        let totals: Vec<_> = open
            .iter()
            .map(|&g| batch::opened_totals(groups, &plan, g))
            .collect();
        let related_keys: Vec<Option<String>> = open
            .iter()
            .map(|&g| faults[groups[g].first].fault.related_key())
            .collect();
        let rows = sqlx::query(
            "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, \
             resource_kind, resource_name, resource_uid, context, status, occurrences, \
             first_seen, last_seen, created_at, finished_at, related_key) \
             SELECT u.id, u.cluster, u.fault_id, u.fault_type, u.severity, u.namespace, u.kind, \
               u.name, u.uid, u.context, u.status, u.n, u.first_seen, u.last_seen, $15, \
               CASE WHEN u.status = 'skipped' THEN $15 END, u.related_key \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int8[], \
               $13::timestamptz[], $14::timestamptz[], $16::text[]) \
               AS u(id, cluster, fault_id, fault_type, severity, namespace, kind, name, uid, \
                    context, status, n, first_seen, last_seen, related_key) \
             ON CONFLICT (cluster, fault_id) WHERE status IN ('pending', 'running') \
             DO UPDATE SET occurrences = incidents.occurrences + EXCLUDED.occurrences, \
               last_seen = GREATEST(incidents.last_seen, EXCLUDED.last_seen) \
             RETURNING id, cluster, fault_id, status",
        )
        .bind(&ids)
        .bind(col(&|f| &f.cluster))
        .bind(col(&|f| &f.fault.fault_id))
        .bind(col(&|f| &f.fault.fault_type))
        .bind(col(&|f| &f.fault.severity))
        .bind(&namespaces)
        .bind(col(&|f| &f.fault.resource.kind))
        .bind(col(&|f| &f.fault.resource.name))
        .bind(col(&|f| &f.fault.resource.uid))
        .bind(col(&|f| &f.fault.context))
        .bind(&statuses)
        .bind(totals.iter().map(|t| t.0).collect::<Vec<i64>>())
        .bind(totals.iter().map(|t| t.1).collect::<Vec<_>>())
        .bind(totals.iter().map(|t| t.2).collect::<Vec<_>>())
        .bind(now)
        .bind(&related_keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db(CTX))?;
        let mut returned: HashMap<(String, String), (Uuid, IncidentStatus)> = HashMap::new();
        for row in &rows {
            returned.insert(
                (row.get("cluster"), row.get("fault_id")),
                (row.get("id"), rows::status(row.get("status"))?),
            );
        }
        for (&g, &opened_id) in open.iter().zip(&ids) {
            let f = &faults[groups[g].first];
            let key = (f.cluster.clone(), f.fault.fault_id.clone());
            let Some(&(id, status)) = returned.get(&key) else {
                return Err(StoreError::decode(
                    CTX,
                    format!("no incident returned for {key:?}"),
                ));
            };
            // Another process opened this fault's incident meanwhile: attach to it.
            if id != opened_id {
                plan[g] = Attach::Existing { id, status };
            }
        }
    }
    let incident_of: Vec<Target<Uuid>> = batch::targets(&plan)?;

    // 5. Store every occurrence, as received.
    let mut member_incident: Vec<Uuid> = vec![Uuid::nil(); faults.len()];
    for (g, t) in groups.iter().zip(&incident_of) {
        for &m in &g.members {
            member_incident[m] = t.id;
        }
    }
    let all = |f: &dyn Fn(&ReceivedFault) -> &str| -> Vec<&str> { faults.iter().map(f).collect() };
    sqlx::query(
        "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, severity, \
         namespace, resource_kind, resource_name, resource_uid, context, server_timestamp, \
         received_at, raw) \
         SELECT u.incident_id, u.cluster, u.fault_id, u.fault_type, u.severity, u.namespace, \
           u.kind, u.name, u.uid, u.context, u.ts, u.received_at, u.raw::json \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], \
           $13::text[]) WITH ORDINALITY \
           AS u(incident_id, cluster, fault_id, fault_type, severity, namespace, kind, name, uid, \
                context, ts, received_at, raw, ord) \
         ORDER BY u.ord",
    )
    .bind(&member_incident)
    .bind(all(&|f| &f.cluster))
    .bind(all(&|f| &f.fault.fault_id))
    .bind(all(&|f| &f.fault.fault_type))
    .bind(all(&|f| &f.fault.severity))
    .bind(
        faults
            .iter()
            .map(|f| f.fault.resource.namespace.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(all(&|f| &f.fault.resource.kind))
    .bind(all(&|f| &f.fault.resource.name))
    .bind(all(&|f| &f.fault.resource.uid))
    .bind(all(&|f| &f.fault.context))
    .bind(all(&|f| &f.fault.timestamp))
    .bind(
        faults
            .iter()
            .map(|f| time::truncate(f.received_at))
            .collect::<Vec<_>>(),
    )
    .bind(faults.iter().map(|f| f.raw.to_string()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;

    let any_pending = incident_of
        .iter()
        .any(|t| t.created && t.status == IncidentStatus::Pending);
    if any_pending {
        notify_pending(&mut tx, CTX).await?;
    }
    tx.commit().await.map_err(StoreError::db(CTX))?;

    let mut results: Vec<Option<Recorded>> = vec![None; faults.len()];
    for (g, t) in groups.iter().zip(&incident_of) {
        for &m in &g.members {
            results[m] = Some(Recorded {
                incident_id: t.id,
                created: t.created && m == g.first,
                status: t.status,
            });
        }
    }
    Ok(results.into_iter().flatten().collect())
}

type ByKey = HashMap<(String, String), Vec<Existing<Uuid>>>;

/// The incidents matching any of `keys` on (cluster, `column`) that are open or finished after
/// `oldest`, in one query.
async fn candidates(
    tx: &mut sqlx::PgConnection,
    column: KeyColumn,
    keys: &[(&str, &str)],
    oldest: DateTime<Utc>,
) -> Result<ByKey> {
    let mut out = ByKey::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let col = column.name();
    let (clusters, values): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let select = format!(
        "SELECT i.id, i.cluster, i.{col} AS k, i.status, i.finished_at, i.last_seen \
         FROM k JOIN incidents i ON i.cluster = k.cluster AND i.{col} = k.{col} "
    );
    let found = sqlx::query(&format!(
        "WITH k AS (SELECT * FROM unnest($1::text[], $2::text[]) AS k(cluster, {col})) \
         {select} WHERE i.status IN ('pending', 'running') UNION ALL {select} \
         WHERE i.finished_at > $3"
    ))
    .bind(&clusters)
    .bind(&values)
    .bind(oldest)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::db(CTX))?;
    for row in &found {
        out.entry((row.get("cluster"), row.get("k")))
            .or_default()
            .push(existing_row(row)?);
    }
    Ok(out)
}

fn existing_row(row: &sqlx::postgres::PgRow) -> Result<Existing<Uuid>> {
    Ok(Existing {
        id: row.get("id"),
        status: rows::status(row.get("status"))?,
        finished_at: row.get("finished_at"),
        last_seen: row.get("last_seen"),
    })
}
