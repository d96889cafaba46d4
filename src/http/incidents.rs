//! Read-only incident pages: `/incidents`, `/incidents/{id}`, `/incidents/{id}/report`,
//! `/incidents/{id}/log`.
//!
//! No request ever names a file: the id must be a full hyphenated UUID of a stored incident, and
//! the files are fixed paths under `<workspace_root>/<id>/`, read through the workspace's
//! directory descriptors ([`crate::agent::WorkspaceDir`]): a symlink the agent planted is never
//! followed. Everything shown is HTML-escaped, and pages forbid scripts and outside resources by
//! their Content-Security-Policy.
//!
//! The report page is always rendered here from `output/investigation.md`: the agent can write
//! `output/investigation.html` too, so that file is never served (issue #13, item 4).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use uuid::Uuid;

use super::HttpState;
use crate::agent::{Bounded, FileEntry, Workspace, MAX_REPORT_BYTES};
use crate::incident::Incident;
use crate::report::{escape_html as esc, page_facts, render_page_with, run_duration, summarize};
use crate::store::{ListFilter, StoreError};

/// Incidents on the list page, newest first.
pub const LIST_LIMIT: u32 = 200;
/// The log page shows at most the last this many bytes.
pub const MAX_LOG_BYTES: u64 = 2 * 1024 * 1024;

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";
const PAGE_STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}\
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}code{font-family:ui-monospace,monospace}";

pub(super) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/incidents", get(list))
        .route("/incidents/{id}", get(page))
        .route("/incidents/{id}/report", get(report))
        .route("/incidents/{id}/log", get(log))
}

#[derive(Debug, thiserror::Error)]
enum PageError {
    #[error("not an incident id: expected a full UUID like 0192f0c4-6a4e-7c3e-8b1a-2f4d5e6a7b8c")]
    BadId,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match self {
            PageError::BadId => StatusCode::BAD_REQUEST,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            html_page("Error", &format!("<p>{}</p>", esc(&self.to_string()))),
        )
            .into_response()
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => PageError::NotFound("incident"),
            e if e.is_unavailable() => PageError::Unavailable,
            e => {
                tracing::warn!(error = %e, "incident page: store error");
                PageError::Internal
            }
        }
    }
}

struct Html(String);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], self.0).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    }
}

fn html_page(title: &str, body: &str) -> Html {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{PAGE_STYLE}</style></head><body>{body}</body></html>\n",
        esc(title)
    ))
}

/// Only the canonical form: 36 characters, hyphenated (no braces, URNs or prefixes).
fn parse_id(raw: &str) -> Result<Uuid, PageError> {
    if raw.len() != 36 {
        return Err(PageError::BadId);
    }
    Uuid::try_parse(raw).map_err(|_| PageError::BadId)
}

async fn incident(state: &HttpState, raw: &str) -> Result<Incident, PageError> {
    let id = parse_id(raw)?;
    Ok(state.store.get(&id.to_string()).await?)
}

async fn list(State(state): State<HttpState>) -> Result<Html, PageError> {
    let filter = ListFilter {
        limit: Some(LIST_LIMIT),
        ..ListFilter::default()
    };
    let incidents = state.store.list(&filter).await?;
    let mut rows = String::new();
    for i in &incidents {
        rows.push_str(&format!(
            "<tr><td><a href=\"/incidents/{id}\">{short}</a></td><td>{cluster}</td><td>{ns}</td>\
             <td>{kind}/{name}</td><td>{fault}</td><td>{sev}</td><td>{status}</td><td>{occ}</td><td>{created}</td></tr>",
            id = i.id,
            short = &i.id.to_string()[..8],
            cluster = esc(&i.cluster),
            ns = esc(i.namespace.as_deref().unwrap_or("-")),
            kind = esc(&i.resource_kind),
            name = esc(&i.resource_name),
            fault = esc(&i.fault_type),
            sev = esc(&i.severity),
            status = i.status,
            occ = i.occurrences,
            created = i.created_at.format("%Y-%m-%d %H:%M:%S"),
        ));
    }
    Ok(html_page(
        "Incidents",
        &format!(
            "<h1>Incidents</h1><p>{} most recent (at most {LIST_LIMIT}).</p><table><thead><tr>\
             <th>Id</th><th>Cluster</th><th>Namespace</th><th>Resource</th><th>Fault</th>\
             <th>Severity</th><th>Status</th><th>Occurrences</th><th>Created (UTC)</th></tr></thead>\
             <tbody>{rows}</tbody></table>",
            incidents.len()
        ),
    ))
}

async fn page(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Html, PageError> {
    let i = incident(&state, &raw).await?;
    let ws = Workspace::new(&state.workspace_root, i.id);
    let report = read_report(&ws).await?;
    let summary = match &report {
        Some(Bounded::Content(b)) => Some(summarize(&String::from_utf8_lossy(b))),
        _ => None,
    };
    let mut meta = String::new();
    let duration = run_duration(&i).map(|d| humantime::format_duration(d).to_string());
    for (k, v) in [
        ("Cluster", Some(i.cluster.clone())),
        ("Namespace", i.namespace.clone()),
        (
            "Resource",
            Some(format!("{}/{}", i.resource_kind, i.resource_name)),
        ),
        ("Fault", Some(i.fault_type.clone())),
        ("Severity", Some(i.severity.clone())),
        ("Status", Some(i.status.to_string())),
        ("Failure reason", i.failure_reason.clone()),
        ("Occurrences", Some(i.occurrences.to_string())),
        ("First seen", Some(i.first_seen.to_rfc3339())),
        ("Last seen", Some(i.last_seen.to_rfc3339())),
        ("Finished", i.finished_at.map(|t| t.to_rfc3339())),
        ("Run duration", duration),
        ("Context", Some(i.context.clone())),
    ] {
        if let Some(v) = v {
            meta.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", esc(&v)));
        }
    }
    let mut body = format!(
        "<p><a href=\"/incidents\">All incidents</a></p><h1>Incident <code>{}</code></h1><table>{meta}</table>",
        i.id
    );
    if let Some(s) = &summary {
        if let Some(h) = s.headline() {
            let label = if s.root_cause.is_some() {
                "Root cause"
            } else {
                "Summary"
            };
            body.push_str(&format!("<h2>{label}</h2><p>{}</p>", esc(h)));
        }
        if let Some(c) = &s.confidence {
            body.push_str(&format!("<p><strong>Confidence:</strong> {}</p>", esc(c)));
        }
    }
    body.push_str(&investigation_html(ws.dir()).await);
    body.push_str("<h2>Files</h2><ul>");
    match &report {
        Some(Bounded::Content(_)) => body.push_str(&format!(
            "<li><a href=\"/incidents/{}/report\">Investigation report</a></li>",
            i.id
        )),
        Some(Bounded::TooLarge(len)) => body.push_str(&too_large(*len)),
        None => body.push_str("<li>No report (yet).</li>"),
    }
    body.push_str(&format!(
        "<li><a href=\"/incidents/{}/log\">Agent log</a></li></ul>",
        i.id
    ));
    Ok(html_page(&format!("Incident {}", i.id), &body))
}

async fn report(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Html, PageError> {
    let i = incident(&state, &raw).await?;
    let ws = Workspace::new(&state.workspace_root, i.id);
    match read_report(&ws).await? {
        Some(Bounded::Content(md)) => {
            let facts = page_facts(&state.store, &i).await;
            Ok(Html(render_page_with(
                &i,
                &String::from_utf8_lossy(&md),
                &facts,
            )))
        }
        Some(Bounded::TooLarge(len)) => Ok(html_page(
            &format!("Incident {}", i.id),
            &format!("<ul>{}</ul>", too_large(len)),
        )),
        None => Err(PageError::NotFound("report")),
    }
}

/// Said instead of a 404, so a run with a huge report still has its page (issue #13, item 13).
fn too_large(len: u64) -> String {
    format!(
        "<li>Investigation report: {len} bytes, over the {MAX_REPORT_BYTES}-byte limit; \
         too large to render.</li>"
    )
}

async fn log(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, PageError> {
    let i = incident(&state, &raw).await?;
    let ws = Workspace::new(&state.workspace_root, i.id);
    let bytes = read_log_tail(&ws, MAX_LOG_BYTES)
        .await?
        .ok_or(PageError::NotFound("agent log"))?;
    let mut r = (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        String::from_utf8_lossy(&bytes).into_owned(),
    )
        .into_response();
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

/// The report, bounded; `None` when missing or not a regular file (a planted symlink).
async fn read_report(ws: &Workspace) -> Result<Option<Bounded>, PageError> {
    let ws = ws.clone();
    blocking(move || ws.read(&ws.report_file(), MAX_REPORT_BYTES)).await
}

/// The last `max` bytes of the agent log; `None` when missing or not a regular file.
async fn read_log_tail(ws: &Workspace, max: u64) -> Result<Option<Vec<u8>>, PageError> {
    let ws = ws.clone();
    blocking(move || {
        let path = ws.log_file();
        let (mut file, len) = match ws.open_file(&path)? {
            FileEntry::File { file, len } => (file, len),
            FileEntry::Missing | FileEntry::NotRegular => return Ok(None),
        };
        let io = crate::agent::AgentError::workspace(&path);
        let mut buf = Vec::new();
        let read = file
            .seek(SeekFrom::Start(len.saturating_sub(max)))
            .and_then(|_| file.take(max).read_to_end(&mut buf));
        read.map_err(io)?;
        Ok(Some(buf))
    })
    .await
}

/// Workspace reads are blocking syscalls through descriptors; they run off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::agent::AgentError> + Send + 'static,
) -> Result<T, PageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "incident page: cannot read a workspace file");
            Err(PageError::Internal)
        }
        Err(e) => {
            tracing::warn!(error = %e, "incident page: file read task failed");
            Err(PageError::Internal)
        }
    }
}

/// The verdict (`output/verdict.json`, else the report's verdict line) and the evidence bundle's
/// index, read bounded off the async threads.
async fn investigation_html(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    let (verdict, index) = tokio::task::spawn_blocking(move || {
        (
            crate::report::verdict::read(&dir),
            crate::evidence::load_index(&dir),
        )
    })
    .await
    .unwrap_or((None, None));
    let mut out = String::new();
    if let Some(v) = verdict {
        out.push_str("<h2>Verdict</h2>");
        if let Some(h) = v.headline() {
            out.push_str(&format!("<p>{}</p>", esc(&h)));
        }
        if let Some(c) = v.confidence.as_deref().filter(|_| v.root_cause.is_none()) {
            let missing = v.missing.as_deref().unwrap_or("");
            out.push_str(&format!("<p>{}: {}</p>", esc(c), esc(missing)));
        }
        if let Some(c) = &v.category {
            out.push_str(&format!("<p><strong>Category:</strong> {}</p>", esc(c)));
        }
        if !v.evidence.is_empty() {
            out.push_str(&format!(
                "<p><strong>Evidence:</strong> {}</p>",
                esc(&v.evidence.join(", "))
            ));
        }
    }
    if let Some(e) = index {
        out.push_str(&format!(
            "<h2>Evidence</h2><p>{} tool calls, {} gaps, gathered in {} ms before the agent started.</p>",
            e.calls.len(),
            e.gaps().count(),
            e.duration_ms
        ));
        if let Some(why) = &e.session_error {
            out.push_str(&format!("<p>No session: {}</p>", esc(why)));
        }
        out.push_str("<table><tr><th>File</th><th>Tool</th><th>Arguments</th><th>ms</th><th>Bytes</th><th>Error</th></tr>");
        for c in &e.calls {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.file.as_deref().unwrap_or(&c.label)),
                esc(&c.tool),
                esc(&c.arguments.to_string()),
                c.duration_ms,
                c.bytes,
                esc(c.error.as_deref().unwrap_or(""))
            ));
        }
        out.push_str("</table>");
    }
    out
}
