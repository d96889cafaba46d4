//! The webhook body: Alertmanager's version 4, and Grafana's variant of it (the same fields plus
//! `orgId`, `state`, `title`, `message`, and per alert `values`, `valueString`, `silenceURL`,
//! `dashboardURL`, `panelURL`). Unknown fields are ignored: both senders add fields over time.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The envelope. `alerts` stay JSON values so each alert's raw form is stored as received.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub external_url: String,
    /// Alerts Alertmanager left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// Grafana only.
    #[serde(default)]
    pub org_id: Option<i64>,
    pub alerts: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: AlertStatus,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` while firing with no end known.
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
    // Grafana's additions.
    #[serde(default)]
    pub value_string: String,
    #[serde(default, rename = "silenceURL")]
    pub silence_url: String,
    #[serde(default, rename = "dashboardURL")]
    pub dashboard_url: String,
    #[serde(default, rename = "panelURL")]
    pub panel_url: String,
}

/// Parses the body; the error names the offending field's path (`alerts[2].status: ...`).
pub fn parse(body: &[u8]) -> Result<(Webhook, Vec<Alert>), String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let hook: Webhook = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    let alerts = hook
        .alerts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_path_to_error::deserialize::<_, Alert>(v).map_err(|e| {
                let path = e.path().to_string();
                let at = if path == "." {
                    String::new()
                } else {
                    format!(".{path}")
                };
                format!("alerts[{i}]{at}: {}", e.inner())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((hook, alerts))
}
