//! The credentials a webhook request must carry: a bearer token and/or HTTP basic auth, the two
//! ways Alertmanager's `http_config` authenticates.

use std::path::Path;

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::IntakeError;
use crate::config::{IntakeAuthConfig, Secret};

/// Accepted credentials, secrets read from files at start.
#[derive(Debug, Clone)]
pub struct Credentials {
    bearer: Option<Secret>,
    /// The whole `user:password` pair, as basic auth sends it (base64-decoded).
    basic: Option<Secret>,
}

impl Credentials {
    pub fn from_config(cfg: &IntakeAuthConfig) -> Result<Self, IntakeError> {
        let bearer = match (&cfg.bearer_token, &cfg.bearer_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_secret("bearer_token_file", path)?),
            (None, None) => None,
        };
        let basic = match &cfg.basic {
            Some(b) => {
                let password = match (&b.password, &b.password_file) {
                    (Some(p), _) => p.clone(),
                    (None, Some(path)) => read_secret("basic.password_file", path)?,
                    (None, None) => {
                        return Err(IntakeError::Auth(
                            "basic needs password or password_file".into(),
                        ))
                    }
                };
                Some(Secret::new(format!("{}:{}", b.username, password.expose())))
            }
            None => None,
        };
        if bearer.is_none() && basic.is_none() {
            return Err(IntakeError::Auth(
                "credentials are required: bearer_token, bearer_token_file or basic".into(),
            ));
        }
        Ok(Self { bearer, basic })
    }

    /// A bearer token only (tests, the demo).
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            bearer: Some(Secret::new(token)),
            basic: None,
        }
    }

    /// True when the `Authorization` header carries one of the accepted credentials.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .bearer
                .as_ref()
                .is_some_and(|t| same(t.expose().as_bytes(), rest.as_bytes()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(expected) = &self.basic else {
                return false;
            };
            return base64::engine::general_purpose::STANDARD
                .decode(rest)
                .is_ok_and(|pair| same(expected.expose().as_bytes(), &pair));
        }
        false
    }
}

/// Compares digests, so the time taken does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a) == Sha256::digest(b)
}

fn read_secret(key: &'static str, path: &Path) -> Result<Secret, IntakeError> {
    let text = std::fs::read_to_string(path).map_err(|source| IntakeError::ReadSecret {
        key,
        path: path.display().to_string(),
        source,
    })?;
    let value = text.trim_end();
    if value.is_empty() {
        return Err(IntakeError::EmptySecret {
            key,
            path: path.display().to_string(),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicAuthConfig;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        h
    }

    #[test]
    fn bearer_and_basic_are_checked_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let creds = Credentials::from_config(&IntakeAuthConfig {
            bearer_token: Some(Secret::new("tok")),
            bearer_token_file: None,
            basic: Some(BasicAuthConfig {
                username: "am".into(),
                password: None,
                password_file: Some(file),
            }),
        })
        .expect("credentials");
        assert!(creds.allows(&headers("Bearer tok")));
        assert!(!creds.allows(&headers("Bearer tok2")));
        assert!(!creds.allows(&headers("Bearer ")));
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(creds.allows(&headers(&format!("Basic {}", b64.encode("am:s3cret")))));
        assert!(!creds.allows(&headers(&format!("Basic {}", b64.encode("am:wrong")))));
        assert!(!creds.allows(&headers("Basic !!notbase64")));
        assert!(!creds.allows(&HeaderMap::new()));
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn a_missing_or_empty_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let cfg = |p: std::path::PathBuf| IntakeAuthConfig {
            bearer_token_file: Some(p),
            ..Default::default()
        };
        let err = Credentials::from_config(&cfg(empty)).expect_err("empty");
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = Credentials::from_config(&cfg(dir.path().join("nope"))).expect_err("missing");
        assert!(err.to_string().contains("bearer_token_file"), "{err}");
    }
}
