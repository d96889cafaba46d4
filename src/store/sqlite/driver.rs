//! SQLite's [`Driver`]: the statement runner binds [`Arg`]s as SQLite stores them, and each
//! operation forwards to the function of this backend's module that implements it (see those
//! for how SQLite keeps the guarantees the trait states).

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::{Row, Sqlite};
use uuid::Uuid;

use super::*;
use crate::fault::ReceivedFault;
use crate::incident::{AgentRun, IncidentStatus, RunOutcome};
use crate::store::batch::Group;
use crate::store::budgets::{BudgetPolicy, ExpiryScope};
use crate::store::driver::Driver;
use crate::store::page::Scan;
use crate::store::portable::Arg;
use crate::store::{
    ClaimLimits, Claimed, CostGroup, CostKey, Recorded, RescueCounts, Resolved, SlackProgress,
    SlackThread,
};

/// A statement of [`crate::store::sql`] with its arguments bound as SQLite stores them: ids as
/// text, times as unix microseconds (see `rows` for the way back).
fn query<'q>(sql: &'static str, args: &[Arg<'q>]) -> Query<'q> {
    args.iter().fold(sqlx::query(sql), |q, arg| match *arg {
        Arg::Id(id) => q.bind(id.to_string()),
        Arg::Time(t) => q.bind(time::to_micros(t)),
        Arg::OptTime(t) => q.bind(t.map(time::to_micros)),
        Arg::Int(v) => q.bind(v),
        Arg::BigInt(v) => q.bind(v),
        Arg::OptBigInt(v) => q.bind(v),
        Arg::OptReal(v) => q.bind(v),
        Arg::OptBool(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::OptText(v) => q.bind(v),
    })
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, <Sqlite as sqlx::Database>::Arguments<'q>>;

impl Driver for SqliteStore {
    async fn execute(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<u64> {
        let done = query(sql, args)
            .execute(&self.pool)
            .await
            .map_err(StoreError::db(context))?;
        Ok(done.rows_affected())
    }

    async fn fetch_incidents(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Vec<Incident>> {
        let found = query(sql, args)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db(context))?;
        found.iter().map(rows::incident).collect()
    }

    async fn fetch_runs(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Vec<AgentRun>> {
        let found = query(sql, args)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db(context))?;
        found.iter().map(rows::agent_run).collect()
    }

    async fn fetch_i32(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
        context: &'static str,
    ) -> Result<Option<i32>> {
        let found = query(sql, args)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(context))?;
        found
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(StoreError::db(context))
    }

    async fn migrate(&self) -> Result<()> {
        migrate(&self.pool).await
    }

    async fn ping(&self) -> Result<()> {
        ping(&self.pool).await
    }

    async fn check_writable(&self) -> Result<()> {
        check_writable(&self.pool).await
    }

    async fn record_faults(
        &self,
        faults: &[ReceivedFault],
        groups: &[Group],
        cooldown: Duration,
        related_window: Option<Duration>,
        _synchronous_commit: bool,
    ) -> Result<Vec<Recorded>> {
        record_faults(&self.pool, faults, groups, cooldown, related_window).await
    }

    async fn claim(
        &self,
        owner: &str,
        limits: ClaimLimits,
        lease: Duration,
    ) -> Result<Option<Claimed>> {
        claim(&self.pool, owner, limits, lease).await
    }

    async fn claim_budgeted(
        &self,
        owner: &str,
        limits: ClaimLimits,
        lease: Duration,
        policy: &BudgetPolicy,
        now: DateTime<Utc>,
    ) -> Result<Option<Claimed>> {
        claim_budgeted(&self.pool, owner, limits, lease, policy, now).await
    }

    async fn expire_pending(&self, scope: &ExpiryScope<'_>) -> Result<u64> {
        expire_pending(&self.pool, scope).await
    }

    async fn complete(&self, id: Uuid, attempt: i32, outcome: &RunOutcome) -> Result<bool> {
        complete(&self.pool, id, attempt, outcome).await
    }

    async fn requeue(
        &self,
        id: Uuid,
        attempt: i32,
        reason: &str,
        max_attempts: i32,
    ) -> Result<Option<IncidentStatus>> {
        requeue(&self.pool, id, attempt, reason, max_attempts).await
    }

    async fn rescue_expired(&self, max_attempts: i32) -> Result<RescueCounts> {
        rescue_expired(&self.pool, max_attempts).await
    }

    async fn running_owned_by(&self, owner_prefix: &str) -> Result<Vec<(Incident, AgentRun)>> {
        running_owned_by(&self.pool, owner_prefix).await
    }

    async fn retry(&self, id: Uuid) -> Result<Incident> {
        retry(&self.pool, id).await
    }

    async fn cancel(&self, id: Uuid) -> Result<Incident> {
        cancel(&self.pool, id).await
    }

    async fn resolve_open(
        &self,
        cluster: &str,
        fault_id: &str,
        at: DateTime<Utc>,
        stop_running: bool,
    ) -> Result<Option<Resolved>> {
        resolve_open(&self.pool, cluster, fault_id, at, stop_running).await
    }

    async fn list(&self, filter: &ListFilter, limit: i64) -> Result<Vec<Incident>> {
        list(&self.pool, filter, limit).await
    }

    async fn get_by_prefix(&self, prefix: &str) -> Result<Vec<Incident>> {
        get_by_prefix(&self.pool, prefix).await
    }

    async fn get_by_short_id(&self, short: &str) -> Result<Vec<Incident>> {
        get_by_short_id(&self.pool, short).await
    }

    async fn occurrences(&self, id: Uuid, limit: i64) -> Result<Vec<FaultOccurrence>> {
        occurrences(&self.pool, id, limit).await
    }

    async fn related_occurrences(&self, id: Uuid, limit: i64) -> Result<Vec<FaultOccurrence>> {
        related_occurrences(&self.pool, id, limit).await
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>> {
        status_counts(&self.pool).await
    }

    async fn connection_states(&self) -> Result<Vec<ConnectionState>> {
        connection_states(&self.pool).await
    }

    async fn incident_page(&self, scan: &Scan<'_>) -> Result<Vec<Incident>> {
        incident_page(&self.pool, scan).await
    }

    async fn cost_groups(&self, since: DateTime<Utc>, key: CostKey) -> Result<Vec<CostGroup>> {
        cost_groups(&self.pool, since, key).await
    }

    async fn incident_costs(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<f64>>> {
        incident_costs(&self.pool, ids).await
    }

    async fn slack_thread(&self, id: Uuid) -> Result<Option<SlackThread>> {
        slack_thread(&self.pool, id).await
    }

    async fn record_slack_progress(&self, id: Uuid, progress: SlackProgress) -> Result<()> {
        record_slack_progress(&self.pool, id, progress).await
    }

    async fn slack_followups(&self, limit: i64) -> Result<Vec<Incident>> {
        slack_followups(&self.pool, limit).await
    }

    async fn slack_unopened(
        &self,
        severities: &[String],
        stale_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Incident>> {
        slack_unopened(&self.pool, severities, stale_before, limit).await
    }

    async fn close(&self) {
        self.pool.close().await
    }
}
