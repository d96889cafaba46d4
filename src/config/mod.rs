//! Configuration: the YAML file, environment overrides, validation and redaction.
//!
//! This module owns the configuration's shape, its defaults and every rule about valid values.
//! It must not touch the network or the database.

mod load;
mod model;
mod secret;
mod validate;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use load::{
    from_str_with_env, load, ConfigError, LoadedConfig, DEFAULT_PATHS, ENV_PREFIX, ENV_SEPARATOR,
};
pub use model::*;
pub use secret::{redact_url, Secret, REDACTED};
pub use validate::{is_valid_cluster_name, Problem};

/// A database URL whose password never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `REDACTED`, safe for logs and errors.
    pub fn redacted(&self) -> String {
        secret::redact_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DatabaseUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_password_is_redacted() {
        let u = DatabaseUrl::new("postgres://app:hunter2@db:5432/nc");
        assert_eq!(u.redacted(), "postgres://app:REDACTED@db:5432/nc");
        assert!(!format!("{u} {u:?}").contains("hunter2"));
        assert_eq!(
            DatabaseUrl::new("sqlite://./data/x.db").redacted(),
            "sqlite://./data/x.db"
        );
    }
}

impl Config {
    /// The effective configuration as YAML with every secret redacted (`config check`).
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml_ng::to_string(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod load_tests;
