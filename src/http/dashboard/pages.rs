//! The dashboard's pages: Now, the incident list and one incident.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use uuid::Uuid;

use super::{layout, live, DashError, Page, Tab};
use crate::accounting::{day_start, format_usd, hour_start};
use crate::agent::{Bounded, Workspace, MAX_REPORT_BYTES};
use crate::http::HttpState;
use crate::incident::{short_id, Incident, IncidentStatus};
use crate::report::{markdown_to_html, run_duration};
use crate::store::{CostGroup, CostKey, Cursor, PageOrder, PageQuery, MAX_PAGE_SIZE};
use crate::telemetry::names;

/// Rows per list page unless `size` says otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Occurrences shown on an incident's page, oldest first.
const OCCURRENCES_SHOWN: u32 = 50;

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), time)
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    let d = std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    format!("{} ago", humantime::format_duration(d))
}

/// At most `max` characters of `text`, with an ellipsis when cut (a table cell stays a line or
/// two; the full text is on the incident's page).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn status_badge(s: IncidentStatus) -> Markup {
    html! { span class={ "badge st-" (s.as_str()) } { (s.as_str()) } }
}

fn resource(i: &Incident) -> String {
    match &i.namespace {
        Some(ns) => format!("{ns}/{}/{}", i.resource_kind, i.resource_name),
        None => format!("{}/{}", i.resource_kind, i.resource_name),
    }
}

// ---------------------------------------------------------------------------------------------
// Now

/// What runs now: clusters, agents against the limits, budgets, ingestion.
pub(super) async fn now(State(state): State<HttpState>) -> Result<Page, DashError> {
    let now = Utc::now();
    let store = &state.store;
    let database_ok = tokio::time::timeout(state.ping_timeout, store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let states = store.connection_states().await?;
    let counts = store.status_counts().await?;
    let hour = store.cost_groups(hour_start(now), CostKey::Cluster).await?;
    let today = store.cost_groups(day_start(now), CostKey::Cluster).await?;
    let budgets = store.budgets();
    let ingest = state.health.ingest();
    // The buffer and the drops are counted by the ingest path into the metrics; read them there.
    let exposition = state.metrics.render();
    let buffered = metric_sum(&exposition, names::INGEST_BUFFER_DEPTH);
    let dropped = metric_sum(&exposition, names::EVENTS_DROPPED);
    let limits = state.agent_limits;

    let mut names: BTreeSet<String> = state.clusters.iter().map(|c| c.name.clone()).collect();
    names.extend(states.iter().map(|s| s.cluster.clone()));
    names.extend(counts.iter().map(|c| c.cluster.clone()));
    let count = |cluster: &str, st: IncidentStatus| {
        counts
            .iter()
            .filter(|c| c.cluster == cluster && c.status == st)
            .map(|c| c.count)
            .sum::<i64>()
    };
    let totals: Vec<(IncidentStatus, i64)> = IncidentStatus::ALL
        .into_iter()
        .map(|st| {
            let n = counts
                .iter()
                .filter(|c| c.status == st)
                .map(|c| c.count)
                .sum();
            (st, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let running_total = counts
        .iter()
        .filter(|c| c.status == IncidentStatus::Running)
        .map(|c| c.count)
        .sum::<i64>();
    let group = |groups: &[CostGroup], key: &str| {
        groups
            .iter()
            .find(|g| g.key == key)
            .cloned()
            .unwrap_or_default()
    };
    let hour_total = CostGroup::total("total", &hour);
    let today_total = CostGroup::total("total", &today);

    let body = html! {
        h1 { "Now" }
        section.cards {
            div.card {
                h2 { "Agents" }
                p.big { (running_total) " / " (limits.max_concurrent_agents) }
                p.muted { "running, of the limit; at most " (limits.max_agents_per_cluster) " per cluster" }
            }
            div.card {
                h2 { "Spend" }
                p.big { (format_usd(Some(today_total.cost_usd))) }
                p.muted { "today (UTC), " (today_total.runs) " runs; this hour " (format_usd(Some(hour_total.cost_usd))) ", " (hour_total.runs) " runs" }
            }
            div.card {
                h2 { "Ingestion" }
                @if ingest.degraded {
                    p.big.bad { "degraded" }
                    p.muted {
                        "since " (opt_time(ingest.degraded_since)) ": "
                        (ingest.last_error.as_deref().unwrap_or("unknown error"))
                    }
                } @else {
                    p.big.good { "ok" }
                    p.muted { "last write " (ingest.last_successful_write.map_or_else(|| "none yet".to_string(), |t| ago(now, t))) }
                }
                p.muted {
                    "buffer " (buffered.map_or_else(|| "-".to_string(), |n| format!("{n:.0}"))) " faults, "
                    span class=[dropped.filter(|n| *n > 0.0).map(|_| "bad")] {
                        (dropped.map_or_else(|| "-".to_string(), |n| format!("{n:.0}"))) " dropped"
                    }
                    " since start"
                }
                p.muted { "database " @if database_ok { "reachable" } @else { b.bad { "unreachable" } } " (" (store.backend()) ")" }
            }
            @if budgets.global.max_per_hour.is_some() || budgets.global.max_spend_per_day_usd.is_some() {
                div.card {
                    h2 { "Budget" }
                    @if let Some(max) = budgets.global.max_per_hour {
                        p { (hour_total.runs) " of " (max) " investigations this hour" }
                    }
                    @if let Some(max) = budgets.global.max_spend_per_day_usd {
                        p { (format_usd(Some(today_total.cost_usd))) " of " (format_usd(Some(max))) " today" }
                    }
                }
            }
        }
        h2 { "Clusters" }
        table.grid {
            thead { tr {
                th { "Cluster" } th { "Connection" } th { "Since" } th { "Last event" } th { "Events" }
                th { "Pending" } th { "Running" } th { "Budget" } th { "Reason / last error" }
            } }
            tbody {
                @for name in &names {
                    @let conn = states.iter().find(|s| &s.cluster == name);
                    @let configured = state.clusters.iter().any(|c| &c.name == name);
                    @let budget = budgets.clusters.get(name);
                    @let (h, d) = (group(&hour, name), group(&today, name));
                    tr {
                        td {
                            a href={ "/dashboard/incidents?cluster=" (urlencode(name)) } { (name) }
                            @if !configured { " " span.muted { "(not configured)" } }
                        }
                        td {
                            @let st = conn.map_or("never connected", |c| c.state.as_str());
                            span class={ "conn conn-" (st.replace(' ', "_")) } { (st.replace('_', " ")) }
                        }
                        td { (conn.map_or_else(|| "-".to_string(), |c| ago(now, c.updated_at))) }
                        td { (conn.and_then(|c| c.last_event_at).map_or_else(|| "-".to_string(), |t| ago(now, t))) }
                        td.num { (conn.map_or(0, |c| c.events_received)) }
                        td.num { a href={ "/dashboard/incidents?status=pending&cluster=" (urlencode(name)) } { (count(name, IncidentStatus::Pending)) } }
                        td.num { a href={ "/dashboard/incidents?status=running&cluster=" (urlencode(name)) } { (count(name, IncidentStatus::Running)) } " / " (limits.max_agents_per_cluster) }
                        td {
                            @match budget {
                                Some(b) => {
                                    @if let Some(max) = b.max_per_hour { (h.runs) "/" (max) " this hour " }
                                    @if let Some(max) = b.max_spend_per_day_usd { (format_usd(Some(d.cost_usd))) "/" (format_usd(Some(max))) " today" }
                                }
                                None => { (h.runs) " runs this hour" }
                            }
                        }
                        td.reason { (conn.and_then(|c| c.last_error.as_deref()).unwrap_or("-")) }
                    }
                }
                @if names.is_empty() {
                    tr { td colspan="9" { "No clusters configured and nothing recorded yet." } }
                }
            }
        }
        h2 { "Incidents by status" }
        p.statuses {
            @for (st, n) in &totals {
                a href={ "/dashboard/incidents?status=" (st.as_str()) } { (status_badge(*st)) " " (n) }
                " "
            }
            @if totals.is_empty() { "None yet." }
        }
    };
    Ok(Page::new(layout("Now", Tab::Now, body)))
}

/// The sum of a metric's samples (all label sets) in a Prometheus text exposition; `None`
/// when it has none (nothing recorded yet, or no recorder installed).
fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// Percent-encodes a query value (cluster names are DNS-ish, but the value comes from a
/// cluster's configuration or the database, so nothing is assumed).
pub(super) fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// The list

/// The list's query string. All text, so that bad values get an error naming them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListParams {
    status: Option<String>,
    cluster: Option<String>,
    severity: Option<String>,
    fault: Option<String>,
    since: Option<String>,
    until: Option<String>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
    size: Option<String>,
    /// `rows`: only the table body (the list's live refresh).
    partial: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `2026-01-31`, an RFC 3339 time, or a duration back from now (`90m`, `24h`, `7d`).
fn parse_time(name: &str, v: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, DashError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = humantime::parse_duration(v) {
        if let Ok(d) = TimeDelta::from_std(d) {
            if let Some(t) = now.checked_sub_signed(d) {
                return Ok(t);
            }
        }
    }
    Err(DashError::BadRequest(format!(
        "{name}={v:?} is not a time: expected a date (2026-01-31), an RFC 3339 time or a duration back from now (24h, 7d)"
    )))
}

fn parse_cursor(name: &str, v: &str) -> Result<Uuid, DashError> {
    Uuid::try_parse(v).map_err(|_| {
        DashError::BadRequest(format!(
            "{name}={v:?} is not an incident id (a page cursor)"
        ))
    })
}

impl ListParams {
    fn query(&self, now: DateTime<Utc>) -> Result<PageQuery, DashError> {
        let status = match non_empty(&self.status) {
            Some(s) => Some(
                s.parse::<IncidentStatus>()
                    .map_err(|e| DashError::BadRequest(format!("status: {e}")))?,
            ),
            None => None,
        };
        let order = match non_empty(&self.order).as_deref() {
            None | Some("newest") => PageOrder::NewestFirst,
            Some("oldest") => PageOrder::OldestFirst,
            Some(other) => {
                return Err(DashError::BadRequest(format!(
                    "order={other:?}: expected newest or oldest"
                )))
            }
        };
        let cursor = match (non_empty(&self.after), non_empty(&self.before)) {
            (Some(_), Some(_)) => {
                return Err(DashError::BadRequest(
                    "after and before cannot be given together".into(),
                ))
            }
            (Some(a), None) => Some(Cursor::After(parse_cursor("after", &a)?)),
            (None, Some(b)) => Some(Cursor::Before(parse_cursor("before", &b)?)),
            (None, None) => None,
        };
        let size = match non_empty(&self.size) {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    DashError::BadRequest(format!(
                        "size={s:?}: expected a number from 1 to {MAX_PAGE_SIZE}"
                    ))
                })?,
        };
        Ok(PageQuery {
            status,
            cluster: non_empty(&self.cluster),
            severity: non_empty(&self.severity),
            fault_type: non_empty(&self.fault),
            since: non_empty(&self.since)
                .map(|v| parse_time("since", &v, now))
                .transpose()?,
            until: non_empty(&self.until)
                .map(|v| parse_time("until", &v, now))
                .transpose()?,
            order,
            cursor,
            size,
        })
    }

    /// The query string of this filter with `extra` pairs (a cursor), for links.
    fn href(&self, extra: &[(&str, String)]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("status", &self.status),
            ("cluster", &self.cluster),
            ("severity", &self.severity),
            ("fault", &self.fault),
            ("since", &self.since),
            ("until", &self.until),
            ("order", &self.order),
            ("size", &self.size),
        ] {
            if let Some(v) = non_empty(v) {
                q.append_pair(k, &v);
            }
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        format!("/dashboard/incidents?{}", q.finish())
    }
}

/// What a list row shows beyond the incident: its cost and verdict line.
struct RowExtras {
    costs: HashMap<Uuid, Option<f64>>,
    verdicts: HashMap<Uuid, String>,
}

async fn row_extras(state: &HttpState, incidents: &[Incident]) -> Result<RowExtras, DashError> {
    let ids: Vec<Uuid> = incidents.iter().map(|i| i.id).collect();
    let costs = state.store.incident_costs(&ids).await?;
    // Verdicts are files of the finished incidents' workspaces, read bounded off the async
    // threads; an unreadable one is just not shown.
    let dirs: Vec<(Uuid, PathBuf)> = incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Succeeded)
        .map(|i| {
            (
                i.id,
                Workspace::new(&state.workspace_root, i.id)
                    .dir()
                    .to_path_buf(),
            )
        })
        .collect();
    let verdicts = tokio::task::spawn_blocking(move || {
        dirs.into_iter()
            .filter_map(|(id, dir)| {
                crate::report::verdict::read(&dir)
                    .and_then(|v| v.headline())
                    .map(|h| (id, clip(&h, 160)))
            })
            .collect::<HashMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    Ok(RowExtras { costs, verdicts })
}

fn rows(incidents: &[Incident], extras: &RowExtras, now: DateTime<Utc>) -> Markup {
    html! {
        @for i in incidents {
            @let short = short_id(i.id);
            tr data-id=(short) {
                td { (status_badge(i.status)) }
                td { a.id href={ "/dashboard/incidents/" (short) } { code { (short) } } }
                td { (i.cluster) }
                td.res {
                    (resource(i))
                    @if let Some(v) = extras.verdicts.get(&i.id) { div.verdict { (v) } }
                    @if let Some(r) = i.failure_reason.as_deref().filter(|_| i.status != IncidentStatus::Succeeded) { div.reason { (clip(r, 160)) } }
                }
                td { (i.fault_type) }
                td { span class={ "sev sev-" (i.severity.to_ascii_lowercase()) } { (i.severity) } }
                td.num { (i.occurrences) }
                td title=(time(i.created_at)) { (ago(now, i.created_at)) }
                td.num { (run_duration(i).map_or_else(|| "-".to_string(), |d| humantime::format_duration(d).to_string())) }
                td.num { (format_usd(extras.costs.get(&i.id).copied().flatten())) }
            }
        }
        @if incidents.is_empty() {
            tr { td colspan="10" { "No incidents match." } }
        }
    }
}

pub(super) async fn list(
    State(state): State<HttpState>,
    Query(params): Query<ListParams>,
) -> Result<Response, DashError> {
    let now = Utc::now();
    let q = params.query(now)?;
    let page = state.store.incident_page(&q).await?;
    let extras = row_extras(&state, &page.incidents).await?;
    let body_rows = rows(&page.incidents, &extras, now);
    if params.partial.as_deref() == Some("rows") {
        return Ok(Page::new(body_rows).into_response());
    }
    let cursor_link = |c: Cursor| match c {
        Cursor::After(id) => params.href(&[("after", id.to_string())]),
        Cursor::Before(id) => params.href(&[("before", id.to_string())]),
    };
    let first_page = q.cursor.is_none();
    let clusters: BTreeSet<&str> = state.clusters.iter().map(|c| c.name.as_str()).collect();
    let sel = |v: &Option<String>, want: &str| non_empty(v).as_deref() == Some(want);
    let body = html! {
        h1 { "Incidents" }
        form.filters method="get" action="/dashboard/incidents" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for st in IncidentStatus::ALL {
                        option value=(st.as_str()) selected[sel(&params.status, st.as_str())] { (st.as_str()) }
                    }
                }
            }
            label { "Cluster " input name="cluster" list="clusters" value=[non_empty(&params.cluster)] size="14"; }
            datalist id="clusters" { @for c in &clusters { option value=(c) {} } }
            label { "Severity "
                select name="severity" {
                    option value="" { "any" }
                    @for s in ["critical", "warning", "info"] {
                        option value=(s) selected[sel(&params.severity, s)] { (s) }
                    }
                }
            }
            label { "Fault " input name="fault" value=[non_empty(&params.fault)] size="16" placeholder="CrashLoop"; }
            label { "Since " input name="since" value=[non_empty(&params.since)] size="10" placeholder="24h"; }
            label { "Until " input name="until" value=[non_empty(&params.until)] size="10" placeholder="2026-01-31"; }
            label { "Order "
                select name="order" {
                    option value="newest" selected[sel(&params.order, "newest")] { "newest first" }
                    option value="oldest" selected[sel(&params.order, "oldest")] { "oldest first" }
                }
            }
            button type="submit" { "Filter" }
            " " a href="/dashboard/incidents" { "clear" }
        }
        table.grid.incidents {
            thead { tr {
                th { "Status" } th { "Id" } th { "Cluster" } th { "Resource / verdict" } th { "Fault" }
                th { "Severity" } th { "Seen" } th { "Created" } th { "Duration" } th { "Cost" }
            } }
            tbody #incident-rows data-refresh=[first_page.then(|| params.href(&[("partial", "rows".to_string())]))] {
                (body_rows)
            }
        }
        nav.pager {
            @if let Some(c) = page.prev { a rel="prev" href=(cursor_link(c)) { "← Newer" } }
            @if !first_page { a href=(params.href(&[])) { "First page" } }
            @if let Some(c) = page.next { a rel="next" href=(cursor_link(c)) { "Older →" } }
        }
    };
    Ok(Page::new(layout("Incidents", Tab::Incidents, body)).into_response())
}

// ---------------------------------------------------------------------------------------------
// One incident

pub(super) async fn incident(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Result<Page, DashError> {
    let i = state.store.get(&raw).await?;
    let runs = state.store.agent_runs(i.id).await?;
    let occurrences = state.store.occurrences(i.id, OCCURRENCES_SHOWN).await?;
    let ws = Workspace::new(&state.workspace_root, i.id);
    let dir = ws.dir().to_path_buf();
    let files = {
        let ws = ws.clone();
        tokio::task::spawn_blocking(move || {
            let report = ws.read(&ws.report_file(), MAX_REPORT_BYTES).ok().flatten();
            (
                report,
                crate::report::verdict::read(&dir),
                crate::evidence::load_index(&dir),
            )
        })
        .await
        .map_err(|_| DashError::Internal)?
    };
    let (report, verdict, evidence) = files;
    let log = live::initial_tail(&ws).await?;
    let short = short_id(i.id);
    let actions = super::actions::offer(&state, &headers, &i);
    let body = html! {
        p.crumbs { a href="/dashboard/incidents" { "Incidents" } " / " code { (short) } }
        h1 { (i.fault_type) " on " (resource(&i)) " " (status_badge(i.status)) }
        @if let Some(done) = flash.done.as_deref() {
            p.flash { "Done: " (done) "." }
        }
        (actions.markup)
        section.cards {
            div.card.wide {
                h2 { "Fault" }
                table.kv {
                    tr { th { "Id" } td { code { (i.id) } " (short " code { (short) } ")" } }
                    tr { th { "Cluster" } td { (i.cluster) } }
                    tr { th { "Resource" } td { (resource(&i)) } }
                    tr { th { "Fault" } td { (i.fault_type) " " span.muted { "(" (i.fault_id) ")" } } }
                    tr { th { "Severity" } td { (i.severity) } }
                    tr { th { "Status" } td { (status_badge(i.status)) @if let Some(r) = &i.failure_reason { " " (r) } } }
                    tr { th { "Occurrences" } td { (i.occurrences) } }
                    tr { th { "First / last seen" } td { (time(i.first_seen)) " / " (time(i.last_seen)) } }
                    tr { th { "Started / finished" } td { (opt_time(i.started_at)) " / " (opt_time(i.finished_at)) } }
                    @if let Some(t) = i.resolved_at { tr { th { "Alert resolved" } td { (time(t)) } } }
                    tr { th { "Context" } td { pre.context { (i.context) } } }
                }
            }
        }
        @if let Some(v) = &verdict {
            h2 { "Verdict" }
            div.verdict-box {
                @if let Some(h) = v.headline() { p.headline { (h) } }
                @if let Some(c) = &v.confidence { p { b { "Confidence: " } (c) } }
                @if let Some(c) = &v.category { p { b { "Category: " } (c) } }
                @if let Some(m) = v.missing.as_deref().filter(|_| v.root_cause.is_none()) { p { b { "Missing: " } (m) } }
                @if !v.evidence.is_empty() { p { b { "Evidence: " } (v.evidence.join(", ")) } }
            }
        }
        h2 { "Agent runs" }
        table.grid {
            thead { tr {
                th { "#" } th { "Outcome" } th { "Started" } th { "Finished" } th { "Exit" } th { "Reason" }
                th { "Model" } th { "Tokens in/out" } th { "Turns" } th { "Cost" }
            } }
            tbody {
                @for r in &runs {
                    @let u = r.usage.as_ref();
                    tr {
                        td.num { (r.attempt) }
                        td { @match r.outcome { Some(o) => (status_badge(o)), None => span.badge.st-running { "running" } } }
                        td { (time(r.started_at)) }
                        td { (opt_time(r.finished_at)) }
                        td.num { (r.exit_code.map_or_else(|| "-".to_string(), |c| c.to_string())) }
                        td.reason { (r.reason.as_deref().unwrap_or("-")) }
                        td { (u.and_then(|u| u.model.as_deref()).unwrap_or("-")) }
                        td.num {
                            (u.and_then(|u| u.input_tokens).map_or_else(|| "-".to_string(), |n| n.to_string()))
                            " / "
                            (u.and_then(|u| u.output_tokens).map_or_else(|| "-".to_string(), |n| n.to_string()))
                        }
                        td.num { (u.and_then(|u| u.turns).map_or_else(|| "-".to_string(), |n| n.to_string())) }
                        td.num { (format_usd(u.and_then(|u| u.cost_usd))) }
                    }
                }
                @if runs.is_empty() { tr { td colspan="10" { "No agent has run yet." } } }
            }
        }
        h2 { "Agent output " span #live-state.muted { @if i.status.is_open() { "(live with JavaScript)" } @else { "(finished)" } } }
        pre #live-log.log data-stream={ "/dashboard/incidents/" (i.id) "/log/stream" } data-offset=(log.end) data-open=(i.status.is_open()) {
            @if log.start > 0 { "[… " (log.start) " earlier bytes not shown …]\n" }
            (log.text)
        }
        p.muted { a href={ "/incidents/" (i.id) "/log" } { "Plain log" } }
        h2 { "Report" }
        @match &report {
            Some(Bounded::Content(md)) => div.report { (PreEscaped(markdown_to_html(&String::from_utf8_lossy(md)))) },
            Some(Bounded::TooLarge(len)) => p { "The report has " (len) " bytes, over the " (MAX_REPORT_BYTES) "-byte limit: too large to render." },
            None => p.muted { "No report (yet)." },
        }
        @if let Some(e) = &evidence {
            h2 { "Evidence" }
            p { (e.calls.len()) " tool calls, " (e.gaps().count()) " gaps, gathered in " (e.duration_ms) " ms before the agent started." }
            @if let Some(why) = &e.session_error { p.bad { "No session: " (why) } }
            table.grid {
                thead { tr { th { "File" } th { "Tool" } th { "Arguments" } th { "ms" } th { "Bytes" } th { "Error" } } }
                tbody {
                    @for c in &e.calls {
                        tr {
                            td { (c.file.as_deref().unwrap_or(&c.label)) }
                            td { (c.tool) }
                            td { code { (clip(&c.arguments.to_string(), 300)) } }
                            td.num { (c.duration_ms) }
                            td.num { (c.bytes) }
                            td.reason { (c.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Occurrences" }
        table.grid {
            thead { tr { th { "Received" } th { "Server time" } th { "Severity" } th { "Context" } } }
            tbody {
                @for o in &occurrences {
                    tr {
                        td { (time(o.received_at)) }
                        td { (o.server_timestamp) }
                        td { (o.severity) }
                        td.reason { (clip(&o.context, 300)) }
                    }
                }
            }
        }
        @if i.occurrences > i64::from(OCCURRENCES_SHOWN) {
            p.muted { "The first " (OCCURRENCES_SHOWN) " of " (i.occurrences) " occurrences." }
        }
    };
    let mut page = Page::new(layout(&format!("Incident {short}"), Tab::None, body));
    if let Some(cookie) = actions.set_cookie {
        page = page.with_header(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(page)
}

/// What an action left to say after its redirect.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Flash {
    done: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_label_sets_and_skip_lookalikes() {
        let text = "# TYPE nightcrier_events_dropped_total counter\n\
                    nightcrier_events_dropped_total{cluster=\"a\"} 3\n\
                    nightcrier_events_dropped_total{cluster=\"b\"} 4\n\
                    nightcrier_events_dropped_total_other 100\n\
                    nightcrier_ingest_buffer_depth 12\n";
        assert_eq!(
            metric_sum(text, "nightcrier_events_dropped_total"),
            Some(7.0)
        );
        assert_eq!(
            metric_sum(text, "nightcrier_ingest_buffer_depth"),
            Some(12.0)
        );
        assert_eq!(metric_sum(text, "nightcrier_missing"), None);
    }

    #[test]
    fn times_and_filters_are_parsed_or_named() {
        let now = Utc::now();
        assert_eq!(
            parse_time("since", "24h", now).unwrap(),
            now - TimeDelta::hours(24)
        );
        assert_eq!(
            parse_time("until", "2026-01-31", now).unwrap().to_rfc3339(),
            "2026-01-31T00:00:00+00:00"
        );
        let e = parse_time("since", "yesterday", now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("since=\"yesterday\""), "{e}");
        let p = ListParams {
            order: Some("sideways".into()),
            ..ListParams::default()
        };
        assert!(p.query(now).unwrap_err().to_string().contains("sideways"));
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }
}
