//! Expiring links to uploaded reports, against a real S3-compatible server on loopback: moto
//! (`python3 -m moto.server`, installed by scripts/install-test-tools.sh).
//!
//! moto 5.2.1 serves presigned GETs but checks neither their signature nor their expiry, so the
//! test puts an S3 gate in front of it that does what S3 does with a presigned URL: it recomputes
//! the SigV4 query signature with the bucket's secret key and refuses (403 `AccessDenied`,
//! "Request has expired") a URL past `X-Amz-Date + X-Amz-Expires`. Other requests (the uploads,
//! signed in headers) pass through to moto unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use nightcrier::agent::Workspace;
use nightcrier::config::{ArtifactsConfig, Secret};
use nightcrier::report::{html_report_file, ArtifactStore};
use sha2::{Digest, Sha256};

const KEY_ID: &str = "AKIDNIGHTCRIERTEST";
const SECRET: &str = "nightcrier-test-secret-key";
const REGION: &str = "us-east-1";
const BUCKET: &str = "nc-reports";

/// moto on a free loopback port; killed on drop.
struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    std::env::var("NIGHTCRIER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn start_moto() -> Moto {
    let ok = Command::new(python())
        .args(["-c", "import moto.server"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "moto is missing: run scripts/install-test-tools.sh (pip install 'moto[server]==5.2.1'), \
         or point NIGHTCRIER_TEST_PYTHON at a python with it"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto");
    let moto = Moto {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    // Ready when it answers; bounded so a broken install fails instead of hanging.
    for _ in 0..300 {
        if reqwest::get(format!("http://{}/", moto.addr)).await.is_ok() {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto did not start on {}", moto.addr);
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// What S3 checks of a presigned GET: the SigV4 query signature and the expiry.
/// `Err((status, S3 error text))` when refused.
fn verify_presigned(
    method: &Method,
    uri: &Uri,
    host: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let query = uri.query().unwrap_or("");
    let pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let get = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let signature = get("X-Amz-Signature").ok_or("no signature")?;
    let amz_date = get("X-Amz-Date").ok_or("no X-Amz-Date")?;
    let expires: i64 = get("X-Amz-Expires")
        .ok_or("no X-Amz-Expires")?
        .parse()
        .map_err(|_| "bad X-Amz-Expires")?;
    let credential = get("X-Amz-Credential").ok_or("no credential")?;
    if !credential.starts_with(KEY_ID) {
        return Err("InvalidAccessKeyId".into());
    }
    let signed_at = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| "bad X-Amz-Date")?
        .and_utc();
    let day = &amz_date[..8];
    let mut canonical_query: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "X-Amz-Signature")
        .collect();
    canonical_query.sort();
    let canonical_query = canonical_query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signed_headers = get("X-Amz-SignedHeaders").unwrap_or("host");
    if signed_headers != "host" {
        return Err(format!("unexpected signed headers {signed_headers}"));
    }
    let canonical_request = format!(
        "{method}\n{}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        uri.path()
    );
    let scope = format!("{day}/{REGION}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k = hmac(format!("AWS4{SECRET}").as_bytes(), day);
    let k = hmac(&k, REGION);
    let k = hmac(&k, "s3");
    let k = hmac(&k, "aws4_request");
    if hex::encode(hmac(&k, &string_to_sign)) != signature {
        return Err("SignatureDoesNotMatch".into());
    }
    if now > signed_at + chrono::Duration::seconds(expires) {
        return Err("Request has expired".into());
    }
    Ok(())
}

struct Gate {
    moto: SocketAddr,
    client: reqwest::Client,
}

async fn gate(
    State(g): State<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")) {
        if let Err(why) = verify_presigned(&method, &uri, &host, chrono::Utc::now()) {
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>{why}</Message></Error>"
            );
            return (StatusCode::FORBIDDEN, xml).into_response();
        }
    }
    let url = format!(
        "http://{}{}",
        g.moto,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut req = g.client.request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let h = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            for (k, v) in &h {
                if k != "content-length" && k != "transfer-encoding" {
                    out.headers_mut().insert(k, v.clone());
                }
            }
            out
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn start_gate(moto: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let g = Arc::new(Gate {
        moto,
        client: reqwest::Client::new(),
    });
    let app = Router::new().fallback(gate).with_state(g);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_report_link_works_until_it_expires() {
    let moto = start_moto().await;
    let (gate_addr, gate_task) = start_gate(moto.addr).await;
    let http = reqwest::Client::new();
    let created = http
        .put(format!("http://{}/{BUCKET}", moto.addr))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{created:?}");

    let options: BTreeMap<String, Secret> = [
        ("aws_endpoint", format!("http://{gate_addr}")),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", KEY_ID.into()),
        ("aws_secret_access_key", SECRET.into()),
        ("aws_region", REGION.into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Secret::new(v)))
    .collect();
    let cfg = ArtifactsConfig {
        options,
        link_expiry: Duration::from_secs(2),
        ..ArtifactsConfig::new(format!("s3://{BUCKET}/nightcrier"))
    };
    let store = ArtifactStore::from_config(&cfg).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4();
    let ws = Workspace::new(dir.path(), id);
    ws.prepare().unwrap();
    std::fs::write(
        ws.report_file(),
        "# Report\n\nRoot cause: a bad image tag.\n",
    )
    .unwrap();
    let html = "<html><body>the rendered report</body></html>";
    std::fs::write(html_report_file(&ws), html).unwrap();

    let up = store.upload_incident(&ws, id).await.unwrap();
    assert!(
        up.keys
            .contains(&format!("nightcrier/{id}/investigation.html")),
        "{up:?}"
    );
    let link = up.report_url.expect("a presigned link");
    assert!(
        link.starts_with(&format!(
            "http://{gate_addr}/{BUCKET}/nightcrier/{id}/investigation.html?"
        )),
        "{link}"
    );
    assert!(
        link.contains("X-Amz-Expires=2&") || link.ends_with("X-Amz-Expires=2"),
        "{link}"
    );
    assert!(!link.contains(SECRET), "{link}");

    // Works now (signature checked by the gate, bytes served by moto)...
    let got = http.get(&link).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.text().await.unwrap(), html);
    // ...a tampered link does not...
    let tampered = link.replace("X-Amz-Expires=2", "X-Amz-Expires=604800");
    let got = http.get(&tampered).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::FORBIDDEN);
    assert!(got.text().await.unwrap().contains("SignatureDoesNotMatch"));
    // ...and after its expiry it is refused as S3 refuses it.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let got = http.get(&link).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::FORBIDDEN);
    assert!(got.text().await.unwrap().contains("Request has expired"));
    gate_task.abort();
}

#[test]
fn link_expiry_is_validated() {
    let yaml = "reporting:\n  base_url: https://n.example\n  artifacts:\n    url: s3://b/p\n    link_expiry: 8d\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    let err = nightcrier::config::load(Some(&path), Vec::new()).unwrap_err();
    let shown = format!("{err:#}");
    assert!(shown.contains("reporting.artifacts.link_expiry"), "{shown}");
}
