//! Issue #13, "untrusted text stays data", "bounded in bytes", "secrets and access" and
//! "database edge cases" (items 9-12 and 14-17): a hostile fault source, a hostile MCP server and
//! hostile HTTP clients against the real binary or real components on loopback.

use crate::support::common;
use crate::support::e2e as e2e_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use e2e_support::{simulator, subscribed, wait_until, Rig, DEADLINE};
use nightcrier::config::{HttpAuthConfig, HttpConfig, Secret};
use nightcrier::fault::{ReceivedFault, MAX_CONTEXT_BYTES};
use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::ingest::{channel, channel_bounded};
use nightcrier::mcp::{McpError, Session, SessionOptions};
use nightcrier::simulate::FaultSpec;
use tokio_util::sync::CancellationToken;

fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| nightcrier::telemetry::vm_rss_kib(&s))
        .expect("VmRSS of the test process")
}

/// Rewrites the rig's YAML with `edit` applied to the parsed document.
fn edit_config(rig: &Rig, edit: impl FnOnce(&mut serde_yaml_ng::Value)) {
    let path = rig.config_path();
    let text = std::fs::read_to_string(&path).expect("reading the config");
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    edit(&mut doc);
    std::fs::write(&path, serde_yaml_ng::to_string(&doc).expect("YAML")).expect("writing");
}

fn control_chars_except_newline(s: &str) -> Vec<char> {
    s.chars()
        .filter(|c| *c != '\n' && nightcrier::escape::is_unsafe(*c))
        .collect()
}

// ---- item 9: control characters in fault fields ----------------------------------------------

#[tokio::test]
async fn a_hostile_fault_forges_no_log_line_and_sends_no_escape_to_the_terminal() {
    let sim = simulator("evil").await;
    let rig = Rig::sqlite(&[&sim], "exit 0\n");
    let mut proc = rig.start_run();
    subscribed(&sim).await;

    let mut spec = FaultSpec::generate(0, 7);
    spec.name = "api-0\n2026-12-02T00:00:00.000000Z  INFO forged line from the cluster \u{1b}]0;pwned\u{7}\u{1b}[2J".into();
    spec.namespace = Some("pay\rments\u{9b}31m".into());
    // (A NUL is refused by the store itself: that fault would be dropped, not shown.)
    spec.context = "crash\u{7}loop\n\u{1b}[31mred".into();
    assert!(sim.emit_fault(&spec).await >= 1);
    proc.wait_stdout("incident ").await;
    let store = rig.store().await;
    let incident = wait_until("the incident", DEADLINE, || async {
        e2e_support::all_incidents(&store).await.into_iter().next()
    })
    .await;
    assert!(incident.resource_name.contains('\n'), "stored as received");

    let log = proc.stdout();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-02T00:00:00.000000Z")),
        "a log line was forged:\n{log}"
    );
    assert!(
        control_chars_except_newline(&log).is_empty(),
        "control characters in the log:\n{log:?}"
    );
    assert!(log.contains("api-0\\n2026-12-02T00:00:00.000000Z"), "{log}");

    let list = rig.cli(&["incidents", "list"]).await;
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    assert_eq!(
        list.stdout.lines().count(),
        2,
        "header + one row:\n{}",
        list.stdout
    );
    assert!(
        control_chars_except_newline(&list.stdout).is_empty(),
        "{:?}",
        list.stdout
    );
    let show = rig
        .cli(&["incidents", "show", &incident.id.to_string()])
        .await;
    assert_eq!(show.code(), Some(0), "{}", show.stderr);
    assert!(
        control_chars_except_newline(&show.stdout).is_empty(),
        "{:?}",
        show.stdout
    );
    assert!(
        show.stdout.contains("crash\\u{7}loop\\n\\u{1b}[31mred"),
        "{}",
        show.stdout
    );
    assert!(
        !show.stdout.lines().any(|l| l.starts_with("2026-12-02")),
        "{}",
        show.stdout
    );
    let status = rig.cli(&["status"]).await;
    assert!(
        control_chars_except_newline(&status.stdout).is_empty(),
        "{:?}",
        status.stdout
    );
}

// ---- item 10: the ingest buffer is bounded in bytes --------------------------------------------

fn big_fault(i: usize, context_bytes: usize) -> ReceivedFault {
    let mut f = common::fault("prod", &format!("{i:016x}"));
    f.fault.context = "x".repeat(context_bytes);
    f.raw = serde_json::to_value(&f.fault).expect("raw");
    f.received_at = Utc::now();
    f
}

#[tokio::test]
async fn faults_with_megabyte_contexts_keep_the_buffer_small_while_the_database_is_locked() {
    // No writer drains the channel: the database is unavailable for the whole test.
    let (tx, _rx) = channel(100_000);
    let before = self_rss_kib();
    for i in 0..200 {
        assert!(tx.offer(big_fault(i, 3 * 1024 * 1024)), "fault {i} kept");
    }
    let grown_mib = self_rss_kib().saturating_sub(before) / 1024;
    // 200 faults of 3 MiB each held whole (context + raw) are over 1.2 GB.
    assert!(grown_mib < 200, "RSS grew by {grown_mib} MiB");
    assert!(
        tx.buffered_bytes() < 200 * 3 * MAX_CONTEXT_BYTES,
        "{} bytes buffered",
        tx.buffered_bytes()
    );
    println!("RSS growth for 200 faults of 3 MiB: {grown_mib} MiB");
}

#[tokio::test]
async fn faults_over_the_byte_bound_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite_store(dir.path()).await;
    // Another connection holds the write lock: the writer keeps its batch and retries.
    let mut locker = sqlx::SqliteConnection::connect(&common::sqlite_url(dir.path()))
        .await
        .expect("second connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .expect("locking");
    let (tx, rx) = channel_bounded(100_000, 4 * 1024 * 1024);
    let writer = nightcrier::ingest::IngestWriter::new(
        rx,
        store.clone(),
        Health::new(),
        nightcrier::ingest::WriterOptions::default(),
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));
    let mut kept = 0;
    for i in 0..400 {
        if tx.offer(big_fault(i, 1024 * 1024)) {
            kept += 1;
        }
    }
    assert!(kept > 10 && kept < 400, "{kept} kept");
    assert_eq!(tx.dropped(), 400 - kept as u64);
    assert!(tx.buffered_bytes() <= 4 * 1024 * 1024);
    token.cancel();
    drop(locker);
    task.await.expect("writer");
}

use sqlx::Connection as _;

// ---- item 11: a hostile MCP server's error body -----------------------------------------------

/// Answers every request with HTTP 500 and a 1 GiB body generated as it is sent; counts the
/// bytes it managed to send.
fn huge_error_server() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let total: u64 = 1 << 30;
                let head = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b'E'; 64 * 1024];
                let mut left = total;
                while left > 0 {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                    left -= chunk.len() as u64;
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, sent)
}

#[tokio::test]
async fn a_gigabyte_error_body_on_initialize_is_not_read() {
    let (addr, sent) = huge_error_server();
    let cfg = nightcrier::config::McpConfig::new(format!("http://{addr}/mcp"));
    let opts = SessionOptions::from_config(&cfg).expect("options");
    let before = self_rss_kib();
    let err = match Session::open(
        nightcrier::mcp::http_client(Duration::from_secs(5)).unwrap(),
        opts,
    )
    .await
    {
        Ok(_) => panic!("a session against a server answering 500"),
        Err(e) => e,
    };
    let grown_mib = self_rss_kib().saturating_sub(before) / 1024;
    match &err {
        McpError::Http { status, body, .. } => {
            assert_eq!(*status, 500);
            assert!(body.len() <= 200 && body.starts_with("EEEE"), "{body}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(grown_mib < 64, "RSS grew by {grown_mib} MiB");
    // Give the server a moment to notice the closed connection, then check it could not push
    // the whole body (kernel buffers take a few MiB at most).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_mib = sent.load(Ordering::Relaxed) >> 20;
    assert!(
        sent_mib < 256,
        "the client read {sent_mib} MiB of the error body"
    );
}

// ---- item 12: idle connections cannot starve the listener --------------------------------------

#[tokio::test]
async fn thousands_of_idle_connections_do_not_stop_healthz() {
    let rig = Rig::sqlite(&[], "exit 0\n");
    edit_config(&rig, |doc| {
        doc["http"]["max_connections"] = 32.into();
        doc["http"]["header_read_timeout"] = "300ms".into();
    });
    let mut proc = rig.start_run();
    let addr = proc.http_addr().await;
    // Few descriptors, as a busy host would have left: without a cap, idle clients take them all.
    let limit = std::process::Command::new("prlimit")
        .args(["--pid", &proc.pid().to_string(), "--nofile=200:200"])
        .status()
        .expect("prlimit (util-linux)");
    assert!(limit.success());
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(
            tokio::net::TcpStream::connect(addr)
                .await
                .expect("an idle connection"),
        );
    }
    let client = reqwest::Client::new();
    let resp = tokio::time::timeout(
        DEADLINE,
        client.get(format!("http://{addr}/healthz")).send(),
    )
    .await
    .expect("/healthz answered while 1000 idle connections were open")
    .expect("HTTP");
    assert_eq!(resp.status(), 200);
    proc.assert_alive();
    drop(idle);
}

// ---- item 14: every URL redacted the same way ----------------------------------------------------

#[tokio::test]
async fn passwords_and_tokens_in_urls_are_redacted_by_config_check_and_startup_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nightcrier.yaml");
    std::fs::write(
        &path,
        "database:\n  url: postgres://nc@127.0.0.1:1/nc?sslmode=disable&password=hunter2-db\n  acquire_timeout: 1s\n\
         clusters:\n  - name: prod\n    mcp:\n      endpoint: https://bob:pw-in-userinfo@mcp.example:8443/mcp?token=tok-in-query&x=1\n",
    )
    .expect("config");
    let cfg = path.display().to_string();
    let check = e2e_support::cli(&[
        "config".into(),
        "check".into(),
        "--config".into(),
        cfg.clone(),
    ])
    .await;
    assert_eq!(check.code(), Some(0), "{}", check.stderr);
    for secret in ["hunter2-db", "pw-in-userinfo", "tok-in-query"] {
        assert!(
            !check.stdout.contains(secret),
            "{secret} printed:\n{}",
            check.stdout
        );
    }
    assert!(
        check.stdout.contains("password=REDACTED"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("token=REDACTED&x=1"),
        "{}",
        check.stdout
    );

    let migrate = e2e_support::cli(&["migrate".into(), "--config".into(), cfg]).await;
    assert_ne!(migrate.code(), Some(0));
    let all = format!("{}{}", migrate.stdout, migrate.stderr);
    assert!(!all.contains("hunter2-db"), "{all}");
    assert!(all.contains("password=REDACTED"), "{all}");
}

// ---- item 15: the pages can require credentials -----------------------------------------------

async fn serve(http: HttpConfig) -> (SocketAddr, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite_store(dir.path()).await;
    let metrics = nightcrier::telemetry::install_metrics_recorder().expect("recorder");
    let state = HttpState::new(store, Health::new(), metrics).with_workspace_root(dir.path());
    let mut http = http;
    http.listen = "127.0.0.1:0".into();
    let server = HttpServer::bind_configured(&http, state)
        .await
        .expect("bind")
        .expect("enabled");
    let addr = server.local_addr();
    let token = CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    (addr, token, dir)
}

async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("HTTP").status().as_u16()
}

#[tokio::test]
async fn incident_pages_require_the_configured_token_or_basic_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").expect("token file");
    let http = HttpConfig {
        auth: HttpAuthConfig {
            bearer_token_file: Some(token_file),
            basic_username: Some("ops".into()),
            basic_password: Some(Secret::new("pw")),
            ..HttpAuthConfig::default()
        },
        ..HttpConfig::default()
    };
    let (addr, token, _dir) = serve(http).await;
    assert_eq!(get(addr, "/incidents", None).await, 401);
    assert_eq!(get(addr, "/incidents", Some("Bearer wrong")).await, 401);
    assert_eq!(
        get(addr, "/incidents", Some("Bearer file-token")).await,
        200
    );
    assert_eq!(get(addr, "/incidents", Some("Basic b3BzOnB3")).await, 200);
    assert_eq!(
        get(
            addr,
            "/incidents/0192f0c4-6a4e-7c3e-8b1a-2f4d5e6a7b8c/log",
            None
        )
        .await,
        401
    );
    assert_eq!(get(addr, "/healthz", None).await, 200);
    assert_eq!(get(addr, "/metrics", None).await, 200);
    token.cancel();

    let (addr, token, _dir) = serve(HttpConfig {
        pages: false,
        ..HttpConfig::default()
    })
    .await;
    assert_eq!(get(addr, "/incidents", None).await, 404);
    assert_eq!(get(addr, "/readyz", None).await, 200);
    token.cancel();
}

#[tokio::test]
async fn a_public_listener_without_auth_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nightcrier.yaml");
    std::fs::write(&path, "http:\n  listen: 0.0.0.0:9090\n").expect("config");
    let out = e2e_support::cli(&[
        "config".into(),
        "check".into(),
        "--config".into(),
        path.display().to_string(),
    ])
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("# warning: http.listen 0.0.0.0:9090 is not a loopback address"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn sqlite_files_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite_store(dir.path()).await;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    for name in ["nightcrier.db", "nightcrier.db-wal", "nightcrier.db-shm"] {
        assert_eq!(mode(&dir.path().join(name)), 0o600, "{name}");
    }
    store.close().await;
}

// ---- item 16: cluster names that would be options ---------------------------------------------

#[tokio::test]
async fn a_cluster_name_starting_with_a_dash_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nightcrier.yaml");
    std::fs::write(
        &path,
        "clusters:\n  - name: \"--kubeconfig=/etc/shadow\"\n    mcp:\n      endpoint: http://127.0.0.1:8080/mcp\n",
    )
    .expect("config");
    let out = e2e_support::cli(&[
        "config".into(),
        "check".into(),
        "--config".into(),
        path.display().to_string(),
    ])
    .await;
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(out.stderr.contains("clusters[0].name"), "{}", out.stderr);
    assert!(
        out.stderr.contains("starting with a letter or digit"),
        "{}",
        out.stderr
    );
}

// ---- item 17: database edge cases ---------------------------------------------------------------

#[tokio::test]
async fn a_read_only_sqlite_database_fails_at_start() {
    let rig = Rig::sqlite(&[], "exit 0\n");
    let migrate = rig.cli(&["migrate"]).await;
    assert_eq!(migrate.code(), Some(0), "{}", migrate.stderr);
    edit_config(&rig, |doc| {
        let url = doc["database"]["url"].as_str().expect("url").to_string();
        doc["database"]["url"] = format!("{url}?mode=ro").into();
    });
    let mut proc = rig.start_run();
    let status = proc.wait_exit(DEADLINE).await;
    assert!(!status.success());
    let err = proc.stderr();
    assert!(
        err.contains("read-only") || err.contains("readonly"),
        "{err}"
    );
}

#[tokio::test]
async fn a_startup_error_says_its_cause_once() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let rig = Rig::sqlite(&[], "exit 0\n");
    edit_config(&rig, |doc| {
        doc["http"]["listen"] = taken.local_addr().expect("addr").to_string().into();
    });
    let mut proc = rig.start_run();
    let status = proc.wait_exit(DEADLINE).await;
    assert!(!status.success());
    let err = proc.stderr();
    assert_eq!(err.matches("in use").count(), 1, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    drop(TcpStream::connect(taken.local_addr().expect("addr")));
}

#[tokio::test]
async fn a_corrupt_database_sends_faults_to_the_spill_file_that_the_next_start_reingests() {
    use nightcrier::ingest::spill::{reingest, SpillFile};
    use nightcrier::ingest::{IngestWriter, WriterOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::sqlite_store(dir.path()).await;
    let spill = SpillFile::new(dir.path().join("spill.jsonl"), 16 * 1024 * 1024);
    let (tx, rx) = channel(1000);
    let health = Health::new();
    let writer = IngestWriter::new(
        rx,
        store.clone(),
        health.clone(),
        WriterOptions {
            spill: Some(spill.clone()),
            ..WriterOptions::default()
        },
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(writer.run(token.clone()));
    assert!(tx.offer(common::fault("prod", "0000000000000000")));
    wait_until("the first fault written", DEADLINE, || async {
        (!e2e_support::all_incidents(&store).await.is_empty()).then_some(())
    })
    .await;

    // Damage the schema from another connection, as a disk error or a bad copy would.
    let mut c = sqlx::SqliteConnection::connect(&common::sqlite_url(dir.path()))
        .await
        .expect("second connection");
    sqlx::query("PRAGMA writable_schema = ON")
        .execute(&mut c)
        .await
        .expect("writable_schema");
    sqlx::query(
        "UPDATE sqlite_master SET sql = 'CREATE TABLE incidents(' WHERE name = 'incidents'",
    )
    .execute(&mut c)
    .await
    .expect("damaging the schema");
    let version: i64 = sqlx::query_scalar("PRAGMA schema_version")
        .fetch_one(&mut c)
        .await
        .expect("schema_version");
    sqlx::query(&format!("PRAGMA schema_version = {}", version + 1))
        .execute(&mut c)
        .await
        .expect("bumping schema_version");
    drop(c);

    for i in 1..=5 {
        assert!(tx.offer(common::fault("prod", &format!("{i:016x}"))));
    }
    wait_until("the faults spilled", DEADLINE, || async {
        (health.is_ingest_degraded() && tx.depth() == 0).then_some(())
    })
    .await;
    token.cancel();
    task.await.expect("writer");
    assert!(spill.path().exists());

    // The next start (a repaired database): the spilled faults are offered first.
    let (tx2, _rx2) = channel(1000);
    reingest(&spill, &tx2);
    assert_eq!(tx2.depth(), 5);
    assert!(!spill.path().exists(), "the spill file is consumed");
}
