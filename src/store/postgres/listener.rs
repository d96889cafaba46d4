//! Forwards `NOTIFY nightcrier_pending` from any process to this process's pending waiters.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;

pub(super) const CHANNEL: &str = "nightcrier_pending";

const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Spawns the LISTEN task; the caller owns the handle and aborts it. It uses its own one-connection
/// pool so that it never takes a connection the store's operations need.
pub(in crate::store) fn spawn_listener(
    pool: PgPool,
    pending: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    let options = pool.connect_options().as_ref().clone();
    let own = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    tokio::spawn(run(own, pending))
}

async fn run(pool: PgPool, pending: Arc<Notify>) {
    let mut backoff = INITIAL_BACKOFF;
    let mut down = false;
    loop {
        let err = listen(&pool, &pending, &mut down, &mut backoff).await;
        if !down {
            tracing::warn!(error = %err, "lost the PostgreSQL LISTEN connection; retrying with backoff");
            down = true;
        }
        // A NOTIFY may have been missed while not listening: let waiters look for themselves.
        pending.notify_waiters();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens until the connection fails for good (PgListener reconnects by itself once).
async fn listen(
    pool: &PgPool,
    pending: &Notify,
    down: &mut bool,
    backoff: &mut Duration,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        return e;
    }
    if *down {
        tracing::info!("listening for PostgreSQL notifications again");
        *down = false;
    }
    *backoff = INITIAL_BACKOFF;
    pending.notify_waiters();
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {
                pending.notify_waiters();
                pending.notify_one();
            }
            // Reconnected after a lost connection: notifications in between are lost.
            Ok(None) => pending.notify_waiters(),
            Err(e) => return e,
        }
    }
}
