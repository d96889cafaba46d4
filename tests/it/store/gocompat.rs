//! The Go nightcrier's database on both backends: a database holding the Go tables is refused
//! with `StoreError::GoSchema` (before any migration runs), and a Go SQLite file's incidents are
//! imported into either backend, once.

use nightcrier::incident::IncidentStatus;
use nightcrier::store::{ListFilter, Store, StoreError};

use crate::support::common::gosqlite::{fixture, go_database, GO_INCIDENTS};
use crate::support::common::{store_options, TestDb};

crate::store_conformance!(
    a_database_with_the_go_tables_is_refused,
    go_incidents_are_imported_once_and_not_reported_again,
);

async fn a_database_with_the_go_tables_is_refused(db: &TestDb) {
    let url = db.another_database().await;
    // The Go migration's SQL, as the Go program ran it on this backend.
    let schema = std::fs::read_to_string(fixture("000001_initial_schema.up.sql")).unwrap();
    if url.starts_with("sqlite:") {
        let path = url.trim_start_matches("sqlite://");
        go_database(std::path::Path::new(path)).await;
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::raw_sql(&schema).execute(&pool).await.unwrap();
        pool.close().await;
    }
    match Store::connect(store_options(&url)).await {
        Err(StoreError::GoSchema) => {}
        Err(e) => panic!("expected the Go-schema refusal, got: {e}"),
        Ok(_) => panic!("a Go database was accepted"),
    }
    // nightcrier's own database is not mistaken for one.
    db.store().await.migrate().await.unwrap();
}

async fn go_incidents_are_imported_once_and_not_reported_again(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go.db");
    go_database(&go).await;
    let store = db.store().await;
    let first = store.import_go(&go).await.unwrap();
    assert_eq!(
        (first.imported, first.already_present, first.skipped_total),
        (3, 0, 0)
    );
    let again = store.import_go(&go).await.unwrap();
    assert_eq!((again.imported, again.already_present), (0, 3));

    let all = store
        .list(&ListFilter {
            limit: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = |id: &str| {
        all.iter()
            .find(|i| i.id.to_string() == id)
            .map(|i| i.status)
            .unwrap()
    };
    assert_eq!(status(GO_INCIDENTS[0].0), IncidentStatus::Succeeded);
    assert_eq!(status(GO_INCIDENTS[1].0), IncidentStatus::Failed);
    assert_eq!(status(GO_INCIDENTS[2].0), IncidentStatus::Expired);
    // Reported by the Go program already: nothing is sent to Slack again.
    assert!(store.unreported_finished(10).await.unwrap().is_empty());
    // Not pending: nothing is re-run.
    assert!(store.claim("w", super::WIDE).await.unwrap().is_none());
    let runs = store.agent_runs(all[0].id).await.unwrap();
    assert!(runs.len() <= 1);
}
