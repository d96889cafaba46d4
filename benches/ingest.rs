//! Producer-side benchmark: simulator streams → MCP sessions → ingest channel → writer →
//! committed rows, on SQLite and PostgreSQL, with agents idle and with every agent slot busy;
//! beside it the raw limit (the same rows by a minimal insert loop); and 1,000 subscribed
//! sessions in a separate `nightcrier run` process (memory, idle CPU, reconnect after restart).
//!
//! `cargo bench --bench ingest -- [sqlite] [postgres] [connections] [--quick]
//!  [--events=N] [--seconds=N] [--rate=N] [--agents=N] [--clusters=N] [--idle-seconds=N]`
//! (no mode: all three). See `docs/benchmarks.md` for what each figure measures.

#[path = "support/mod.rs"]
mod support;

mod ingest_bench {
    pub mod connections;
    pub mod pipeline;
    pub mod raw;
}

use support::Args;

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let pg = if args.wants("postgres") {
            Some(support::pg::PgServer::start_durable())
        } else {
            None
        };
        if args.wants("sqlite") {
            ingest_bench::pipeline::backend(&args, None).await;
        }
        if let Some(pg) = &pg {
            ingest_bench::pipeline::backend(&args, Some(pg)).await;
        }
        if args.wants("connections") {
            ingest_bench::connections::run(&args).await;
        }
    });
}
