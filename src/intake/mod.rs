//! Intake: receivers of alerts pushed by other systems (Prometheus Alertmanager and Grafana's
//! variant of its webhook), a producer beside `mcp` + `ingest`.
//!
//! This module owns the webhook endpoints, their authentication, and the mapping of an alert
//! onto the shared fault shape ([`crate::fault::ReceivedFault`]). It writes through the store
//! only (the same `record_faults` as MCP faults, so dedup, cooldown and claim limits are the
//! same) and answers after the write committed: the sender retries on failure, so nothing is
//! buffered here. It must not import the consumer (`worker`, `agent`).

pub mod alertmanager;
mod auth;

use thiserror::Error;

pub use alertmanager::{AlertmanagerIntake, ALERTMANAGER_PATH};
pub use auth::Credentials;

#[derive(Debug, Error)]
pub enum IntakeError {
    #[error("cannot read {key} from {path}: {source}")]
    ReadSecret {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} in {path} is empty")]
    EmptySecret { key: &'static str, path: String },
    #[error("intake.alertmanager.auth: {0}")]
    Auth(String),
    #[error("intake.listen: {0}")]
    Listen(#[source] crate::http::HttpError),
}

#[cfg(test)]
mod tests {
    use crate::config::{from_str_with_env, ConfigError};

    const BASE: &str =
        "clusters:\n  - name: prod\n    mcp: {endpoint: \"http://127.0.0.1:8080/mcp\"}\n";

    fn load(intake: &str) -> Result<crate::config::LoadedConfig, ConfigError> {
        from_str_with_env(&format!("{BASE}{intake}"), "t", Vec::new())
    }

    #[test]
    fn the_receiver_config_loads_and_config_check_redacts_its_secrets() {
        let l = load(
            "intake:\n  alertmanager:\n    auth:\n      bearer_token: tok-s3cret\n      \
             basic: {username: am, password: pw-s3cret}\n    mapping: {default_cluster: prod}\n",
        )
        .expect("valid");
        let am = l.config.intake.alertmanager.as_ref().expect("configured");
        assert_eq!(am.max_body_bytes, 1024 * 1024);
        assert!(am.cancel_running_on_resolve);
        assert_eq!(am.mapping.cluster_label, "cluster");
        let shown = l.config.to_redacted_yaml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("username: am"), "{shown}");
    }

    #[test]
    fn bad_receiver_configs_name_the_key() {
        for (yaml, key) in [
            ("intake:\n  alertmanager: {auth: {}}\n", "intake.alertmanager.auth"),
            (
                "intake:\n  alertmanager: {auth: {bearer_token: a, bearer_token_file: /f}}\n",
                "intake.alertmanager.auth",
            ),
            (
                "intake:\n  alertmanager: {auth: {basic: {username: u}}}\n",
                "intake.alertmanager.auth.basic",
            ),
            (
                "intake:\n  alertmanager: {auth: {bearer_token: a}, mapping: {default_cluster: nope}}\n",
                "intake.alertmanager.mapping.default_cluster",
            ),
            (
                "intake:\n  alertmanager: {auth: {bearer_token: a}, max_body_bytes: 0}\n",
                "intake.alertmanager.max_body_bytes",
            ),
            ("intake: {listen: nowhere}\n", "intake.listen"),
            (
                "http: {listen: \"\"}\nintake:\n  alertmanager: {auth: {bearer_token: a}}\n",
                "intake.listen",
            ),
        ] {
            let err = load(yaml).expect_err(yaml);
            let ConfigError::Invalid { problems, .. } = &err else {
                panic!("{yaml}: {err}")
            };
            assert!(
                problems.iter().any(|p| p.key == key),
                "{yaml}: expected a problem at {key}, got {problems:?}"
            );
        }
        let err = load("intake:\n  alertmanager: {auth: {bearer_token: a}, typo: 1}\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("typo"), "{err}");
    }
}
