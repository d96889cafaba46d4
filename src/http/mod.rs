//! The HTTP endpoint: liveness, readiness, Prometheus metrics, read-only incident pages and the
//! dashboard (`/dashboard`).
//!
//! This module owns the listener, the routes and how health is shown over HTTP. It must not
//! mutate state without authentication (only the dashboard's retry/cancel mutate, and only with
//! `http.auth` configured and presented) and must not decide what is healthy: it reads
//! [`crate::health`] and pings the store.
//! Other modules' routes may share the listener ([`HttpServer::merge`]: the `intake` receivers,
//! which authenticate every request themselves).

mod access;
mod dashboard;
mod go_health;
mod incidents;
mod routes;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ClusterConfig, HttpConfig};
use crate::health::Health;
use crate::store::Store;

pub use access::{Access, AccessError};
pub use go_health::{build as go_cluster_health, go_status};
pub use routes::router;
pub use serve::ConnLimits;

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
    #[error(transparent)]
    Access(#[from] AccessError),
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
    /// The configured clusters (labels, triage) for `/health/clusters`; shared, as the state is
    /// cloned for every request.
    pub clusters: Arc<Vec<ClusterConfig>>,
    /// Who may see the incident pages, and whether they are served at all (`http.auth`,
    /// `http.pages`).
    pub access: std::sync::Arc<Access>,
    /// The agent limits the dashboard shows running agents against (`limits`).
    pub agent_limits: crate::config::LimitsConfig,
}

impl HttpState {
    pub fn new(store: Store, health: Health, metrics: PrometheusHandle) -> Self {
        Self {
            store,
            health,
            metrics,
            ping_timeout: crate::health::DEFAULT_PING_TIMEOUT,
            workspace_root: crate::config::Config::default().workspace_root,
            clusters: Arc::default(),
            access: std::sync::Arc::new(Access::open()),
            agent_limits: crate::config::LimitsConfig::default(),
        }
    }

    /// The agent limits the dashboard's Now page shows (`limits`).
    pub fn with_agent_limits(mut self, limits: crate::config::LimitsConfig) -> Self {
        self.agent_limits = limits;
        self
    }

    /// The clusters `/health/clusters` reports on.
    pub fn with_clusters(mut self, clusters: Vec<ClusterConfig>) -> Self {
        self.clusters = Arc::new(clusters);
        self
    }

    /// Pages served and their credentials (`http.pages`, `http.auth`).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = std::sync::Arc::new(access);
        self
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
    limits: ConnLimits,
}

impl HttpServer {
    /// Binds `listen` (`host:port`; `http.listen`). The app skips this when `listen` is empty.
    pub async fn bind(listen: &str, state: HttpState) -> Result<Self, HttpError> {
        Self::bind_routes(listen, router(state)).await
    }

    /// Other connection bounds than the defaults of `http.max_connections` and
    /// `http.header_read_timeout`.
    pub fn with_limits(mut self, limits: ConnLimits) -> Self {
        self.limits = limits;
        self
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
        // A non-loopback listener without auth is warned about by the configuration check.
        let access = Access::from_config(cfg)?;
        let server = Self::bind(listen, state.with_access(access)).await?;
        Ok(Some(server.with_limits(ConnLimits {
            max_connections: cfg.max_connections,
            header_read_timeout: cfg.header_read_timeout,
        })))
    }

    /// Binds `listen` for `router` with the default connection bounds ([`Self::with_limits`]
    /// changes them): the endpoint's own routes, or the intake receivers on `intake.listen`.
    pub async fn bind_routes(listen: &str, router: Router) -> Result<Self, HttpError> {
        let bind_error = |source| HttpError::Bind {
            addr: listen.to_string(),
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let defaults = HttpConfig::default();
        Ok(Self {
            listener,
            addr,
            router,
            limits: ConnLimits {
                max_connections: defaults.max_connections,
                header_read_timeout: defaults.header_read_timeout,
            },
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
        let serve = serve::serve(self.listener, self.router, self.limits, token.clone());
        tokio::pin!(serve);
        let grace_over = async {
            token.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = &mut serve => Ok(()),
            _ = grace_over => {
                tracing::warn!(%addr, "http connections still open after the shutdown grace; closing them");
                Ok(())
            }
        }
    }
}
