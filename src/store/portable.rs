//! The operations whose SQL and logic are the same on both backends, written once over the
//! statement runner every [`Driver`] provides ([`Driver::execute`], [`Driver::fetch_incidents`],
//! ...). The statements are in [`super::sql`]; each driver binds the [`Arg`]s in its own
//! representation and reads rows into the shared records.
//!
//! An operation lives here only when nothing about it depends on the dialect: one statement, no
//! locking beyond the statement's own, no NOTIFY. The others (claims, `record_faults`, the
//! transitions that lock a row) are [`Driver`] methods.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::driver::Driver;
use super::{rules, sql, time, Result};
use crate::accounting::RunUsage;
use crate::incident::{AgentRun, ConnectionState, Incident};

/// One value bound to a statement, in the store's own types: SQLite stores ids as text, times as
/// unix microseconds and booleans as integers; PostgreSQL has a type for each.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Id(Uuid),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
    Int(i32),
    BigInt(i64),
    OptBigInt(Option<i64>),
    OptReal(Option<f64>),
    OptBool(Option<bool>),
    Text(&'a str),
    OptText(Option<&'a str>),
}

/// See [`super::Store::heartbeat`].
pub(super) async fn heartbeat(
    d: &impl Driver,
    id: Uuid,
    attempt: i32,
    lease: Duration,
) -> Result<bool> {
    let args = [
        Arg::Time(time::now() + lease),
        Arg::Id(id),
        Arg::Int(attempt),
    ];
    Ok(d.execute(sql::HEARTBEAT, &args, "extending a lease")
        .await?
        == 1)
}

/// See [`super::Store::set_run_pid`].
pub(super) async fn set_run_pid(d: &impl Driver, id: Uuid, attempt: i32, pid: i32) -> Result<()> {
    let args = [Arg::Int(pid), Arg::Id(id), Arg::Int(attempt)];
    let done = d
        .execute(sql::SET_RUN_PID, &args, "recording an agent's pid")
        .await?;
    rules::run_row_found(done, id, attempt)
}

/// See [`super::Store::set_run_log_path`].
pub(super) async fn set_run_log_path(
    d: &impl Driver,
    id: Uuid,
    attempt: i32,
    path: &str,
) -> Result<()> {
    let args = [Arg::Text(path), Arg::Id(id), Arg::Int(attempt)];
    let done = d
        .execute(
            sql::SET_RUN_LOG_PATH,
            &args,
            "recording an agent's log path",
        )
        .await?;
    rules::run_row_found(done, id, attempt)
}

/// See [`super::Store::set_run_usage`].
pub(super) async fn set_run_usage(
    d: &impl Driver,
    id: Uuid,
    attempt: i32,
    u: &RunUsage,
) -> Result<()> {
    let args = [
        Arg::OptText(u.model.as_deref()),
        Arg::OptBigInt(u.input_tokens),
        Arg::OptBigInt(u.output_tokens),
        Arg::OptBigInt(u.cache_read_tokens),
        Arg::OptBigInt(u.cache_write_tokens),
        Arg::OptBigInt(u.turns),
        Arg::OptReal(u.cost_usd),
        Arg::Text(u.accounting.as_str()),
        Arg::OptBool(u.agent_error),
        Arg::Id(id),
        Arg::Int(attempt),
    ];
    let done = d
        .execute(sql::SET_RUN_USAGE, &args, "recording an agent run's usage")
        .await?;
    rules::run_row_found(done, id, attempt)
}

/// See [`super::Store::unreported_finished`].
pub(super) async fn unreported_finished(d: &impl Driver, limit: i64) -> Result<Vec<Incident>> {
    let args = [Arg::BigInt(limit)];
    d.fetch_incidents(
        sql::UNREPORTED_FINISHED,
        &args,
        "reading unreported incidents",
    )
    .await
}

/// See [`super::Store::mark_reported`].
pub(super) async fn mark_reported(d: &impl Driver, id: Uuid, attempt: i32) -> Result<bool> {
    let args = [Arg::Id(id), Arg::Int(attempt)];
    let done = d
        .execute(sql::MARK_REPORTED, &args, "marking an incident reported")
        .await?;
    Ok(done == 1)
}

/// See [`super::Store::record_report_failure`].
pub(super) async fn record_report_failure(d: &impl Driver, id: Uuid, attempt: i32) -> Result<i32> {
    let args = [Arg::Id(id), Arg::Int(attempt)];
    let failures = d
        .fetch_i32(
            sql::RECORD_REPORT_FAILURE,
            &args,
            "counting a reporting failure",
        )
        .await?;
    Ok(failures.unwrap_or(0))
}

/// One incident by its full id.
pub(super) async fn get_by_id(d: &impl Driver, id: Uuid) -> Result<Option<Incident>> {
    let mut found = d
        .fetch_incidents(sql::INCIDENT_BY_ID, &[Arg::Id(id)], "reading an incident")
        .await?;
    Ok(found.pop())
}

/// See [`super::Store::agent_runs`].
pub(super) async fn agent_runs(d: &impl Driver, id: Uuid) -> Result<Vec<AgentRun>> {
    d.fetch_runs(sql::AGENT_RUNS, &[Arg::Id(id)], "reading agent runs")
        .await
}

/// See [`super::Store::recent_failures`].
pub(super) async fn recent_failures(
    d: &impl Driver,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Incident>> {
    let args = [Arg::Time(since), Arg::BigInt(limit)];
    d.fetch_incidents(sql::RECENT_FAILURES, &args, "reading recent failures")
        .await
}

/// See [`super::Store::put_connection_state`].
pub(super) async fn put_connection_state(d: &impl Driver, s: &ConnectionState) -> Result<()> {
    let args = [
        Arg::Text(&s.cluster),
        Arg::Text(s.state.as_str()),
        Arg::OptText(s.subscription_id.as_deref()),
        Arg::OptText(s.last_error.as_deref()),
        // The precision both backends store: a state read back compares equal.
        Arg::OptTime(s.last_event_at.map(time::truncate)),
        Arg::BigInt(s.events_received),
        Arg::BigInt(s.events_malformed),
        Arg::BigInt(s.reconnects),
        Arg::Time(time::truncate(s.updated_at)),
    ];
    d.execute(
        sql::PUT_CONNECTION_STATE,
        &args,
        "saving a connection state",
    )
    .await?;
    Ok(())
}

/// See [`super::Store::claim_slack_thread`].
pub(super) async fn claim_slack_thread(
    d: &impl Driver,
    id: Uuid,
    channel: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let args = [
        Arg::Text(channel),
        Arg::Text(owner),
        Arg::Time(now),
        Arg::Id(id),
    ];
    let done = d
        .execute(sql::CLAIM_SLACK_THREAD, &args, "claiming a Slack thread")
        .await?;
    Ok(done == 1)
}

/// See [`super::Store::take_over_slack_claim`].
pub(super) async fn take_over_slack_claim(
    d: &impl Driver,
    id: Uuid,
    owner: &str,
    claimed_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let args = [
        Arg::Text(owner),
        Arg::Time(now),
        Arg::Id(id),
        Arg::Time(claimed_before),
    ];
    let done = d
        .execute(
            sql::TAKE_OVER_SLACK_CLAIM,
            &args,
            "taking over a Slack claim",
        )
        .await?;
    Ok(done == 1)
}

/// See [`super::Store::set_slack_ts`].
pub(super) async fn set_slack_ts(
    d: &impl Driver,
    id: Uuid,
    owner: &str,
    channel: &str,
    ts: &str,
) -> Result<bool> {
    let args = [
        Arg::Text(ts),
        Arg::Text(channel),
        Arg::Id(id),
        Arg::Text(owner),
    ];
    let done = d
        .execute(sql::SET_SLACK_TS, &args, "recording a Slack message")
        .await?;
    Ok(done == 1)
}
