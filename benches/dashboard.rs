//! The dashboard's incident list with 100,000 incidents: time to answer
//! `GET /dashboard/incidents` over loopback HTTP (store page + costs + rendering), on the first
//! page and on a deep one (the last page, reached by its keyset cursor), unfiltered and with a
//! cluster or status filter. SQLite (a file in a temporary directory) and PostgreSQL (a
//! throwaway server, or `NIGHTCRIER_TEST_POSTGRES_URL`).
//!
//! `cargo bench --bench dashboard` (both), `-- sqlite` or `-- postgres` for one,
//! `--incidents=N` for another count. Prints a table of per-request times.

#[path = "../tests/it/support/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::incident::RunStatus;
use nightcrier::store::{ClaimLimits, PageOrder, PageQuery, Store};
use tokio_util::sync::CancellationToken;

use common::{fault, TestDb};

/// Requests timed per row of the table.
const REQUESTS: usize = 50;
const CLUSTERS: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let named = |a: &str| args.iter().any(|x| x == a);
    let (sqlite_on, postgres_on) = match (named("sqlite"), named("postgres")) {
        (false, false) => (true, true),
        pair => pair,
    };
    let incidents: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--incidents="))
        .map(|n| n.parse().expect("--incidents=N takes a number"))
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        println!(
            "{:<9} {:<34} {:>6} {:>9} {:>9} {:>9}",
            "backend", "page", "rows", "p50 ms", "mean ms", "max ms"
        );
        if sqlite_on {
            run(&TestDb::sqlite(), incidents).await;
        }
        if postgres_on {
            run(&TestDb::postgres().await, incidents).await;
        }
    });
}

async fn fill(store: &Store, n: usize) {
    let started = Instant::now();
    let batch = 1000;
    for start in (0..n).step_by(batch) {
        let faults: Vec<_> = (start..(start + batch).min(n))
            .map(|k| {
                let mut f = fault(&format!("cluster-{}", k % CLUSTERS), &format!("f{k:07}"));
                if k % 3 == 0 {
                    f.fault.severity = "warning".into();
                }
                f
            })
            .collect();
        store
            .record_faults(&faults)
            .await
            .expect("recording faults");
    }
    // Some finished ones, for the status filter.
    let limits = ClaimLimits {
        max_concurrent_agents: 1000,
        max_agents_per_cluster: 1000,
        lease: Duration::from_secs(300),
    };
    for _ in 0..200 {
        let c = store.claim("bench", limits).await.unwrap().unwrap();
        let outcome = nightcrier::incident::RunOutcome {
            status: RunStatus::Failed,
            reason: Some("bench".into()),
            exit_code: Some(1),
        };
        store
            .complete(c.incident.id, c.attempt, &outcome)
            .await
            .unwrap();
    }
    eprintln!(
        "{}: {n} incidents recorded in {:.1} s",
        store.backend(),
        started.elapsed().as_secs_f64()
    );
}

/// The cursor that opens the last page of a newest-first listing with `filter`.
async fn last_page_cursor(store: &Store, filter: PageQuery) -> String {
    let oldest = store
        .incident_page(&PageQuery {
            order: PageOrder::OldestFirst,
            size: 51,
            ..filter
        })
        .await
        .unwrap();
    oldest.incidents.last().map(|i| i.id.to_string()).unwrap()
}

async fn run(db: &TestDb, n: usize) {
    let store = db.store().await;
    fill(&store, n).await;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let dir = tempfile::tempdir().unwrap();
    let state =
        HttpState::new(store.clone(), Health::new(), metrics).with_workspace_root(dir.path());
    let server = HttpServer::bind("127.0.0.1:0", state).await.unwrap();
    let base = format!("http://{}/dashboard/incidents", server.local_addr());
    let token = CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    let http = reqwest::Client::new();

    let deep = last_page_cursor(&store, PageQuery::default()).await;
    let cluster = PageQuery {
        cluster: Some("cluster-3".into()),
        ..PageQuery::default()
    };
    let deep_cluster = last_page_cursor(&store, cluster).await;
    let cases = [
        ("first page".to_string(), base.clone()),
        (
            format!("last page (row {n})"),
            format!("{base}?after={deep}"),
        ),
        (
            "cluster filter, first page".into(),
            format!("{base}?cluster=cluster-3"),
        ),
        (
            format!("cluster filter, last page (row {})", n / CLUSTERS),
            format!("{base}?cluster=cluster-3&after={deep_cluster}"),
        ),
        (
            "status=failed (200 of them)".into(),
            format!("{base}?status=failed"),
        ),
        (
            "severity=warning, first page".into(),
            format!("{base}?severity=warning"),
        ),
    ];
    for (name, url) in cases {
        let mut times = Vec::with_capacity(REQUESTS);
        let mut rows = 0;
        for _ in 0..REQUESTS {
            let t = Instant::now();
            let resp = http.get(&url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{url}");
            let body = resp.text().await.unwrap();
            times.push(t.elapsed());
            rows = body.matches("<tr data-id=").count();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
        println!(
            "{:<9} {:<34} {:>6} {:>9.2} {:>9.2} {:>9.2}",
            store.backend(),
            name,
            rows,
            ms(times[times.len() / 2]),
            mean,
            ms(times[times.len() - 1])
        );
    }
    token.cancel();
    store.close().await;
}
