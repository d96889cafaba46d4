//! `nightcrier demo --alertmanager`: the receiver turned on, and one Alertmanager-shaped alert
//! posted to it, the way Alertmanager's webhook would send it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{AlertmanagerIntakeConfig, Config, IntakeAuthConfig};
use crate::intake::ALERTMANAGER_PATH;

/// Where the demo keeps the receiver's token and the example payload.
pub fn token_file(dir: &Path) -> PathBuf {
    dir.join("alertmanager-token")
}

pub fn payload_file(dir: &Path) -> PathBuf {
    dir.join("alertmanager-alert.json")
}

/// Turns the receiver on (on `http.listen`) with a fresh token written to [`token_file`].
pub fn enable(config: &mut Config, dir: &Path) -> std::io::Result<()> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(token_file(dir), &token)?;
    std::fs::write(
        payload_file(dir),
        serde_json::to_string_pretty(&payload(&config.clusters[0].name)).unwrap_or_default(),
    )?;
    config.intake.alertmanager = Some(AlertmanagerIntakeConfig::new(IntakeAuthConfig {
        bearer_token_file: Some(token_file(dir)),
        ..IntakeAuthConfig::default()
    }));
    Ok(())
}

/// A webhook body as Alertmanager sends it (version 4) with one firing alert.
pub fn payload(cluster: &str) -> Value {
    json!({
        "version": "4",
        "receiver": "nightcrier",
        "status": "firing",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}",
        "truncatedAlerts": 0,
        "groupLabels": {"alertname": "KubePodCrashLooping"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "cluster": cluster},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "cluster": cluster,
                       "namespace": "shop", "pod": "checkout-5f7c9", "severity": "critical"},
            "annotations": {
                "summary": "Pod shop/checkout-5f7c9 is crash looping",
                "description": "checkout-5f7c9 restarted 6 times in 10 minutes",
                "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
            },
            "startsAt": chrono::Utc::now().to_rfc3339(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=kube_pod_container_status_restarts_total",
            "fingerprint": "d3m0a1e7c0ffee01"
        }]
    })
}

/// Posts [`payload_file`] to the receiver at `addr` once it answers (a few tries).
pub async fn post_example(addr: std::net::SocketAddr, dir: PathBuf) {
    let (Ok(token), Ok(body)) = (
        std::fs::read_to_string(token_file(&dir)),
        std::fs::read(payload_file(&dir)),
    ) else {
        return;
    };
    let client = reqwest::Client::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = client
            .post(format!("http://{addr}{ALERTMANAGER_PATH}"))
            .bearer_auth(token.trim())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!("demo: an Alertmanager alert was posted to the receiver");
                return;
            }
            Ok(r) => tracing::warn!(status = %r.status(), "demo: the receiver refused the alert"),
            Err(e) => tracing::debug!(error = %e, "demo: receiver not reachable yet"),
        }
    }
}
