//! The PostgreSQL harness that the tests and the benchmarks share (`support::common::pg`): a
//! test's server runs with durability off, a benchmark's with PostgreSQL's defaults.

use sqlx::Connection;

use crate::support::common::pg::{Durability, PgServer, BENCH_URL_ENV, URL_ENV};

async fn setting(url: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connecting to the server");
    sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("SHOW {name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_run_without_fsync_and_benchmarks_with_postgres_defaults() {
    // Servers this test starts itself, not one named in the environment. nextest runs each test
    // in its own process, so this changes no other test's environment.
    std::env::remove_var(URL_ENV);
    std::env::remove_var(BENCH_URL_ENV);
    for (durability, expected) in [(Durability::Off, "off"), (Durability::Defaults, "on")] {
        let server = tokio::task::spawn_blocking(move || PgServer::start_with(durability))
            .await
            .expect("starting PostgreSQL");
        let url = server.fresh_database().await;
        for name in ["fsync", "synchronous_commit", "full_page_writes"] {
            assert_eq!(
                setting(&url, name).await,
                expected,
                "{name} on a server started with {durability:?}"
            );
        }
    }
}
