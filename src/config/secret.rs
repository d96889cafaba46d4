//! A value that must never be printed: API keys, webhook URLs, header values, passwords; and
//! the one rule for printing a URL that may carry one ([`redact_url`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Shown as `<redacted>` by `Debug`, `Display` and `Serialize`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The real value, for the one place that must send it (an HTTP header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// What replaces a password or a secret query value in a redacted URL (plain letters, so the
/// URL stays a URL).
pub const URL_REDACTED: &str = "REDACTED";

/// Query parameter names (lowercase substrings) whose values are credentials: `password`,
/// `sslpassword`, `token`, `access_token`, `sig` (Azure SAS), `key`, `api_key`, `secret`,
/// `client_secret`, `auth`, `credential`, `X-Amz-Signature`...
const SECRET_QUERY_NAMES: &[&str] = &[
    "pass",
    "pwd",
    "token",
    "sig",
    "key",
    "secret",
    "auth",
    "credential",
    "session",
];

fn is_secret_query_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_NAMES.iter().any(|s| name.contains(s))
}

/// `url` safe for logs, errors, pages and `config check`: the userinfo password and the values
/// of query parameters that carry credentials become `REDACTED`. Every URL from the
/// configuration is printed through this one function. A URL that does not parse but may hold a
/// credential (`@` or a query) is replaced whole.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return if url.contains('@') || url.contains('?') {
            REDACTED.to_string()
        } else {
            url.to_string()
        };
    };
    let mut changed = false;
    if u.password().is_some() {
        // set_password only fails for URLs that cannot carry one, which this one did.
        let _ = u.set_password(Some(URL_REDACTED));
        changed = true;
    }
    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    if pairs.iter().any(|(k, _)| is_secret_query_name(k)) {
        let kept: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| {
                if is_secret_query_name(&k) {
                    (k, URL_REDACTED.to_string())
                } else {
                    (k, v)
                }
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(kept);
        changed = true;
    }
    if changed {
        u.to_string()
    } else {
        // Unchanged URLs are printed as written (`sqlite://./x.db` is not normalised).
        url.to_string()
    }
}

/// `serialize_with` for a URL field of the configuration (`config check`).
pub fn serialize_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// `serialize_with` for an optional URL field of the configuration.
pub fn serialize_opt_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_some(&redact_url(u)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_passwords_and_secret_query_values_only() {
        assert_eq!(
            redact_url("postgres://app@db:5432/nc?sslmode=require&password=hunter2"),
            "postgres://app@db:5432/nc?sslmode=require&password=REDACTED"
        );
        assert_eq!(
            redact_url("https://bob:pw1@mcp.example:8443/mcp?token=t0k&x=1"),
            "https://bob:REDACTED@mcp.example:8443/mcp?token=REDACTED&x=1"
        );
        assert_eq!(
            redact_url("https://acct.blob.core.windows.net/c?sv=2024&sig=abc%2Bdef&Access_Token=z"),
            "https://acct.blob.core.windows.net/c?sv=2024&sig=REDACTED&Access_Token=REDACTED"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(
            redact_url("http://127.0.0.1:8080/mcp"),
            "http://127.0.0.1:8080/mcp"
        );
        assert_eq!(redact_url("not a url @ pw"), REDACTED);
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"<redacted>\"")
        );
        assert_eq!(s.expose(), "sk-live-123");
    }
}
