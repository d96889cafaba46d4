//! Uploading an incident's files to object storage (S3, Azure Blob, GCS, a local directory or
//! memory), built only with the `object-storage` feature.
//!
//! Runs in the reporter task, never in the worker pool. Each file is retried with backoff; the
//! reporter retries a failed upload on later passes (bounded by `reporting.max_attempts`).

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use url::Url;

use crate::agent::Workspace;
use crate::config::ArtifactsConfig;

/// Tries per file (the cloud clients also retry transient errors themselves).
pub const PUT_ATTEMPTS: u32 = 3;
const PUT_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("reporting.artifacts.url {url:?} is not usable: {message}")]
    Config { url: String, message: String },
    #[error("reading {path} for upload: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("uploading {key} failed after {attempts} attempt(s): {source}")]
    Put {
        key: String,
        attempts: u32,
        #[source]
        source: object_store::Error,
    },
}

/// What was uploaded for one incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Object keys written, in upload order.
    pub keys: Vec<String>,
    /// Public address of the HTML report, when `public_base_url` is set.
    pub report_url: Option<String>,
}

/// One bucket (or directory) and a key prefix. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    public_base_url: Option<String>,
    backoff: Duration,
}

impl ArtifactStore {
    /// From `reporting.artifacts` (`s3://bucket/prefix` and the usual credential variables).
    pub fn from_config(cfg: &ArtifactsConfig) -> Result<Self, ArtifactError> {
        let bad = |message: String| ArtifactError::Config {
            url: crate::config::redact_url(&cfg.url),
            message,
        };
        let url = Url::parse(&cfg.url).map_err(|e| bad(e.to_string()))?;
        let options = cfg
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()));
        let (store, prefix) =
            object_store::parse_url_opts(&url, options).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            public_base_url: cfg.public_base_url.clone(),
            backoff: PUT_BACKOFF,
        })
    }

    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, public_base_url: Option<String>) -> Self {
        Self {
            store,
            prefix: ObjectPath::from(prefix),
            public_base_url,
            backoff: PUT_BACKOFF,
        }
    }

    /// Uploads `investigation.md`, `investigation.html`, `incident.json` and `agent.log` (those
    /// that exist) under `<prefix>/<incident-id>/`.
    pub async fn upload_incident(
        &self,
        ws: &Workspace,
        id: uuid::Uuid,
    ) -> Result<Uploaded, ArtifactError> {
        let files = [
            (ws.report_file(), "investigation.md"),
            (
                ws.output_dir().join("investigation.html"),
                "investigation.html",
            ),
            (ws.incident_file(), "incident.json"),
            (ws.log_file(), "agent.log"),
        ];
        let mut keys = Vec::new();
        let mut report_url = None;
        for (path, name) in files {
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ArtifactError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            let key = self.key(id, name);
            self.put(&key, bytes).await?;
            if name == "investigation.html" {
                report_url = self
                    .public_base_url
                    .as_deref()
                    .map(|b| format!("{}/{id}/{name}", b.trim_end_matches('/')));
            }
            keys.push(key.to_string());
        }
        Ok(Uploaded { keys, report_url })
    }

    fn key(&self, id: uuid::Uuid, name: &str) -> ObjectPath {
        let mut parts: Vec<object_store::path::PathPart<'_>> = self.prefix.parts().collect();
        parts.push(id.to_string().into());
        parts.push(name.into());
        ObjectPath::from_iter(parts)
    }

    async fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let payload = PutPayload::from(bytes);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.put(key, payload.clone()).await {
                Ok(_) => return Ok(()),
                Err(source) if attempt >= PUT_ATTEMPTS => {
                    return Err(ArtifactError::Put {
                        key: key.to_string(),
                        attempts: attempt,
                        source,
                    })
                }
                Err(e) => {
                    tracing::debug!(key = %key, error = %e, attempt, "artifact upload failed; retrying");
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                }
            }
        }
    }
}
