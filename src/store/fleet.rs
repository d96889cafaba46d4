//! The fleet's tables: the process registry (`fleet_instances`) and one lease per configured
//! cluster (`cluster_leases`), on PostgreSQL only.
//!
//! This module owns the SQL of registration, the heartbeat (one statement renews every lease of a
//! process and reads what balancing needs), taking and releasing leases, drain requests and the
//! fencing check of fault writes. It must not decide who should own what (that is
//! `crate::fleet`). Lease times are the database's clock (`now()`), so ownership does not depend
//! on the processes' clocks agreeing. On SQLite a single process owns everything and none of this
//! is called: the calls fail with [`StoreError::InvalidInput`].

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{Backend, Result, Store, StoreError};

/// Bytes kept of the text fields a process registers (host, address, version).
const MAX_FIELD_BYTES: usize = 256;

/// What a process registers about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The boot's owner string (also the worker pool's lease owner).
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// Where its HTTP endpoint listens, when it has one.
    pub http_addr: Option<String>,
    pub version: String,
    /// Fingerprint of the cluster list and agent configuration.
    pub config_hash: String,
}

/// Another live process, as one heartbeat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub config_hash: String,
    /// Joined at least one lease TTL ago (see `crate::fleet` on joining).
    pub settled: bool,
}

/// What one heartbeat renewed and saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Beat {
    /// The leases still held (renewed), with their epochs.
    pub leases: Vec<(String, i64)>,
    /// Live processes other than this one that are not draining.
    pub peers: Vec<Peer>,
    /// Leases of this process's clusters that are free or expired.
    pub free: i64,
    /// True when a drain was requested for this process (`nightcrier drain`).
    pub drain_requested: bool,
}

/// A lease taken by [`Store::fleet_acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub cluster: String,
    pub epoch: i64,
    /// Who held it before (released or expired), if anyone ever did.
    pub previous: Option<String>,
    /// True when it was released (handed over), false when its owner's lease expired.
    pub handed_over: bool,
}

/// The leases a process believes it holds; fault writes of other clusters, or under an older
/// epoch, fail (see [`Store::record_faults_fenced`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseFence {
    pub owner: String,
    pub epochs: HashMap<String, i64>,
}

/// One process of the registry, for `nightcrier status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub http_addr: Option<String>,
    pub version: String,
    pub config_hash: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub draining: bool,
    pub stopped_at: Option<DateTime<Utc>>,
    /// Heart-beating within the TTL and not stopped.
    pub alive: bool,
    pub clusters_owned: i64,
    pub agents_running: i64,
}

/// One cluster's lease, for `nightcrier status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub cluster: String,
    pub owner: Option<String>,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
    /// Owned and not expired.
    pub held: bool,
}

/// `d` in seconds, bound as `float8` and multiplied by `interval '1 second'` in SQL.
fn secs(d: Duration, what: &str) -> Result<f64> {
    if d.is_zero() {
        return Err(StoreError::InvalidInput(format!("{what} must be positive")));
    }
    Ok(d.as_secs_f64())
}

/// At most `MAX_FIELD_BYTES` of `s`, cut at a character boundary.
fn bounded(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Store {
    fn fleet_pool(&self) -> Result<&PgPool> {
        match &self.inner.backend {
            Backend::Postgres(pg) => Ok(&pg.pool),
            Backend::Sqlite(_) => Err(StoreError::InvalidInput(
                "a fleet of processes needs PostgreSQL; on SQLite one process owns every cluster"
                    .into(),
            )),
        }
    }

    /// Registers (or re-registers) this process and makes sure every cluster it is configured
    /// for has a lease row (free at first).
    pub async fn fleet_register(&self, me: &InstanceRecord, clusters: &[String]) -> Result<()> {
        if me.id.is_empty() {
            return Err(StoreError::InvalidInput(
                "fleet instance id is empty".into(),
            ));
        }
        let pool = self.fleet_pool()?;
        let mut tx = pool.begin().await.map_err(StoreError::db(CTX_REGISTER))?;
        sqlx::query(
            "INSERT INTO fleet_instances (id, host, pid, http_addr, version, config_hash, \
             started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, now(), now()) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL, \
             host = EXCLUDED.host, http_addr = EXCLUDED.http_addr, version = EXCLUDED.version, \
             config_hash = EXCLUDED.config_hash",
        )
        .bind(&me.id)
        .bind(bounded(&me.host))
        .bind(me.pid)
        .bind(me.http_addr.as_deref().map(bounded))
        .bind(bounded(&me.version))
        .bind(&me.config_hash)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX_REGISTER))?;
        // Sorted, so two processes seeding the same rows cannot deadlock.
        let mut sorted = clusters.to_vec();
        sorted.sort();
        sqlx::query(
            "INSERT INTO cluster_leases (cluster, owner, epoch, expires_at) \
             SELECT c, NULL, 0, now() FROM unnest($1::text[]) AS c ORDER BY c \
             ON CONFLICT (cluster) DO NOTHING",
        )
        .bind(&sorted)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(CTX_REGISTER))?;
        tx.commit().await.map_err(StoreError::db(CTX_REGISTER))?;
        Ok(())
    }

    /// The heartbeat: one statement (one round trip) that marks this process alive, renews every
    /// lease it still owns by `ttl`, and reads the live peers and the number of free or expired
    /// leases among `clusters`. A lease that expired and was taken by another process has another
    /// owner and a new epoch: it is lost. One that expired but was not taken (the database was
    /// unreachable for everyone) is still ours: nobody else subscribed meanwhile.
    pub async fn fleet_beat(&self, id: &str, clusters: &[String], ttl: Duration) -> Result<Beat> {
        let ttl = secs(ttl, "lease TTL")?;
        let pool = self.fleet_pool()?;
        let rows = sqlx::query(
            "WITH me AS ( \
               UPDATE fleet_instances SET heartbeat_at = now() WHERE id = $1 RETURNING draining \
             ), renewed AS ( \
               UPDATE cluster_leases SET expires_at = now() + $2 * interval '1 second' \
               WHERE owner = $1 RETURNING cluster, epoch \
             ) \
             SELECT 'lease' AS kind, cluster AS a, NULL::text AS b, epoch AS n FROM renewed \
             UNION ALL \
             SELECT 'peer', id, config_hash, \
               CASE WHEN started_at <= now() - $2 * interval '1 second' THEN 1 ELSE 0 END \
               FROM fleet_instances \
               WHERE id <> $1 AND NOT draining AND stopped_at IS NULL \
               AND heartbeat_at > now() - $2 * interval '1 second' \
             UNION ALL \
             SELECT 'free', NULL, NULL, count(*) FROM cluster_leases \
               WHERE cluster = ANY($3) AND (owner IS NULL OR expires_at <= now()) \
             UNION ALL \
             SELECT 'me', NULL, NULL, CASE WHEN draining THEN 1 ELSE 0 END FROM me",
        )
        .bind(id)
        .bind(ttl)
        .bind(clusters)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("renewing the fleet heartbeat"))?;
        let mut beat = Beat::default();
        let mut registered = false;
        for row in &rows {
            let kind: String = row.get("kind");
            match kind.as_str() {
                "lease" => beat.leases.push((row.get("a"), row.get("n"))),
                "peer" => beat.peers.push(Peer {
                    id: row.get("a"),
                    config_hash: row.get("b"),
                    settled: row.get::<i64, _>("n") == 1,
                }),
                "free" => beat.free = row.get("n"),
                _ => {
                    registered = true;
                    beat.drain_requested = row.get::<i64, _>("n") == 1;
                }
            }
        }
        if !registered {
            return Err(StoreError::NotFound(format!("fleet instance {id}")));
        }
        Ok(beat)
    }

    /// Takes up to `max` free or expired leases among `clusters` (in name order, skipping rows
    /// another process is taking at this moment), bumping each one's epoch.
    pub async fn fleet_acquire(
        &self,
        id: &str,
        clusters: &[String],
        max: u32,
        ttl: Duration,
    ) -> Result<Vec<Acquired>> {
        let ttl = secs(ttl, "lease TTL")?;
        let pool = self.fleet_pool()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "UPDATE cluster_leases l SET owner = $1, epoch = l.epoch + 1, \
             expires_at = now() + $2 * interval '1 second' \
             FROM (SELECT cluster, COALESCE(owner, previous_owner) AS previous, \
                   owner IS NULL AS released FROM cluster_leases \
                   WHERE cluster = ANY($3) AND (owner IS NULL OR expires_at <= now()) \
                   ORDER BY cluster LIMIT $4 FOR UPDATE SKIP LOCKED) f \
             WHERE l.cluster = f.cluster RETURNING l.cluster, l.epoch, f.previous, f.released",
        )
        .bind(id)
        .bind(ttl)
        .bind(clusters)
        .bind(i64::from(max))
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("taking cluster leases"))?;
        Ok(rows
            .iter()
            .map(|r| Acquired {
                cluster: r.get("cluster"),
                epoch: r.get("epoch"),
                previous: r.get("previous"),
                handed_over: r.get("released"),
            })
            .collect())
    }

    /// Gives leases back at once (free for the next heartbeat of any process): those of
    /// `clusters`, or all of this process's when `None`. Returns how many were released.
    pub async fn fleet_release(&self, id: &str, clusters: Option<&[String]>) -> Result<u64> {
        let pool = self.fleet_pool()?;
        let done = match clusters {
            Some(names) => sqlx::query(
                "UPDATE cluster_leases SET previous_owner = owner, owner = NULL, expires_at = now() \
                 WHERE owner = $1 AND cluster = ANY($2)",
            )
            .bind(id)
            .bind(names),
            None => sqlx::query(
                "UPDATE cluster_leases SET previous_owner = owner, owner = NULL, expires_at = now() WHERE owner = $1",
            )
            .bind(id),
        }
        .execute(pool)
        .await
        .map_err(StoreError::db("releasing cluster leases"))?;
        Ok(done.rows_affected())
    }

    /// A clean exit: every lease released and the process marked stopped (its row stays for
    /// `status`), in one transaction.
    pub async fn fleet_stop(&self, id: &str) -> Result<u64> {
        let pool = self.fleet_pool()?;
        let released: i64 = sqlx::query_scalar(
            "WITH r AS (UPDATE cluster_leases SET previous_owner = owner, owner = NULL, expires_at = now() \
               WHERE owner = $1 RETURNING 1), \
             s AS (UPDATE fleet_instances SET stopped_at = now() WHERE id = $1) \
             SELECT count(*) FROM r",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(StoreError::db("leaving the fleet"))?;
        Ok(u64::try_from(released).unwrap_or(0))
    }

    /// Asks the live processes whose id starts with `prefix` (an instance name followed by `/`
    /// names all its boots) to drain. Returns the ids asked.
    pub async fn fleet_request_drain(&self, prefix: &str) -> Result<Vec<String>> {
        if prefix.trim().is_empty() {
            return Err(StoreError::InvalidInput(
                "name the instance to drain (its name or id prefix)".into(),
            ));
        }
        let pool = self.fleet_pool()?;
        let pattern = format!("{}%", like_escape(prefix));
        sqlx::query_scalar(
            "UPDATE fleet_instances SET draining = true \
             WHERE id LIKE $1 ESCAPE '\\' AND stopped_at IS NULL RETURNING id",
        )
        .bind(&pattern)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("requesting a drain"))
    }

    /// Every registered process (newest first) and every cluster's lease (by name); `ttl`
    /// decides who is alive.
    pub async fn fleet_status(&self, ttl: Duration) -> Result<(Vec<InstanceRow>, Vec<LeaseRow>)> {
        let ttl = secs(ttl, "lease TTL")?;
        let pool = self.fleet_pool()?;
        let rows = sqlx::query(
            "SELECT i.id, i.host, i.pid, i.http_addr, i.version, i.config_hash, i.started_at, \
             i.heartbeat_at, i.draining, i.stopped_at, \
             (i.stopped_at IS NULL AND i.heartbeat_at > now() - $1 * interval '1 second') \
               AS alive, \
             (SELECT count(*) FROM cluster_leases l WHERE l.owner = i.id AND l.expires_at > now()) \
               AS owned, \
             (SELECT count(*) FROM incidents n WHERE n.status = 'running' \
               AND n.lease_owner = i.id) AS agents \
             FROM fleet_instances i ORDER BY i.started_at DESC, i.id LIMIT 1000",
        )
        .bind(ttl)
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading the fleet"))?;
        let instances = rows
            .iter()
            .map(|r| InstanceRow {
                id: r.get("id"),
                host: r.get("host"),
                pid: r.get("pid"),
                http_addr: r.get("http_addr"),
                version: r.get("version"),
                config_hash: r.get("config_hash"),
                started_at: r.get("started_at"),
                heartbeat_at: r.get("heartbeat_at"),
                draining: r.get("draining"),
                stopped_at: r.get("stopped_at"),
                alive: r.get("alive"),
                clusters_owned: r.get("owned"),
                agents_running: r.get("agents"),
            })
            .collect();
        let rows = sqlx::query(
            "SELECT cluster, owner, epoch, expires_at, \
             (owner IS NOT NULL AND expires_at > now()) AS held \
             FROM cluster_leases ORDER BY cluster COLLATE \"C\"",
        )
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("reading cluster leases"))?;
        let leases = rows
            .iter()
            .map(|r| LeaseRow {
                cluster: r.get("cluster"),
                owner: r.get("owner"),
                epoch: r.get("epoch"),
                expires_at: r.get("expires_at"),
                held: r.get("held"),
            })
            .collect();
        Ok((instances, leases))
    }

    /// Installs (or removes) the fence [`Store::record_faults_fenced`] checks.
    pub fn set_fence(&self, fence: Option<LeaseFence>) {
        let mut slot = self
            .inner
            .fence
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = fence.map(std::sync::Arc::new);
    }

    pub(super) fn fence(&self) -> Option<std::sync::Arc<LeaseFence>> {
        self.inner
            .fence
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

const CTX_REGISTER: &str = "registering in the fleet";

/// `prefix` with LIKE's wildcards escaped.
fn like_escape(prefix: &str) -> String {
    prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Inside a fault-recording transaction: locks (FOR SHARE) the leases of the batch's clusters
/// that `fence` says this process holds, so no other process can take them before the commit, and
/// names the first fault whose cluster's lease is not held under the fenced epoch.
pub(super) async fn check_fence(
    tx: &mut sqlx::PgConnection,
    fence: &LeaseFence,
    faults: &[crate::fault::ReceivedFault],
) -> Result<()> {
    let mut clusters: Vec<&str> = faults.iter().map(|f| f.cluster.as_str()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT cluster, epoch FROM cluster_leases WHERE cluster = ANY($1) AND owner = $2 \
         ORDER BY cluster FOR SHARE",
    )
    .bind(&clusters)
    .bind(&fence.owner)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::db("checking cluster leases"))?;
    let held: HashMap<String, i64> = held.into_iter().collect();
    for (index, f) in faults.iter().enumerate() {
        let fenced = fence.epochs.get(&f.cluster);
        if fenced.is_none() || held.get(&f.cluster) != fenced {
            return Err(StoreError::InvalidFault {
                index,
                reason: format!(
                    "cluster {:?} is no longer leased to this process (fenced): the fault is \
                     dropped, the cluster's new owner records what its server reports",
                    f.cluster
                ),
            });
        }
    }
    Ok(())
}
