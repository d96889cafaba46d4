//! Uploading an incident's files to object storage (S3, Azure Blob, GCS, a local directory or
//! memory), and the links to them: under `public_base_url` when set, else presigned (S3, GCS)
//! or SAS (Azure) URLs that expire after `link_expiry`.
//!
//! Runs in the reporter task, never in the worker pool. Each file is retried with backoff; the
//! reporter retries a failed upload on later passes (bounded by `reporting.max_attempts`).
//!
//! Credentials: `reporting.artifacts.options` first, then what each `object_store` builder's
//! `from_env` reads (every `AWS_*`, `AZURE_*` and `GOOGLE_*` variable that names one of its
//! config keys, see docs/reliability.md), then the provider's ambient credentials.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreScheme, PutPayload};
use url::Url;

use crate::agent::{Bounded, Workspace};
use crate::config::ArtifactsConfig;

/// Files larger than this are not uploaded (logged); the agent log is capped well below it.
pub const MAX_UPLOAD_BYTES: u64 = 256 * 1024 * 1024;
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
    /// Address of the HTML report: under `public_base_url`, else a link that expires.
    pub report_url: Option<String>,
}

/// One bucket (or directory) and a key prefix. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Signs expiring links (S3, Azure, GCS); `None` for local and in-memory stores.
    signer: Option<Arc<dyn Signer>>,
    prefix: ObjectPath,
    public_base_url: Option<String>,
    link_expiry: Duration,
    upload_failed: bool,
    backoff: Duration,
}

/// A cloud builder from the environment, then the URL, then `options` (which win).
macro_rules! cloud {
    ($builder:ty, $url:expr, $options:expr, $bad:expr) => {{
        let mut b = <$builder>::from_env().with_url($url.as_str());
        for (k, v) in $options {
            match k.parse() {
                Ok(key) => b = b.with_config(key, v.expose()),
                Err(_) => return Err($bad(format!("unknown option {k:?} for this store"))),
            }
        }
        let store = Arc::new(b.build().map_err(|e| $bad(e.to_string()))?);
        (
            store.clone() as Arc<dyn ObjectStore>,
            Some(store as Arc<dyn Signer>),
        )
    }};
}

impl ArtifactStore {
    /// From `reporting.artifacts` (`s3://bucket/prefix` and the usual credential variables).
    pub fn from_config(cfg: &ArtifactsConfig) -> Result<Self, ArtifactError> {
        let bad = |message: String| ArtifactError::Config {
            url: crate::config::redact_url(&cfg.url),
            message,
        };
        let url = Url::parse(&cfg.url).map_err(|e| bad(e.to_string()))?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        let (store, signer) = match scheme {
            ObjectStoreScheme::AmazonS3 => cloud!(AmazonS3Builder, url, &cfg.options, bad),
            ObjectStoreScheme::MicrosoftAzure => {
                cloud!(MicrosoftAzureBuilder, url, &cfg.options, bad)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                cloud!(GoogleCloudStorageBuilder, url, &cfg.options, bad)
            }
            _ => {
                let options = cfg
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()));
                let (store, _) =
                    object_store::parse_url_opts(&url, options).map_err(|e| bad(e.to_string()))?;
                (Arc::from(store), None)
            }
        };
        Ok(Self {
            store,
            signer,
            prefix,
            public_base_url: cfg.public_base_url.clone(),
            link_expiry: cfg.link_expiry,
            upload_failed: cfg.upload_failed,
            backoff: PUT_BACKOFF,
        })
    }

    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, public_base_url: Option<String>) -> Self {
        Self {
            store,
            signer: None,
            prefix: ObjectPath::from(prefix),
            public_base_url,
            link_expiry: crate::config::MAX_LINK_EXPIRY,
            upload_failed: false,
            backoff: PUT_BACKOFF,
        }
    }

    /// Failed runs are uploaded too (`upload_failed`).
    pub fn uploads_failed_runs(&self) -> bool {
        self.upload_failed
    }

    /// A link to `key` valid for `link_expiry`; `None` without a signer or when signing fails
    /// (logged: the message then links to nightcrier's own page).
    async fn signed_link(&self, key: &ObjectPath) -> Option<String> {
        let signer = self.signer.as_ref()?;
        match signer
            .signed_url(reqwest::Method::GET, key, self.link_expiry)
            .await
        {
            Ok(url) => Some(url.to_string()),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "cannot sign a link to the uploaded report");
                None
            }
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
        let mut log_key = None;
        for (path, name) in files {
            // Through the workspace's descriptors: a symlink the agent planted is not uploaded.
            let read = {
                let ws = ws.clone();
                let path = path.clone();
                tokio::task::spawn_blocking(move || ws.read(&path, MAX_UPLOAD_BYTES)).await
            };
            let bytes = match read {
                Ok(Ok(Some(Bounded::Content(b)))) => b,
                Ok(Ok(None)) => continue,
                Ok(Ok(Some(Bounded::TooLarge(len)))) => {
                    tracing::warn!(path = %path.display(), len, "not uploading a file above {MAX_UPLOAD_BYTES} bytes");
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(ArtifactError::Read {
                        path: path.display().to_string(),
                        source: std::io::Error::other(e),
                    })
                }
                Err(e) => {
                    return Err(ArtifactError::Read {
                        path: path.display().to_string(),
                        source: std::io::Error::other(e),
                    })
                }
            };
            let key = self.key(id, name);
            self.put(&key, bytes).await?;
            if name == "investigation.html" {
                report_url = match self.public_base_url.as_deref() {
                    Some(b) => Some(format!("{}/{id}/{name}", b.trim_end_matches('/'))),
                    None => self.signed_link(&key).await,
                };
            }
            if name == "agent.log" {
                log_key = Some(key.clone());
            }
            keys.push(key.to_string());
        }
        // A failed run has no report: its log is what to read.
        if report_url.is_none() {
            if let Some(key) = &log_key {
                report_url = match self.public_base_url.as_deref() {
                    Some(b) => Some(format!("{}/{id}/agent.log", b.trim_end_matches('/'))),
                    None => self.signed_link(key).await,
                };
            }
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
