//! The web dashboard under `/dashboard`: what runs now, the incident list, one incident with its
//! agent's output live, and the retry/cancel actions.
//!
//! Pages are rendered on the server with maud (compile-time-checked templates). The stylesheet
//! and the few lines of JavaScript for the live parts are embedded in the binary and served from
//! this origin, so the Content-Security-Policy allows nothing else: no inline script or style,
//! no other origin. Everything works without JavaScript except the live updates.
//!
//! This module owns the dashboard's pages, its live streams and its forms. It must not decide
//! who may see it ([`super::access`] does, for every route here) nor hold SQL (the store's
//! [`crate::store::Store::incident_page`] pages the list).

mod actions;
mod live;
mod pages;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use super::HttpState;
use crate::store::StoreError;

/// Scripts and styles from this origin only; forms post only here; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// Routes that need the pages' credentials ([`super::access`] puts its layer around them).
pub(super) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/dashboard", get(pages::now))
        .route("/dashboard/incidents", get(pages::list))
        .route("/dashboard/incidents/{id}", get(pages::incident))
        .route(
            "/dashboard/incidents/{id}/log/stream",
            get(live::log_stream),
        )
        .route("/dashboard/incidents/{id}/retry", post(actions::retry))
        .route("/dashboard/incidents/{id}/cancel", post(actions::cancel))
}

/// Routes open to anyone: the static assets (nothing secret) and the login form, which turns a
/// bearer token into a session cookie (a browser cannot send a bearer header by itself).
pub(super) fn public_routes() -> Router<HttpState> {
    Router::new()
        .route("/dashboard/assets/style.css", get(style))
        .route("/dashboard/assets/app.js", get(script))
        .route("/dashboard/assets/icon.svg", get(icon))
        .route(
            "/dashboard/login",
            get(actions::login_form).post(actions::login),
        )
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A dashboard page: the HTML with the dashboard's security headers.
pub(super) struct Page {
    status: StatusCode,
    markup: Markup,
    headers: HeaderMap,
}

impl Page {
    fn new(markup: Markup) -> Self {
        Self {
            status: StatusCode::OK,
            markup,
            headers: HeaderMap::new(),
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.markup.into_string(),
        )
            .into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, v) in &self.headers {
            h.append(k, v.clone());
        }
        r
    }
}

/// Which tab of the navigation is current.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Now,
    Incidents,
    None,
}

/// The frame around every page.
fn layout(title: &str, tab: Tab, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · nightcrier" }
                link rel="icon" href="/dashboard/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/dashboard/assets/style.css";
                script src="/dashboard/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/dashboard" { "nightcrier" }
                    nav {
                        a href="/dashboard" aria-current=[(tab == Tab::Now).then_some("page")] { "Now" }
                        a href="/dashboard/incidents" aria-current=[(tab == Tab::Incidents).then_some("page")] { "Incidents" }
                    }
                }
                main { (body) }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum DashError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let status = match self {
            DashError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashError::NotFound(_) => StatusCode::NOT_FOUND,
            DashError::Conflict(_) => StatusCode::CONFLICT,
            DashError::Forbidden(_) => StatusCode::FORBIDDEN,
            DashError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            DashError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = html! {
            h1 { "Error" }
            p.error { (self.to_string()) }
            p { a href="/dashboard/incidents" { "Back to the incidents" } }
        };
        let mut page = Page::new(layout("Error", Tab::None, body));
        page.status = status;
        page.into_response()
    }
}

impl From<StoreError> for DashError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => DashError::NotFound(format!("incident {id}")),
            StoreError::InvalidInput(m) => DashError::BadRequest(m),
            e @ StoreError::Ambiguous { .. } => DashError::BadRequest(e.to_string()),
            StoreError::Conflict(m) => DashError::Conflict(m),
            e if e.is_unavailable() => DashError::Unavailable,
            e => {
                tracing::warn!(error = %e, "dashboard: store error");
                DashError::Internal
            }
        }
    }
}
