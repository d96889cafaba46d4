//! The dashboard's end-to-end rig: a real server on loopback over a real SQLite store and
//! workspace root, and a real headless Chromium driven over WebDriver.

pub use super::webdriver;

use std::path::{Path, PathBuf};

use nightcrier::config::{HttpAuthConfig, HttpConfig, Secret};
use nightcrier::health::Health;
use nightcrier::http::{Access, HttpServer, HttpState};
use nightcrier::store::Store;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "s3cret-dashboard-token";

pub struct Server {
    pub base: String,
    pub store: Store,
    pub root: PathBuf,
    pub token: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A server whose pages need the bearer token [`TOKEN`] (`with_auth`), or none.
pub async fn server(with_auth: bool) -> Server {
    server_with(with_auth, Vec::new()).await
}

/// [`server`] with configured clusters.
pub async fn server_with(
    with_auth: bool,
    clusters: Vec<nightcrier::config::ClusterConfig>,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::common::sqlite_store(dir.path()).await;
    let root = dir.path().join("workspaces");
    std::fs::create_dir_all(&root).unwrap();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let mut state = HttpState::new(store.clone(), Health::new(), metrics)
        .with_workspace_root(&root)
        .with_clusters(clusters);
    if with_auth {
        let cfg = HttpConfig {
            auth: HttpAuthConfig {
                bearer_token: Some(Secret::new(TOKEN)),
                ..HttpAuthConfig::default()
            },
            ..HttpConfig::default()
        };
        state = state.with_access(Access::from_config(&cfg).unwrap());
    }
    let server = HttpServer::bind("127.0.0.1:0", state).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let token = CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    Server {
        base,
        store,
        root,
        token,
        _dir: dir,
    }
}

/// The agent log of `id` under `root`, as the agent runner writes it.
pub fn log_path(root: &Path, id: uuid::Uuid) -> PathBuf {
    nightcrier::agent::Workspace::new(root, id).log_file()
}

/// Appends `text` to the agent log (creating it and its directory).
pub fn append_log(root: &Path, id: uuid::Uuid, text: &str) {
    use std::io::Write as _;
    let path = log_path(root, id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
}
