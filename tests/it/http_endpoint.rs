//! The HTTP endpoint over real loopback TCP: liveness, readiness (database and ingest), and
//! `/metrics` in Prometheus text format counting what this process did.

use crate::support::common;
use crate::support::ingest as ingest_support;

use std::time::Duration;

use nightcrier::config::HttpConfig;
use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::ingest::{channel, IngestWriter, WriterOptions};
use nightcrier::telemetry::install_metrics_recorder;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use ingest_support::interleaved;
use ingest_support::prom::{self, parse};

async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_reflect_what_happened() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let health = Health::new();
    let server = HttpServer::bind(
        "127.0.0.1:0",
        HttpState::new(store.clone(), health.clone(), metrics),
    )
    .await
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    let token = CancellationToken::new();
    let task = tokio::spawn(server.run(token.clone()));
    let client = reqwest::Client::new();

    let (status, _, body) = get(&client, format!("{base}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ready"
    );

    // Record faults in this process: 40 faults over 2 clusters × 4 ids, 10 of them dropped.
    let (tx, rx) = channel(30);
    let writer = IngestWriter::new(rx, store.clone(), health.clone(), WriterOptions::default());
    let offered = interleaved(40, &["red", "blue"], 4);
    for f in &offered {
        tx.offer(f.clone());
    }
    let report = writer.run_once(&CancellationToken::new()).await;
    assert_eq!((report.written, report.created), (30, 8));

    let (status, ctype, body) = get(&client, format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let exp = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let red = [("cluster", "red")];
    let blue = [("cluster", "blue")];
    assert_eq!(
        exp.value("nightcrier_incidents_created_total", &red),
        Some(4.0)
    );
    assert_eq!(
        exp.value("nightcrier_incidents_created_total", &blue),
        Some(4.0)
    );
    assert_eq!(
        exp.value("nightcrier_events_deduplicated_total", &red),
        Some(11.0)
    );
    assert_eq!(
        exp.value("nightcrier_events_deduplicated_total", &blue),
        Some(11.0)
    );
    assert_eq!(
        exp.value("nightcrier_events_dropped_total", &red),
        Some(5.0)
    );
    assert_eq!(
        exp.value("nightcrier_events_dropped_total", &blue),
        Some(5.0)
    );
    assert_eq!(exp.value("nightcrier_ingest_buffer_depth", &[]), Some(0.0));
    assert_eq!(
        exp.types["nightcrier_db_write_duration_seconds"],
        "histogram"
    );
    assert_eq!(
        exp.value("nightcrier_db_write_duration_seconds_count", &[]),
        Some(1.0),
        "one batch, one commit"
    );
    assert!(
        exp.value(
            "nightcrier_db_write_duration_seconds_bucket",
            &[("le", "0.0005")]
        )
        .is_some(),
        "database write buckets start at 0.5 ms:\n{body}"
    );
    assert!(body.contains("# HELP nightcrier_incidents_created_total Incidents opened"));

    // Ingest degraded: not ready, and the body says why.
    health.set_ingest_degraded("connection refused");
    let (status, ctype, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "not ready");
    let reasons = v["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with("ingest degraded since ") && reason.ends_with(": connection refused"),
        "{reason}"
    );
    health.record_write_ok();
    let (status, _, _) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 200);

    // Database gone: not ready, alive all the same.
    store.close().await;
    let (status, _, body) = get(&client, format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("database unreachable"), "{body}");
    let (status, _, _) = get(&client, format!("{base}/healthz")).await;
    assert_eq!(status, 200);

    // Shutdown closes the idle keep-alive connection instead of waiting out the grace.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("the server stops promptly")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_address_fails_clearly() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let state = HttpState::new(store, Health::new(), metrics);
    let first = HttpServer::bind("127.0.0.1:0", state.clone())
        .await
        .unwrap();
    let addr = first.local_addr().to_string();
    let err = HttpServer::bind(&addr, state.clone())
        .await
        .err()
        .expect("the second bind fails")
        .to_string();
    assert!(err.contains(&addr), "{err}");
    assert!(err.contains("http.listen"), "{err}");
    assert!(err.to_lowercase().contains("in use"), "{err}");

    let off = HttpConfig {
        listen: String::new(),
        ..HttpConfig::default()
    };
    assert!(HttpServer::bind_configured(&off, state.clone())
        .await
        .unwrap()
        .is_none());

    let err = HttpServer::bind("not-an-address", state)
        .await
        .err()
        .expect("a malformed address fails")
        .to_string();
    assert!(err.contains("\"not-an-address\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_not_found() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let server = HttpServer::bind("127.0.0.1:0", HttpState::new(store, Health::new(), metrics))
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let token = CancellationToken::new();
    let task = tokio::spawn(server.run(token.clone()));
    let (status, _, _) = get(&reqwest::Client::new(), format!("{base}/nope")).await;
    assert_eq!(status, 404);
    token.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn the_checker_rejects_what_it_should() {
    assert!(prom::parse("# TYPE a counter\na 1\n").is_ok());
    assert!(prom::parse("a 1\n").unwrap_err().contains("no # TYPE"));
    assert!(prom::parse("# TYPE a counter\na{x=\"1} 1\n").is_err());
    assert!(prom::parse("# TYPE a counter\na{x=\"1\"}1\n").is_err());
    assert!(prom::parse("# TYPE a counter\na one\n").is_err());
    assert!(prom::parse("# TYPE a nonsense\n").is_err());
    let h =
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n";
    assert!(prom::parse(h).unwrap_err().contains("cumulative"));
    let e = parse("# TYPE a gauge\na{c=\"x\\\"y\",d=\"\"} 1.5 1700000000\n").unwrap();
    assert_eq!(e.value("a", &[("c", "x\"y"), ("d", "")]), Some(1.5));
}
