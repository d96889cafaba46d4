//! Alertmanager intake: alerts per second accepted and durably recorded from one webhook client.
//! One client posts notifications one after the other (as one Alertmanager receiver does: it
//! waits for each answer), each answered only after the commit; every alert is new (a distinct
//! fingerprint), so each opens an incident. Reports notifications/s, alerts/s and the latency of
//! one notification, for 1 and 20 alerts per notification.
//!
//! `cargo bench --bench alertmanager -- [sqlite] [postgres] [--quick] [--notifications=N]`
//! (no mode: both backends).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use nightcrier::config::{AlertmanagerIntakeConfig, IntakeAuthConfig, Secret};
use nightcrier::http::HttpServer;
use nightcrier::intake::alertmanager::Clusters;
use nightcrier::intake::{AlertmanagerIntake, Credentials, ALERTMANAGER_PATH};
use serde_json::json;
use support::{ms, percentile, pg::PgServer, Args, Db};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let notifications = args.num("notifications", 2_000, 200);
        println!("alertmanager intake: one client, {notifications} notifications per row, every alert new");
        println!(
            "{:<9} {:>7} {:>10} {:>10} {:>10} {:>8} {:>8} {:>10}",
            "backend", "alerts/n", "seconds", "notif/s", "alerts/s", "p50 ms", "p99 ms", "incidents"
        );
        if args.wants("sqlite") {
            for per in [1, 20] {
                run(&Db::sqlite(), notifications, per).await;
            }
        }
        if args.wants("postgres") {
            let pg = PgServer::start_durable();
            for per in [1, 20] {
                run(&Db::postgres(&pg).await, notifications, per).await;
            }
        }
    });
}

async fn run(db: &Db, notifications: usize, per: usize) {
    let store = db.store().await;
    let cfg = AlertmanagerIntakeConfig::new(IntakeAuthConfig {
        bearer_token: Some(Secret::new(TOKEN)),
        ..IntakeAuthConfig::default()
    });
    let intake = AlertmanagerIntake::new(
        store.clone(),
        Credentials::bearer(TOKEN),
        Clusters::new([("prod".to_string(), true)], None),
        &cfg,
    );
    let server = HttpServer::bind_routes("127.0.0.1:0", intake.router())
        .await
        .expect("binding the receiver");
    let url = format!("http://{}{ALERTMANAGER_PATH}", server.local_addr());
    let token = CancellationToken::new();
    let task = tokio::spawn(server.run(token.clone()));
    let client = reqwest::Client::new();

    let bodies: Vec<Vec<u8>> = (0..notifications)
        .map(|n| {
            let alerts: Vec<_> = (0..per)
                .map(|i| {
                    json!({
                        "status": "firing",
                        "labels": {"alertname": "KubePodCrashLooping", "cluster": "prod",
                                   "namespace": "shop", "pod": format!("cart-{n}-{i}"),
                                   "severity": "critical"},
                        "annotations": {"summary": "Pod is crash looping",
                                        "runbook_url": "https://runbooks.example/crashloop"},
                        "startsAt": "2026-12-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                        "fingerprint": format!("{n:08x}{i:08x}"),
                    })
                })
                .collect();
            serde_json::to_vec(&json!({"version": "4", "receiver": "nightcrier",
                "status": "firing", "groupKey": "{}:{}", "alerts": alerts}))
            .expect("json")
        })
        .collect();

    let mut latencies = Vec::with_capacity(notifications);
    let start = Instant::now();
    for body in bodies {
        let t = Instant::now();
        let resp = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "the receiver refused a notification"
        );
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let incidents = db.count("incidents").await;
    assert_eq!(
        incidents,
        (notifications * per) as i64,
        "every alert is recorded"
    );
    println!(
        "{:<9} {:>7} {:>10.2} {:>10.0} {:>10.0} {:>8} {:>8} {:>10}",
        db.backend(),
        per,
        elapsed.as_secs_f64(),
        notifications as f64 / elapsed.as_secs_f64(),
        (notifications * per) as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        incidents
    );
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    store.close().await;
}
