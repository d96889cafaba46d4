//! The Alertmanager receiver over real loopback HTTP on a real store: authentication, the
//! mapping, resolved alerts, Grafana's variant, bad and oversized bodies, unknown clusters, and
//! the 503 answer while PostgreSQL is down.

use crate::support::common;

use std::path::Path;

use nightcrier::config::{AlertmanagerIntakeConfig, IntakeAuthConfig, Secret};
use nightcrier::http::HttpServer;
use nightcrier::incident::IncidentStatus;
use nightcrier::intake::alertmanager::Clusters;
use nightcrier::intake::{AlertmanagerIntake, Credentials, ALERTMANAGER_PATH};
use nightcrier::store::{ListFilter, Store};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use common::TestDb;

const TOKEN: &str = "am-test-token";

struct Receiver {
    url: String,
    client: reqwest::Client,
    token: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn config(max_body_bytes: usize) -> AlertmanagerIntakeConfig {
    AlertmanagerIntakeConfig {
        auth: IntakeAuthConfig {
            bearer_token: Some(Secret::new(TOKEN)),
            ..Default::default()
        },
        max_body_bytes,
        cancel_running_on_resolve: true,
        mapping: Default::default(),
    }
}

async fn start_with(store: Store, cfg: &AlertmanagerIntakeConfig) -> Receiver {
    let clusters = Clusters::new(
        [("prod".to_string(), true), ("lab".to_string(), true)],
        cfg.mapping.default_cluster.clone(),
    );
    let intake = AlertmanagerIntake::new(store, Credentials::bearer(TOKEN), clusters, cfg);
    let server = HttpServer::bind_routes("127.0.0.1:0", intake.router())
        .await
        .unwrap();
    let url = format!("http://{}{ALERTMANAGER_PATH}", server.local_addr());
    let token = CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    Receiver {
        url,
        client: reqwest::Client::new(),
        token,
    }
}

async fn start(store: Store) -> Receiver {
    start_with(store, &config(1024 * 1024)).await
}

impl Receiver {
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post_as(Some(TOKEN), body).await
    }

    async fn post_as(&self, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn alert(status: &str, fingerprint: &str, cluster: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "KubePodCrashLooping", "cluster": cluster, "namespace": "shop",
                   "pod": format!("cart-{fingerprint}"), "severity": "critical"},
        "annotations": {"summary": "Pod is crash looping",
                        "runbook_url": "https://runbooks.example/KubePodCrashLooping"},
        "startsAt": "2026-12-01T10:00:00Z",
        "endsAt": if status == "resolved" { "2026-12-01T10:05:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    })
}

fn webhook(alerts: Vec<Value>) -> String {
    json!({
        "version": "4", "receiver": "nightcrier", "status": "firing",
        "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}", "truncatedAlerts": 0,
        "groupLabels": {"alertname": "KubePodCrashLooping"}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    })
    .to_string()
}

async fn incidents(store: &Store) -> Vec<nightcrier::incident::Incident> {
    store.list(&ListFilter::default()).await.unwrap()
}

#[tokio::test]
async fn firing_alerts_become_incidents_and_repeats_attach() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start(store.clone()).await;

    let body = webhook(vec![
        alert("firing", "aaaa000000000001", "prod"),
        alert("firing", "aaaa000000000002", "lab"),
    ]);
    let (status, answer) = r.post(body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["summary"]["created"], 2);
    let list = incidents(&store).await;
    assert_eq!(list.len(), 2);
    let prod = list.iter().find(|i| i.cluster == "prod").unwrap();
    assert_eq!(prod.fault_id, "am-aaaa000000000001");
    assert_eq!(prod.fault_type, "KubePodCrashLooping");
    assert_eq!(
        (prod.resource_kind.as_str(), prod.resource_name.as_str()),
        ("Pod", "cart-aaaa000000000001")
    );
    assert_eq!(prod.status, IncidentStatus::Pending);
    assert!(prod
        .context
        .contains("Runbook: https://runbooks.example/KubePodCrashLooping"));
    assert!(prod
        .context
        .contains("Source (generatorURL): http://prometheus:9090/graph?g0.expr=up"));
    let occ = store.occurrences(prod.id, 10).await.unwrap();
    assert_eq!(
        occ[0].raw["fingerprint"], "aaaa000000000001",
        "the alert is kept as received"
    );

    // Alertmanager repeats a group at repeat_interval: the same incidents, one more occurrence.
    let (status, answer) = r.post(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["summary"]["recorded"].as_u64(),
            answer["summary"]["created"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let list = incidents(&store).await;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|i| i.occurrences == 2));
}

#[tokio::test]
async fn a_resolved_alert_ends_its_pending_incident() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start(store.clone()).await;
    r.post(webhook(vec![alert("firing", "bbbb000000000001", "prod")]))
        .await;

    let (status, answer) = r
        .post(webhook(vec![alert("resolved", "bbbb000000000001", "prod")]))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["summary"]["resolved"], 1);
    let inc = &incidents(&store).await[0];
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(
        inc.resolved_at.map(|t| t.to_rfc3339()),
        Some("2026-12-01T10:05:00+00:00".to_string())
    );
    assert!(store.agent_runs(inc.id).await.unwrap().is_empty());

    // A resolved alert nobody saw firing changes nothing.
    let (status, answer) = r
        .post(webhook(vec![alert("resolved", "ffff000000000009", "prod")]))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["summary"]["resolved_unmatched"], 1);
    assert_eq!(incidents(&store).await.len(), 1);
}

#[tokio::test]
async fn grafana_payloads_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start(store.clone()).await;
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts/grafana.json"),
    )
    .unwrap();
    let (status, answer) = r.post(fixture).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["summary"]["created"], 1);
    assert_eq!(answer["summary"]["resolved_unmatched"], 1);
    let inc = &incidents(&store).await[0];
    assert_eq!(inc.fault_id, "am-9b6f3a1c2d4e5f60");
    assert_eq!(inc.fault_type, "High memory usage");
    assert_eq!(
        (inc.resource_kind.as_str(), inc.resource_name.as_str()),
        ("Deployment", "cart")
    );
    for line in [
        "Summary: cart uses 97% of its memory limit",
        "Runbook: https://runbooks.example/memory",
        "Dashboard: https://grafana.example/d/k8s-cart?orgId=1",
        "Panel: https://grafana.example/d/k8s-cart?orgId=1&viewPanel=4",
        "Values: [ var='B' labels={deployment=cart} value=0.97 ]",
    ] {
        assert!(
            inc.context.contains(line),
            "{line:?} missing from\n{}",
            inc.context
        );
    }
}

#[tokio::test]
async fn requests_without_the_token_are_refused_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start(store.clone()).await;
    let body = webhook(vec![alert("firing", "cccc000000000001", "prod")]);
    let (status, answer) = r.post_as(None, body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = r.post_as(Some("wrong"), body).await;
    assert_eq!(status, 401, "{answer}");
    assert!(!answer.to_string().contains(TOKEN));
    assert!(incidents(&store).await.is_empty());
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_the_reason_and_lose_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start_with(store.clone(), &config(4096)).await;

    let (status, answer) = r.post("{not json").await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("not an Alertmanager webhook payload"));
    let (status, answer) = r.post(r#"{"receiver":"x"}"#).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("alerts"),
        "{answer}"
    );
    let mut bad = alert("firing", "dddd000000000001", "prod");
    bad["status"] = json!("burning");
    let (status, answer) = r
        .post(webhook(vec![
            alert("firing", "dddd000000000002", "prod"),
            bad,
        ]))
        .await;
    assert_eq!(status, 400);
    let reason = answer["error"].as_str().unwrap();
    assert!(
        reason.contains("alerts[1].status") && reason.contains("burning"),
        "{reason}"
    );
    assert!(
        incidents(&store).await.is_empty(),
        "a bad request records nothing"
    );

    let mut big = alert("firing", "dddd000000000003", "prod");
    big["annotations"]["description"] = json!("x".repeat(5000));
    let (status, answer) = r.post(webhook(vec![big])).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("4096 bytes"));

    // The receiver is unharmed.
    let (status, _) = r
        .post(webhook(vec![alert("firing", "dddd000000000004", "prod")]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(incidents(&store).await.len(), 1);
}

#[tokio::test]
async fn unknown_clusters_are_rejected_or_mapped_to_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let r = start(store.clone()).await;
    let (status, answer) = r
        .post(webhook(vec![
            alert("firing", "eeee000000000001", "nowhere"),
            alert("firing", "eeee000000000002", "prod"),
        ]))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["summary"]["rejected"][0]["index"], 0);
    assert!(answer["summary"]["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("\"nowhere\""));
    let list = incidents(&store).await;
    assert_eq!(list.len(), 1, "the known cluster's alert was recorded");
    assert_eq!(list[0].cluster, "prod");

    let mut cfg = config(1024 * 1024);
    cfg.mapping.default_cluster = Some("lab".into());
    let r = start_with(store.clone(), &cfg).await;
    let (status, answer) = r
        .post(webhook(vec![alert(
            "firing",
            "eeee000000000003",
            "nowhere",
        )]))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(incidents(&store).await.iter().any(|i| i.cluster == "lab"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_answers_503_while_the_database_is_down() {
    let db = TestDb::postgres().await;
    let mut opts = db.options();
    opts.acquire_timeout = std::time::Duration::from_secs(1);
    let store = db.store_with(opts).await;
    let r = start(store.clone()).await;
    let server = db.pg_server().expect("PostgreSQL");
    assert!(
        server.can_restart(),
        "this test stops its own PostgreSQL server"
    );

    server.stop_async().await;
    let body = webhook(vec![alert("firing", "ffff000000000001", "prod")]);
    let (status, answer) = r.post(body.clone()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("retry"));

    server.start_again_async().await;
    // Alertmanager's retry after the outage.
    let mut status = 0;
    for _ in 0..50 {
        status = r.post(body.clone()).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(incidents(&store).await.len(), 1);
}
