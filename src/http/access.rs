//! Who may see the incident pages: `http.pages` and `http.auth`.
//!
//! The pages show agent logs and reports, which can hold whatever an agent printed (secrets from
//! its environment included), so they can require a bearer token or HTTP basic credentials.
//! `/healthz`, `/readyz` and `/metrics` stay open for probes and scrapers. Any future write
//! action must sit behind [`pages`]' layer as well. This module owns the credential check; it
//! must not know what the pages show.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;

use super::HttpState;
use crate::config::{HttpAuthConfig, HttpConfig, Secret};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read http.auth.{key} {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("http.auth.{key} is empty")]
    Empty { key: &'static str },
    #[error("http.auth.basic_username and a basic password go together: set both or neither")]
    BasicHalf,
}

/// The pages' access rule, built once at start.
#[derive(Debug, Clone)]
pub struct Access {
    pages: bool,
    bearer: Option<Secret>,
    basic: Option<(String, Secret)>,
}

impl Access {
    /// Pages served to anyone (the default, and what tests without auth use).
    pub fn open() -> Self {
        Self {
            pages: true,
            bearer: None,
            basic: None,
        }
    }

    /// From `http.pages` and `http.auth`; credential files are read here, once.
    pub fn from_config(cfg: &HttpConfig) -> Result<Self, AccessError> {
        let a: &HttpAuthConfig = &cfg.auth;
        let bearer = secret_from(
            "bearer_token",
            a.bearer_token.as_ref(),
            a.bearer_token_file.as_deref(),
        )?;
        let password = secret_from(
            "basic_password",
            a.basic_password.as_ref(),
            a.basic_password_file.as_deref(),
        )?;
        let basic = match (&a.basic_username, password) {
            (Some(user), Some(pw)) => Some((user.clone(), pw)),
            (None, None) => None,
            _ => return Err(AccessError::BasicHalf),
        };
        Ok(Self {
            pages: cfg.pages,
            bearer,
            basic,
        })
    }

    pub fn serves_pages(&self) -> bool {
        self.pages
    }

    /// Whether credentials are required at all.
    pub fn requires_auth(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Whether the request's `Authorization` header satisfies one configured scheme, or it
    /// carries the dashboard's session cookie ([`SESSION_COOKIE`]).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        self.who(headers).is_some()
    }

    /// Who the request authenticates as, for the audit line of a write action: `basic user
    /// NAME`, `bearer token`, `session cookie`, or `anonymous` when no credentials are
    /// configured. `None` when it does not authenticate.
    pub fn who(&self, headers: &HeaderMap) -> Option<String> {
        if !self.requires_auth() {
            return Some("anonymous".into());
        }
        if let (Some(expected), Some(got)) = (self.session_value(), cookie(headers, SESSION_COOKIE))
        {
            if same(expected.as_bytes(), got.as_bytes()) {
                return Some("session cookie".into());
            }
        }
        if !self.allows_header(headers) {
            return None;
        }
        let basic_user = self.basic.as_ref().map(|(u, _)| u.as_str());
        let scheme = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .map(|(s, _)| s.to_ascii_lowercase());
        Some(match (scheme.as_deref(), basic_user) {
            (Some("basic"), Some(user)) => format!("basic user {user}"),
            _ => "bearer token".into(),
        })
    }

    /// Whether `token` is the configured bearer token (the dashboard's login form).
    pub fn is_bearer_token(&self, token: &str) -> bool {
        self.bearer
            .as_ref()
            .is_some_and(|t| same(t.expose().as_bytes(), token.as_bytes()))
    }

    /// The session cookie's value when a bearer token is configured: a hash of the token, so
    /// the cookie is worth no more than the token and changes with it, and the token itself
    /// never sits in the browser.
    pub fn session_value(&self) -> Option<String> {
        use sha2::Digest as _;
        let token = self.bearer.as_ref()?;
        let mut h = sha2::Sha256::new();
        h.update(b"nightcrier dashboard session\0");
        h.update(token.expose().as_bytes());
        Some(hex::encode(h.finalize()))
    }

    fn allows_header(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .bearer
                .as_ref()
                .is_some_and(|t| same(t.expose().as_bytes(), rest.as_bytes()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pw)) = &self.basic else {
                return false;
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                return false;
            };
            let expected = format!("{user}:{}", pw.expose());
            return same(expected.as_bytes(), &decoded);
        }
        false
    }

    fn challenge(&self) -> HeaderValue {
        HeaderValue::from_static(if self.basic.is_some() {
            "Basic realm=\"nightcrier\", charset=\"UTF-8\""
        } else {
            "Bearer realm=\"nightcrier\""
        })
    }
}

/// The dashboard's session cookie, set by its login form (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "nightcrier_session";

/// The value of cookie `name` in the request, if any.
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Compares without stopping at the first difference, so the time taken does not tell an
/// attacker how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn secret_from(
    key: &'static str,
    inline: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, AccessError> {
    let value = match (file, inline) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| AccessError::File {
                key: if key == "bearer_token" {
                    "bearer_token_file"
                } else {
                    "basic_password_file"
                },
                path: path.to_path_buf(),
                source,
            })?;
            Secret::new(text.trim_end_matches(['\n', '\r']))
        }
        (None, Some(s)) => s.clone(),
        (None, None) => return Ok(None),
    };
    if value.expose().is_empty() {
        return Err(AccessError::Empty { key });
    }
    Ok(Some(value))
}

/// The incident pages with the access rule applied; no routes at all with `http.pages: false`.
pub(super) fn pages(state: &HttpState) -> Router<HttpState> {
    if !state.access.serves_pages() {
        return Router::new();
    }
    let pages = super::incidents::routes().merge(super::dashboard::routes());
    let pages = if state.access.requires_auth() {
        pages.route_layer(axum::middleware::from_fn_with_state(state.clone(), require))
    } else {
        pages
    };
    pages.merge(super::dashboard::public_routes())
}

async fn require(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    if state.access.allows(req.headers()) {
        return next.run(req).await;
    }
    // A browser on the dashboard without a session: to the login form, when a token is what
    // it needs (basic credentials are asked for by the browser itself, on the challenge).
    if state.access.bearer.is_some()
        && state.access.basic.is_none()
        && req.method() == axum::http::Method::GET
        && req.uri().path().starts_with("/dashboard")
        && !req.uri().path().ends_with("/stream")
    {
        return axum::response::Redirect::to("/dashboard/login").into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, state.access.challenge())],
        "authentication required\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_are_checked_exactly() {
        let a = Access {
            pages: true,
            bearer: Some(Secret::new("t0ken")),
            basic: Some(("ops".into(), Secret::new("pw"))),
        };
        assert!(a.allows(&with("Bearer t0ken")));
        assert!(!a.allows(&with("Bearer t0ke")));
        assert!(a.allows(&with("Basic b3BzOnB3"))); // ops:pw
        assert!(!a.allows(&with("Basic b3BzOnB4"))); // ops:px
        assert!(!a.allows(&HeaderMap::new()));
        assert!(Access::open().allows(&HeaderMap::new()));
    }
}
