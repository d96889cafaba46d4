//! The incident pages through the real router on loopback: content, content types, and path
//! traversal attempts (sent as raw HTTP so no client normalises them first).

use crate::support::report as report_support;

use std::path::Path;

use nightcrier::agent::Workspace;
use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::incident::IncidentStatus;
use nightcrier::store::Store;
use report_support::common::sqlite_store;
use report_support::{finished, fixture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Served {
    addr: std::net::SocketAddr,
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), nightcrier::http::HttpError>>,
}

async fn serve(store: Store, root: &Path) -> Served {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let state = HttpState::new(store, Health::new(), metrics).with_workspace_root(root);
    let server = HttpServer::bind("127.0.0.1:0", state).await.unwrap();
    let addr = server.local_addr();
    let token = CancellationToken::new();
    let task = tokio::spawn(server.run(token.clone()));
    Served { addr, token, task }
}

/// (status, headers in lower case, body) of `GET path` sent byte for byte.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_incidents_reports_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    let failed = finished(
        &store,
        &root,
        "f2",
        IncidentStatus::Failed,
        Some("agent exited with code 3"),
        None,
    )
    .await;
    let srv = serve(store, &root).await;

    let (status, head, body) = raw_get(srv.addr, "/incidents").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html; charset=utf-8"));
    assert!(head.contains("content-security-policy: default-src 'none'"));
    assert!(body.contains(&format!("href=\"/incidents/{}\"", inc.id)));
    assert!(body.contains(&format!("href=\"/incidents/{}\"", failed.id)));

    let (status, _, body) = raw_get(srv.addr, &format!("/incidents/{}", inc.id)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<h2>Root cause</h2>") && body.contains("The new image"),
        "{body}"
    );
    assert!(body.contains("High (90%)"));
    assert!(body.contains(&format!("href=\"/incidents/{}/report\"", inc.id)));
    assert!(body.contains(&format!("href=\"/incidents/{}/log\"", inc.id)));

    let (status, _, body) = raw_get(srv.addr, &format!("/incidents/{}", failed.id)).await;
    assert_eq!(status, 200);
    assert!(body.contains("agent exited with code 3") && body.contains("No report (yet)."));

    // No investigation.html yet: rendered on request.
    let (status, head, body) = raw_get(srv.addr, &format!("/incidents/{}/report", inc.id)).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    assert!(body.contains("<th>Time (UTC)</th>") && body.contains("<pre><code"));
    // A file in the workspace is never served: the agent could have written it (issue #13).
    let ws = Workspace::new(&root, inc.id);
    std::fs::write(
        ws.output_dir().join("investigation.html"),
        "<p>pre-rendered</p>",
    )
    .unwrap();
    let (_, _, body) = raw_get(srv.addr, &format!("/incidents/{}/report", inc.id)).await;
    assert!(!body.contains("pre-rendered") && body.contains("<th>Time (UTC)</th>"));

    let (status, head, body) = raw_get(srv.addr, &format!("/incidents/{}/log", inc.id)).await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert_eq!(body, "agent started\nagent done\n");

    let (status, _, _) = raw_get(srv.addr, &format!("/incidents/{}/report", failed.id)).await;
    assert_eq!(status, 404, "a failed run has no report");

    srv.token.cancel();
    srv.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_bad_ids_are_rejected_without_touching_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOPSECRET").unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let inc = finished(&store, &root, "f1", IncidentStatus::Succeeded, None, None).await;
    // The agent planted symlinks to a file outside its workspace.
    let ws = Workspace::new(&root, inc.id);
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), ws.report_file()).unwrap();
    std::fs::remove_file(ws.log_file()).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), ws.log_file()).unwrap();
    let srv = serve(store, &root).await;
    let id = inc.id.to_string();

    for (path, want) in [
        ("/incidents/..%2f..%2fsecret.txt".to_string(), 400),
        ("/incidents/%2e%2e/report".to_string(), 400),
        ("/incidents/%2e%2e%2fsecret.txt/log".to_string(), 400),
        ("/incidents/%2Fetc%2Fpasswd/log".to_string(), 400),
        ("/incidents/..%5c..%5csecret.txt/report".to_string(), 400),
        (format!("/incidents/{}/report", id.replace('-', "")), 400),
        (format!("/incidents/{{{id}}}/log"), 400),
        (format!("/incidents/{}/log", &id[..8]), 400),
        (format!("/incidents/{id}%00/log"), 400),
        ("/incidents/../secret.txt".to_string(), 404),
        (format!("/incidents/{id}/../../secret.txt"), 404),
        (format!("/incidents/{id}/..%2f..%2fsecret.txt"), 404),
        (format!("/incidents/{id}/report/extra"), 404),
        (format!("/incidents/{}/report", uuid::Uuid::now_v7()), 404),
        // The planted symlinks resolve outside the workspace: refused as absent.
        (format!("/incidents/{id}/report"), 404),
        (format!("/incidents/{id}/log"), 404),
    ] {
        let (status, _, body) = raw_get(srv.addr, &path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(!body.contains("TOPSECRET"), "{path} leaked the file");
    }
    let (status, _, body) = raw_get(srv.addr, &format!("/incidents/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("TOPSECRET") && body.contains("No report (yet)."),
        "{body}"
    );

    srv.token.cancel();
    srv.task.await.unwrap().unwrap();
}
