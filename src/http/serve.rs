//! The accept loop of the HTTP endpoint: bounds what clients can hold.
//!
//! A connection takes a permit of a semaphore sized `http.max_connections` before it is
//! accepted, so idle or slow clients wait in the kernel's accept queue instead of taking every
//! file descriptor of the process (which would also starve the database and the agents). Each
//! connection must send a whole request head within `http.header_read_timeout` (hyper's timer),
//! so a half-open or silent client gives its permit back. This module must not know the routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// After an accept error (EMFILE, ENFILE, ENOMEM...), how long before accepting again: the
/// error repeats at once otherwise, and connections closing meanwhile free what was missing.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The bounds of [`serve`]; from `http.max_connections` and `http.header_read_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `router` on `listener` until `token` is cancelled; then every open connection is
/// asked to finish its request and close, and this returns once they have (the caller bounds
/// that wait).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    token: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns = JoinSet::new();
    let mut accept_errors = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = token.cancelled() => break,
            // Finished connections are reaped before accepting more, so the set stays small.
            Some(_) = conns.join_next() => continue,
            permit = permits.clone().acquire_owned() => {
                // The semaphore is never closed; an error could only mean it was.
                let Ok(permit) = permit else { break };
                let stream = tokio::select! {
                    _ = token.cancelled() => break,
                    r = listener.accept() => r,
                };
                match stream {
                    Ok((stream, _peer)) => {
                        accept_errors = 0;
                        conns.spawn(connection(
                            stream,
                            router.clone(),
                            limits.header_read_timeout,
                            token.clone(),
                            permit,
                        ));
                    }
                    Err(e) => {
                        accept_errors += 1;
                        // Said once per streak: the loop retries every ACCEPT_ERROR_PAUSE.
                        if accept_errors == 1 {
                            tracing::warn!(error = %e, "http endpoint cannot accept connections; retrying");
                        }
                        drop(permit);
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        }
    }
    while conns.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    router: Router,
    header_read_timeout: Duration,
    token: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // A client that went away or was too slow: its business, not an operator's.
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}
