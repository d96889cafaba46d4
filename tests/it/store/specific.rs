//! What only one backend has: URL handling, SQLite's file and pragmas, SQLite busy, PostgreSQL
//! outages and cross-process notifications.

use std::time::Duration;

use nightcrier::store::{Store, StoreError};

use crate::support::common::{fault, store_options, TestDb};

#[tokio::test]
async fn an_unknown_scheme_is_named_and_no_password_is_shown() {
    let err = Store::connect(store_options("mysql://app:hunter2@db/nc"))
        .await
        .expect_err("mysql is not supported");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert!(msg.contains("\"mysql\""), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_and_no_password_is_shown() {
    // Port 1 on loopback: nothing listens there.
    let mut opts = store_options("postgres://app:hunter2@127.0.0.1:1/nc");
    opts.acquire_timeout = Duration::from_secs(2);
    let err = Store::connect(opts)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn sqlite_creates_its_directory_and_uses_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep/er/nightcrier.db");
    let store = Store::connect(store_options(&format!("sqlite://{}", path.display())))
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.record_faults(&[fault("prod", "f1")]).await.unwrap();
    assert!(path.is_file());

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // The schema's foreign keys hold (the store turns enforcement on for its connections).
    let orphan = sqlx::query(
        "PRAGMA foreign_keys = ON; INSERT INTO agent_runs (incident_id, attempt, worker, started_at) \
         VALUES ('00000000-0000-0000-0000-000000000000', 1, 'w', 0)",
    )
    .execute(&pool)
    .await;
    assert!(orphan.is_err(), "an agent run needs its incident");
    // Also the `sqlite:` form without slashes.
    let rel = Store::connect(store_options(&format!(
        "sqlite:{}",
        dir.path().join("b.db").display()
    )))
    .await
    .unwrap();
    rel.ping().await.unwrap();
}

#[tokio::test]
async fn a_locked_sqlite_database_is_unavailable_and_writes_resume_after() {
    let db = TestDb::sqlite();
    let mut opts = db.options();
    opts.acquire_timeout = Duration::from_millis(200);
    let store = db.store_with(opts).await;

    // Another process holds the write lock for longer than the busy timeout.
    let mut other = sqlx::SqlitePool::connect(&db.url())
        .await
        .unwrap()
        .acquire()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *other)
        .await
        .unwrap();
    let err = store
        .record_faults(&[fault("prod", "f1")])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    sqlx::query("ROLLBACK").execute(&mut *other).await.unwrap();

    let rec = store.record_faults(&[fault("prod", "f1")]).await.unwrap();
    assert!(rec[0].created, "nothing of the failed attempt was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_postgres_is_unavailable_and_the_store_recovers() {
    let db = TestDb::postgres().await;
    let server = db.pg_server().unwrap();
    assert!(
        server.can_restart(),
        "this test stops its own server; NIGHTCRIER_TEST_POSTGRES_URL cannot be used for it"
    );
    let mut opts = db.options();
    opts.acquire_timeout = Duration::from_secs(2);
    let store = db.store_with(opts).await;
    store.record_faults(&[fault("prod", "f1")]).await.unwrap();

    server.stop_async().await;
    let err = store
        .record_faults(&[fault("prod", "f2")])
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store.claim("w", super::WIDE).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");

    server.start_again_async().await;
    // The pool reconnects by itself; poll with a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rec = loop {
        match store.record_faults(&[fault("prod", "f2")]).await {
            Ok(rec) => break rec,
            Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the store did not recover: {e:?}"),
        }
    };
    assert!(rec[0].created);
    assert_eq!(store.list(&Default::default()).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notifies_other_processes_of_new_pending_incidents() {
    let db = TestDb::postgres().await;
    let writer = db.store().await;
    let dispatcher = db.store().await; // another pool, as another process would have

    let waiter = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move { dispatcher.pending_notified().await })
    };
    // The dispatcher's LISTEN connection may not be up yet: keep recording new faults until
    // the waiter wakes (each one sends a NOTIFY), within a deadline.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while !waiter.is_finished() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification arrived"
        );
        writer
            .record_faults(&[fault("prod", &format!("f{n}"))])
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    waiter.await.unwrap();
    // The wake-up came through PostgreSQL: the dispatcher's handle recorded nothing itself.
    assert!(dispatcher.claim("w", super::WIDE).await.unwrap().is_some());
    dispatcher.close().await;
    writer.close().await;
}
