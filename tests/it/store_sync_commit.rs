//! `database.ingest_synchronous_commit`: the key's values, and ingest on a real PostgreSQL with
//! each setting (every fault is recorded and dedup holds, the setting changes only when the
//! commit returns).

use crate::support::common;

use nightcrier::config::{from_str_with_env, SynchronousCommit};
use nightcrier::incident::IncidentStatus;

use common::{fault, TestDb};

fn load(yaml: &str) -> Result<SynchronousCommit, String> {
    from_str_with_env(yaml, "test.yaml", Vec::<(String, String)>::new())
        .map(|l| l.config.database.ingest_synchronous_commit)
        .map_err(|e| e.to_string())
}

#[test]
fn the_key_takes_on_and_off_and_defaults_to_on() {
    assert_eq!(
        load("database: {url: 'sqlite://x.db'}"),
        Ok(SynchronousCommit::On)
    );
    assert_eq!(
        load("database: {url: 'sqlite://x.db', ingest_synchronous_commit: off}"),
        Ok(SynchronousCommit::Off)
    );
    assert_eq!(
        load("database: {url: 'sqlite://x.db', ingest_synchronous_commit: on}"),
        Ok(SynchronousCommit::On)
    );
    let err = load("database: {url: 'sqlite://x.db', ingest_synchronous_commit: later}")
        .expect_err("an unknown value is refused");
    assert!(
        err.contains("later") || err.contains("ingest_synchronous_commit"),
        "the error names what is wrong: {err}"
    );
}

#[tokio::test]
async fn postgres_records_every_fault_with_either_setting() {
    let db = TestDb::postgres().await;
    for on in [false, true] {
        let store = db.store().await;
        store.set_ingest_synchronous_commit(on);
        assert_eq!(store.ingest_synchronous_commit(), on);
        let cluster = if on { "sync-on" } else { "sync-off" };
        let batch: Vec<_> = (0..20)
            .map(|i| fault(cluster, &format!("f{}", i % 5)))
            .collect();
        let recorded = store.record_faults(&batch).await.expect("recorded");
        assert_eq!(recorded.len(), 20);
        assert_eq!(
            recorded.iter().filter(|r| r.created).count(),
            5,
            "five distinct faults open five incidents"
        );
        let counts = store.status_counts().await.expect("counts");
        let pending: i64 = counts
            .iter()
            .filter(|c| c.cluster == cluster && c.status == IncidentStatus::Pending)
            .map(|c| c.count)
            .sum();
        assert_eq!(pending, 5);
        // The next batch sees the previous one's commit (asynchronous commit is visible at once).
        let again = store
            .record_faults(&[fault(cluster, "f0")])
            .await
            .expect("recorded");
        assert!(
            !again[0].created,
            "the repeat attaches to the open incident"
        );
        store.close().await;
    }
}
