//! Retry and cancel from the dashboard, and the login form that turns a bearer token into a
//! session cookie.
//!
//! Write actions exist only when credentials are configured (`http.auth`): without them the
//! pages offer no button and the routes refuse. Every action must pass three checks: the
//! credentials (the layer of [`crate::http::access`]), the request's `Origin` (or `Referer`)
//! naming this host, and a CSRF token: a random value in a SameSite=Strict cookie that the form
//! repeats in a hidden field (double submit), which another site can neither read nor send.
//! Each action leaves an audit line (target `nightcrier::audit`): who, what, which incident, when.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{html, Markup};
use rand::RngCore as _;

use super::{layout, DashError, Page, Tab};
use crate::http::access::{cookie, SESSION_COOKIE};
use crate::http::HttpState;
use crate::incident::{short_id, Incident};

/// The double-submit cookie.
pub const CSRF_COOKIE: &str = "nightcrier_csrf";
/// Hex digits of a CSRF token (128 bits).
const CSRF_LEN: usize = 32;
/// Largest form body read.
const MAX_FORM_BYTES: usize = 4096;

/// The action buttons of an incident page, and the CSRF cookie to set when the browser has none.
pub(super) struct Offer {
    pub markup: Markup,
    pub set_cookie: Option<HeaderValue>,
}

fn valid_token(t: &&str) -> bool {
    t.len() == CSRF_LEN && t.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(super) fn offer(state: &HttpState, headers: &HeaderMap, i: &Incident) -> Offer {
    if !state.access.requires_auth() {
        return Offer {
            markup: html! {
                p.muted.actions-off { "Retry and cancel are offered when the dashboard has credentials (http.auth)." }
            },
            set_cookie: None,
        };
    }
    let (token, set_cookie) = match cookie(headers, CSRF_COOKIE).filter(valid_token) {
        Some(t) => (t.to_string(), None),
        None => {
            let mut raw = [0u8; CSRF_LEN / 2];
            rand::rng().fill_bytes(&mut raw);
            let t = hex::encode(raw);
            let c = HeaderValue::from_str(&format!(
                "{CSRF_COOKIE}={t}; Path=/dashboard; HttpOnly; SameSite=Strict"
            ))
            .ok();
            (t, c)
        }
    };
    let short = short_id(i.id);
    let markup = html! {
        div.actions {
            @if i.status.is_terminal() {
                form method="post" action={ "/dashboard/incidents/" (short) "/retry" } {
                    input type="hidden" name="csrf" value=(token);
                    button #retry type="submit" { "Retry" }
                }
            }
            @if i.status.is_open() {
                form method="post" action={ "/dashboard/incidents/" (short) "/cancel" } {
                    input type="hidden" name="csrf" value=(token);
                    button #cancel.danger type="submit" { "Cancel" }
                }
            }
        }
    };
    Offer { markup, set_cookie }
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Cancel => "cancelled",
        }
    }
}

pub(super) async fn retry(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    act(&state, &raw, &headers, &body, Action::Retry).await
}

pub(super) async fn cancel(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    act(&state, &raw, &headers, &body, Action::Cancel).await
}

async fn act(
    state: &HttpState,
    raw: &str,
    headers: &HeaderMap,
    body: &[u8],
    action: Action,
) -> Result<Response, DashError> {
    if !state.access.requires_auth() {
        return Err(DashError::Forbidden(
            "write actions are off: configure http.auth (a bearer token or basic credentials) to retry or cancel from the dashboard".into(),
        ));
    }
    let who = state
        .access
        .who(headers)
        .ok_or_else(|| DashError::Forbidden("not authenticated".into()))?;
    same_origin(headers)?;
    let field = form_field(body, "csrf")?;
    let expected = cookie(headers, CSRF_COOKIE).filter(valid_token);
    let ok = match (expected, field.as_deref()) {
        (Some(c), Some(f)) => {
            c.len() == f.len() && c.bytes().zip(f.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
        }
        _ => false,
    };
    if !ok {
        return Err(DashError::Forbidden(
            "the form's CSRF token does not match this browser's: reload the incident page and try again".into(),
        ));
    }
    let i = state.store.get(raw).await?;
    let short = short_id(i.id);
    let after = match action {
        Action::Retry => state.store.retry(i.id).await?,
        Action::Cancel => state.store.cancel(i.id).await?,
    };
    tracing::info!(
        target: "nightcrier::audit",
        who = %who,
        action = action.done(),
        incident_id = %i.id,
        short_id = %short,
        status = %after.status,
        at = %Utc::now().to_rfc3339(),
        "dashboard: {who} {} incident {short}",
        action.done()
    );
    Ok(Redirect::to(&format!(
        "/dashboard/incidents/{short}?done={}",
        action.done()
    ))
    .into_response())
}

/// The request's `Origin`, else its `Referer`, must be this host: a form on another site
/// cannot post here even with the browser's credentials.
fn same_origin(headers: &HeaderMap) -> Result<(), DashError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| DashError::Forbidden("the request has no Host header".into()))?;
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let source = get(header::ORIGIN)
        .or_else(|| get(header::REFERER))
        .ok_or_else(|| {
            DashError::Forbidden(
                "the request has no Origin or Referer header: refused as possibly cross-site"
                    .into(),
            )
        })?;
    let ours = ["http://", "https://"].iter().any(|scheme| {
        source
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix(host))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if ours {
        Ok(())
    } else {
        Err(DashError::Forbidden(format!(
            "the request comes from {:?}, not from this dashboard: refused",
            crate::report::truncate(source)
        )))
    }
}

/// The value of `name` in a urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Result<Option<String>, DashError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(DashError::BadRequest(format!(
            "the form has {} bytes, more than {MAX_FORM_BYTES}",
            body.len()
        )));
    }
    Ok(url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}

// ---------------------------------------------------------------------------------------------
// Login

fn login_page(message: Option<&str>, bearer: bool) -> Markup {
    layout(
        "Log in",
        Tab::None,
        html! {
            h1 { "Log in" }
            @if let Some(m) = message { p.error { (m) } }
            @if bearer {
                form.login method="post" action="/dashboard/login" {
                    label { "Dashboard token (http.auth.bearer_token) "
                        input type="password" name="token" autocomplete="current-password" required;
                    }
                    button type="submit" { "Log in" }
                }
            } @else {
                p { "This dashboard takes no token: open " a href="/dashboard" { "the dashboard" } " and your browser asks for the basic credentials when they are configured." }
            }
        },
    )
}

pub(super) async fn login_form(State(state): State<HttpState>) -> Page {
    Page::new(login_page(None, state.access.session_value().is_some()))
}

pub(super) async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DashError> {
    same_origin(&headers)?;
    let Some(session) = state.access.session_value() else {
        return Err(DashError::BadRequest(
            "no bearer token is configured (http.auth.bearer_token): there is nothing to log in with".into(),
        ));
    };
    let token = form_field(&body, "token")?.unwrap_or_default();
    if !state.access.is_bearer_token(&token) {
        tracing::warn!(target: "nightcrier::audit", at = %Utc::now().to_rfc3339(), "dashboard: a login with a wrong token was refused");
        let mut page = Page::new(login_page(Some("That is not the dashboard's token."), true));
        page.status = StatusCode::UNAUTHORIZED;
        return Ok(page.into_response());
    }
    tracing::info!(target: "nightcrier::audit", at = %Utc::now().to_rfc3339(), "dashboard: logged in with the bearer token");
    let mut r = Redirect::to("/dashboard").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}
