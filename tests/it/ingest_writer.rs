//! The ingest write path on a real SQLite file: group commit in arrival order, triage-disabled
//! clusters, the exact buffer bound, faults the database rejects, connection states, and the
//! drain on shutdown.

use crate::support::common;
use crate::support::ingest as ingest_support;

use std::time::Duration;

use chrono::Utc;
use nightcrier::config::IngestConfig;
use nightcrier::health::Health;
use nightcrier::incident::{ConnectionState, IncidentStatus};
use nightcrier::ingest::{build, channel, IngestWriter, StepReport, WriterOptions};
use nightcrier::store::{ListFilter, Store};
use nightcrier::telemetry::install_metrics_recorder;
use tokio_util::sync::CancellationToken;

use ingest_support::{expected, interleaved, prom, seq_fault, stored, wait_until};

fn options() -> WriterOptions {
    WriterOptions {
        batch_max: 100,
        ..WriterOptions::default()
    }
}

async fn incidents(store: &Store) -> Vec<nightcrier::incident::Incident> {
    store
        .list(&ListFilter {
            limit: Some(10_000),
            ..ListFilter::default()
        })
        .await
        .unwrap()
}

fn state(cluster: &str, state: &str, received: i64) -> ConnectionState {
    ConnectionState {
        cluster: cluster.into(),
        state: state.parse().unwrap(),
        subscription_id: Some(format!("sub-{received}")),
        last_error: None,
        last_event_at: None,
        events_received: received,
        events_malformed: 0,
        reconnects: 0,
        updated_at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_writes_every_fault_in_arrival_order() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(10_000);
    let health = Health::new();
    let writer = IngestWriter::new(rx, store.clone(), health.clone(), options());
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));

    let offered = interleaved(2_000, &["alpha", "beta", "gamma"], 5);
    for f in &offered {
        assert!(tx.offer(f.clone()), "the buffer has room");
    }
    wait_until("every fault written", Duration::from_secs(60), async || {
        tx.depth() == 0
    })
    .await;
    token.cancel();
    task.await.unwrap();

    assert_eq!(stored(&store).await, expected(&offered));
    let incidents = incidents(&store).await;
    assert_eq!(incidents.len(), 15, "3 clusters × 5 fault ids");
    assert!(incidents
        .iter()
        .all(|i| i.status == IncidentStatus::Pending));
    assert_eq!(tx.dropped(), 0);
    assert!(!health.is_ingest_degraded());
    assert!(health.ingest().last_successful_write.is_some());

    // Group commit: far fewer transactions than faults.
    let exp = prom::parse(&metrics.render()).unwrap();
    let commits = exp
        .value("nightcrier_db_write_duration_seconds_count", &[])
        .unwrap();
    assert!(
        (20.0..=1_000.0).contains(&commits),
        "2000 faults in batches of at most 100 took {commits} commits"
    );
    for cluster in ["alpha", "beta", "gamma"] {
        let created = exp.value(
            "nightcrier_incidents_created_total",
            &[("cluster", cluster)],
        );
        let dedup = exp.value(
            "nightcrier_events_deduplicated_total",
            &[("cluster", cluster)],
        );
        let received = offered.iter().filter(|f| f.cluster == cluster).count();
        assert_eq!(created, Some(5.0), "{cluster}");
        assert_eq!(dedup, Some(received as f64 - 5.0), "{cluster}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_a_triage_disabled_cluster_are_recorded_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, writer) = build(&IngestConfig::default(), store.clone(), Health::new(), None);

    let mut quiet = seq_fault("quiet", "q1", 0);
    quiet.triage_enabled = false;
    let mut quiet_again = seq_fault("quiet", "q1", 1);
    quiet_again.triage_enabled = false;
    for f in [quiet, quiet_again, seq_fault("loud", "l1", 2)] {
        assert!(tx.offer(f));
    }
    let report = writer.run_once(&CancellationToken::new()).await;
    assert_eq!(
        report,
        StepReport {
            written: 3,
            created: 2,
            ..StepReport::default()
        }
    );
    let by_cluster: Vec<(String, IncidentStatus, i64)> = {
        let mut v: Vec<_> = incidents(&store)
            .await
            .into_iter()
            .map(|i| (i.cluster, i.status, i.occurrences))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(
        by_cluster,
        [
            ("loud".to_string(), IncidentStatus::Pending, 1),
            ("quiet".to_string(), IncidentStatus::Skipped, 2),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_exactly_the_overflow_and_counts_it_per_cluster() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(50);
    let writer = IngestWriter::new(rx, store.clone(), Health::new(), options());

    // No writer running: the buffer fills up.
    let offered = interleaved(80, &["east", "west"], 4);
    let accepted: Vec<bool> = offered.iter().map(|f| tx.offer(f.clone())).collect();
    assert!(accepted[..50].iter().all(|a| *a), "the first 50 fit");
    assert!(accepted[50..].iter().all(|a| !*a), "the next 30 do not");
    assert_eq!(tx.dropped(), 30);
    assert_eq!(tx.depth(), 50);

    let exp = prom::parse(&metrics.render()).unwrap();
    for cluster in ["east", "west"] {
        assert_eq!(
            exp.value("nightcrier_events_dropped_total", &[("cluster", cluster)]),
            Some(15.0)
        );
    }
    assert_eq!(exp.value("nightcrier_ingest_buffer_depth", &[]), Some(50.0));

    let report = writer.run_once(&CancellationToken::new()).await;
    assert_eq!(report.written, 50);
    assert_eq!(stored(&store).await, expected(&offered[..50]));
    assert_eq!(tx.depth(), 0);
    let exp = prom::parse(&metrics.render()).unwrap();
    assert_eq!(exp.value("nightcrier_ingest_buffer_depth", &[]), Some(0.0));
    // Room again once written.
    assert!(tx.offer(seq_fault("east", "f0", 80)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_the_database_rejects_is_dropped_alone() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(100);
    let writer = IngestWriter::new(rx, store.clone(), Health::new(), options());

    let mut bad = seq_fault("c1", "will-be-emptied", 1);
    bad.fault.fault_id = String::new();
    let mut nul = seq_fault("c1", "nul", 3);
    nul.fault.fault_type = "Crash\0Loop".into();
    let good = [
        seq_fault("c1", "a", 0),
        seq_fault("c1", "b", 2),
        seq_fault("c1", "a", 4),
    ];
    for f in [good[0].clone(), bad, good[1].clone(), nul, good[2].clone()] {
        assert!(tx.offer(f));
    }
    let report = writer.run_once(&CancellationToken::new()).await;
    assert_eq!(report.written, 3);
    assert_eq!(report.rejected, 2);
    assert_eq!(stored(&store).await, expected(&good));
    assert_eq!(tx.depth(), 0);
    let exp = prom::parse(&metrics.render()).unwrap();
    assert_eq!(
        exp.value(
            "nightcrier_events_malformed_total",
            &[("cluster", "c1"), ("reason", "rejected_by_database")]
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_connection_state_of_each_cluster_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(100);
    let writer = IngestWriter::new(rx, store.clone(), Health::new(), options());

    tx.report_state(state("a", "connecting", 0));
    tx.report_state(state("b", "connecting", 0));
    tx.report_state(state("a", "subscribed", 1));
    tx.report_state(state("a", "backing_off", 7));
    let report = writer.run_once(&CancellationToken::new()).await;
    assert_eq!(
        report.states_saved, 2,
        "one row per cluster, superseded ones skipped"
    );
    let mut saved: Vec<(String, String, i64)> = store
        .connection_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.cluster, s.state.to_string(), s.events_received))
        .collect();
    saved.sort();
    assert_eq!(
        saved,
        [
            ("a".to_string(), "backing_off".to_string(), 7),
            ("b".to_string(), "connecting".to_string(), 0),
        ]
    );
    // Nothing new: nothing saved.
    assert_eq!(
        writer
            .run_once(&CancellationToken::new())
            .await
            .states_saved,
        0
    );

    // The running writer saves states without any fault arriving.
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));
    tx.report_state(state("b", "subscribed", 3));
    wait_until("b's new state", Duration::from_secs(10), async || {
        store
            .connection_states()
            .await
            .unwrap()
            .iter()
            .any(|s| s.cluster == "b" && s.state == "subscribed" && s.events_received == 3)
    })
    .await;
    token.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_writes_everything_received_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(10_000);
    // A long linger: without the drain, the batch being filled at the stop would be lost.
    let opts = WriterOptions {
        batch_linger: Duration::from_secs(30),
        ..options()
    };
    let writer = IngestWriter::new(rx, store.clone(), Health::new(), opts);
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));

    let offered = interleaved(1_234, &["x", "y"], 7);
    for f in &offered {
        assert!(tx.offer(f.clone()));
    }
    tx.report_state(state("x", "stopped", 617));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the drain ends")
        .unwrap();

    assert_eq!(stored(&store).await, expected(&offered));
    assert_eq!(tx.depth(), 0);
    let states = store.connection_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].state, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_degrades_ingest_and_the_drain_gives_up_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let (tx, rx) = channel(100);
    let health = Health::new();
    let opts = WriterOptions {
        drain_timeout: Duration::from_millis(500),
        ..options()
    };
    let writer = IngestWriter::new(rx, store.clone(), health.clone(), opts);
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));

    store.close().await;
    for i in 0..10 {
        assert!(tx.offer(seq_fault("c", "f", i)));
    }
    wait_until(
        "ingest to be degraded",
        Duration::from_secs(10),
        async || health.is_ingest_degraded(),
    )
    .await;
    let ingest = health.ingest();
    assert_eq!(ingest.degraded_episodes, 1);
    assert!(ingest.last_error.is_some_and(|e| e.contains("closed")));
    assert_eq!(tx.depth(), 10, "held, not dropped");
    assert_eq!(tx.dropped(), 0);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the drain gives up at its deadline")
        .unwrap();
    assert_eq!(tx.depth(), 10);
}
