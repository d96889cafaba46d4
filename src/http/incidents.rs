//! Read-only incident pages: `/incidents`, `/incidents/{id}`, `/incidents/{id}/report`,
//! `/incidents/{id}/log`.
//!
//! No request ever names a file: the id must be a full hyphenated UUID of a stored incident, and
//! the files are fixed paths under `<workspace_root>/<id>/` (checked again after resolving
//! symlinks, since the agent writes in that directory). Everything shown is HTML-escaped, and
//! pages forbid scripts and outside resources by their Content-Security-Policy.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use uuid::Uuid;

use super::HttpState;
use crate::agent::Workspace;
use crate::incident::Incident;
use crate::report::{escape_html as esc, html_report_file, render_page, run_duration, summarize};
use crate::store::{ListFilter, StoreError};

/// Incidents on the list page, newest first.
pub const LIST_LIMIT: u32 = 200;
/// The log page shows at most the last this many bytes.
pub const MAX_LOG_BYTES: u64 = 2 * 1024 * 1024;
/// Reports above this are not rendered on request.
const MAX_REPORT_BYTES: u64 = 5 * 1024 * 1024;

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
    let report = read_file(
        ws.dir(),
        &ws.report_file(),
        ReadMode::Whole(MAX_REPORT_BYTES),
    )
    .await?;
    let summary = report
        .as_deref()
        .map(|b| summarize(&String::from_utf8_lossy(b)));
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
    if report.is_some() {
        body.push_str(&format!(
            "<li><a href=\"/incidents/{}/report\">Investigation report</a></li>",
            i.id
        ));
    } else {
        body.push_str("<li>No report (yet).</li>");
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
    if let Some(html) = read_file(
        ws.dir(),
        &html_report_file(&ws),
        ReadMode::Whole(MAX_REPORT_BYTES),
    )
    .await?
    {
        return Ok(Html(String::from_utf8_lossy(&html).into_owned()));
    }
    // Not rendered yet (the reporter runs after the run): render it now.
    match read_file(
        ws.dir(),
        &ws.report_file(),
        ReadMode::Whole(MAX_REPORT_BYTES),
    )
    .await?
    {
        Some(md) => Ok(Html(render_page(&i, &String::from_utf8_lossy(&md)))),
        None => Err(PageError::NotFound("report")),
    }
}

async fn log(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
) -> Result<Response, PageError> {
    let i = incident(&state, &raw).await?;
    let ws = Workspace::new(&state.workspace_root, i.id);
    let bytes = read_file(ws.dir(), &ws.log_file(), ReadMode::Tail(MAX_LOG_BYTES))
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

enum ReadMode {
    /// The whole file, or "too large" (404 would hide the cause, so it is an error page).
    Whole(u64),
    /// The last bytes.
    Tail(u64),
}

/// Reads `path` (a fixed path inside `dir`); `None` when it does not exist. A path that
/// resolves outside `dir` (a symlink planted by the agent) or is not a regular file is refused
/// as if absent, and logged.
async fn read_file(dir: &Path, path: &Path, mode: ReadMode) -> Result<Option<Vec<u8>>, PageError> {
    let Some(real) = resolve_inside(dir, path).await? else {
        return Ok(None);
    };
    let io = |e: std::io::Error| {
        tracing::warn!(path = %real.display(), error = %e, "incident page: cannot read file");
        PageError::Internal
    };
    let mut file = tokio::fs::File::open(&real).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    let mut buf = Vec::new();
    match mode {
        ReadMode::Whole(max) if len > max => {
            return Err(PageError::NotFound("a report this large (over 5 MiB)"));
        }
        ReadMode::Whole(_) => {
            file.read_to_end(&mut buf).await.map_err(io)?;
        }
        ReadMode::Tail(max) => {
            file.seek(SeekFrom::Start(len.saturating_sub(max)))
                .await
                .map_err(io)?;
            (&mut file)
                .take(max)
                .read_to_end(&mut buf)
                .await
                .map_err(io)?;
        }
    }
    Ok(Some(buf))
}

async fn resolve_inside(dir: &Path, path: &Path) -> Result<Option<PathBuf>, PageError> {
    let canon = |p: PathBuf| async move {
        match tokio::fs::canonicalize(&p).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "incident page: cannot resolve path");
                Err(PageError::Internal)
            }
        }
    };
    let (Some(dir), Some(real)) = (
        canon(dir.to_path_buf()).await?,
        canon(path.to_path_buf()).await?,
    ) else {
        return Ok(None);
    };
    let is_file = tokio::fs::metadata(&real)
        .await
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !real.starts_with(&dir) || !is_file {
        tracing::warn!(
            path = %path.display(), resolved = %real.display(),
            "incident page: refusing a file that resolves outside its workspace or is not a regular file"
        );
        return Ok(None);
    }
    Ok(Some(real))
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
