//! The HTTP endpoint: liveness, readiness, Prometheus metrics and read-only incident pages.
//!
//! This module owns the listener, the routes and how health is shown over HTTP. It must not
//! mutate state without authentication (nothing here mutates at all) and must not decide what
//! is healthy: it reads [`crate::health`] and pings the store.
//! Other modules' routes may share the listener ([`HttpServer::merge`]: the `intake` receivers,
//! which authenticate every request themselves).

mod incidents;
mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::health::Health;
use crate::store::Store;

pub use routes::router;

/// After shutdown is requested, how long open connections may take to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr:?} (http.listen): {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http server on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers read. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub health: Health,
    pub metrics: PrometheusHandle,
    /// How long `/readyz` waits for the database.
    pub ping_timeout: Duration,
    /// Where the incident pages read workspaces from (`workspace_root`).
    pub workspace_root: PathBuf,
}

impl HttpState {
    pub fn new(store: Store, health: Health, metrics: PrometheusHandle) -> Self {
        Self {
            store,
            health,
            metrics,
            ping_timeout: crate::health::DEFAULT_PING_TIMEOUT,
            workspace_root: crate::config::Config::default().workspace_root,
        }
    }

    /// The incident pages serve files of `<root>/<incident-id>/` only.
    pub fn with_workspace_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.workspace_root = root.into();
        self
    }
}

/// A bound listener and its routes; binding first lets startup fail clearly on a taken port and
/// lets tests listen on port 0.
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
}

impl HttpServer {
    /// Binds `listen` (`host:port`; `http.listen`). The app skips this when `listen` is empty.
    pub async fn bind(listen: &str, state: HttpState) -> Result<Self, HttpError> {
        let bind_error = |source| HttpError::Bind {
            addr: listen.to_string(),
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            addr,
            router: router(state),
        })
    }

    /// Binds `http.listen`; `None` when it is empty (the endpoint is turned off).
    pub async fn bind_configured(
        cfg: &HttpConfig,
        state: HttpState,
    ) -> Result<Option<Self>, HttpError> {
        let listen = cfg.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        Self::bind(listen, state).await.map(Some)
    }

    /// Binds `listen` for other routes than the endpoint's own (the intake receivers on
    /// `intake.listen`), with the same shutdown.
    pub async fn bind_routes(listen: &str, router: Router) -> Result<Self, HttpError> {
        let bind_error = |source| HttpError::Bind {
            addr: listen.to_string(),
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            addr,
            router,
        })
    }

    /// Serves `routes` too (receivers that share `http.listen`).
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `token` is cancelled, then lets open requests finish for at most
    /// [`SHUTDOWN_GRACE`].
    pub async fn run(self, token: CancellationToken) -> Result<(), HttpError> {
        let addr = self.addr;
        tracing::debug!(%addr, "http endpoint listening");
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(token.clone().cancelled_owned());
        let serve = std::future::IntoFuture::into_future(serve);
        tokio::pin!(serve);
        let grace_over = async {
            token.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = &mut serve => r.map_err(|source| HttpError::Serve { addr, source }),
            _ = grace_over => {
                tracing::warn!(%addr, "http connections still open after the shutdown grace; closing them");
                Ok(())
            }
        }
    }
}
