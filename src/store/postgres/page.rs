//! The dashboard list's keyset scan ([`crate::store::page`]).

use sqlx::{PgPool, Postgres, QueryBuilder};

use super::rows::{self, INCIDENT_COLUMNS};
use crate::incident::Incident;
use crate::store::page::Scan;
use crate::store::{Result, StoreError};

pub(in crate::store) async fn incident_page(
    pool: &PgPool,
    scan: &Scan<'_>,
) -> Result<Vec<Incident>> {
    let q = scan.query;
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE TRUE"
    ));
    if let Some(status) = q.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(v) = &q.cluster {
        qb.push(" AND cluster = ").push_bind(v);
    }
    if let Some(v) = &q.severity {
        qb.push(" AND severity = ").push_bind(v);
    }
    if let Some(v) = &q.fault_type {
        qb.push(" AND fault_type = ").push_bind(v);
    }
    if let Some(t) = q.since {
        qb.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = q.until {
        qb.push(" AND created_at < ").push_bind(t);
    }
    if let Some(id) = scan.start {
        qb.push(if scan.descending {
            " AND id < "
        } else {
            " AND id > "
        })
        .push_bind(id);
    }
    qb.push(if scan.descending {
        " ORDER BY id DESC LIMIT "
    } else {
        " ORDER BY id ASC LIMIT "
    })
    .push_bind(scan.limit);
    let found = qb
        .build()
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading a page of incidents"))?;
    found.iter().map(rows::incident).collect()
}
