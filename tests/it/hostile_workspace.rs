//! Issue #13, "the workspace is the agent's": an agent that plants symlinks, HTML pages,
//! huge reports or processes that leave its group gets nowhere. Real agent scripts, real files,
//! the real reporter, HTTP router and binary.

use crate::support::agent as agent_support;
use crate::support::report as report_support;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use agent_support::{alive, config, incident, occurrences, recorded_pids, run_once, script_agent};
use nightcrier::agent::{marker_value, AgentRunner, Workspace, MARKER_VAR, MAX_REPORT_BYTES};
use nightcrier::config::Secret;
use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::incident::IncidentStatus;
use nightcrier::report::{Reporter, ReporterSettings};
use nightcrier::store::Store;
use report_support::common::sqlite_store;
use report_support::finished;
use tokio_util::sync::CancellationToken;

const REPORT: &str =
    "# Investigation\n\n## Summary\nThe pod crash-loops.\n\n## Root Cause\nA missing ConfigMap.\n";

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn reporter(store: &Store, root: &Path) -> Reporter {
    Reporter::new(
        store.clone(),
        ReporterSettings {
            workspace_root: root.to_path_buf(),
            base_url: None,
            poll_interval: Duration::from_millis(50),
            max_attempts: 1,
            failure_threshold: 3,
            batch: 50,
        },
    )
}

/// Item 1: the reporter's temporary file and the `output/` directory are the agent's; a
/// symlink at either is not followed.
#[tokio::test]
async fn the_reporter_never_writes_through_symlinks_the_agent_planted() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let victim = dir.path().join("victim.conf");
    fs::write(&victim, "VICTIM").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("investigation.md"), "# SECRET-OUTSIDE\n").unwrap();

    let planted_tmp = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(REPORT),
    )
    .await;
    let ws = Workspace::new(&root, planted_tmp.id);
    symlink(&victim, ws.output_dir().join("investigation.html.tmp")).unwrap();

    let planted_dir = finished(
        &store,
        &root,
        "f2",
        IncidentStatus::Succeeded,
        None,
        Some(REPORT),
    )
    .await;
    let ws2 = Workspace::new(&root, planted_dir.id);
    fs::remove_dir_all(ws2.output_dir()).unwrap();
    symlink(&elsewhere, ws2.output_dir()).unwrap();

    let counts = reporter(&store, &root).run_once().await.unwrap();
    assert_eq!(counts.reported, 2, "{counts:?}");

    assert_eq!(fs::read_to_string(&victim).unwrap(), "VICTIM");
    let html = ws.output_dir().join("investigation.html");
    assert!(fs::symlink_metadata(&html).unwrap().file_type().is_file());
    assert!(fs::read_to_string(&html)
        .unwrap()
        .contains("A missing ConfigMap."));

    let outside: Vec<String> = fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        outside,
        vec!["investigation.md".to_string()],
        "nothing written outside"
    );
}

/// Items 1 and 3: a report reached through a symlinked `output/` is outside the workspace: the
/// run has no report.
#[tokio::test]
async fn a_report_outside_the_workspace_is_not_a_report() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("investigation.md"), "s".repeat(500)).unwrap();
    let mut agent = script_agent("output_elsewhere.sh");
    agent.env.insert(
        "ELSEWHERE".into(),
        Secret::new(elsewhere.display().to_string()),
    );
    let config = config(root.path(), agent);
    let incident = incident("prod");
    let report = run_once(&config, &incident).await;
    assert_eq!(report.outcome.status, IncidentStatus::Failed, "{report:?}");
    assert_eq!(report.outcome.reason.as_deref(), Some("report missing"));
}

/// Item 2: preparing a retried run tightens and cleans its own directories, never the targets
/// of symlinks a previous attempt left in their place.
#[tokio::test]
async fn a_retried_run_does_not_follow_symlinked_directories() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    for f in [
        "investigation.md",
        "investigation.html",
        "last-message.txt",
        "settings.json",
    ] {
        fs::write(outside.join(f), "KEEP").unwrap();
    }
    let config = config(root.path(), script_agent("success.sh"));
    let incident = incident("prod");
    let ws = Workspace::new(root.path(), incident.id);
    ws.prepare().unwrap();
    // What attempt 1's agent left: its directories replaced by symlinks to `outside`, and a
    // file where `logs/` belongs.
    for dir in [ws.output_dir(), ws.state_dir()] {
        fs::remove_dir_all(&dir).unwrap();
        symlink(&outside, &dir).unwrap();
    }
    fs::remove_dir_all(ws.dir().join("logs")).unwrap();
    fs::write(ws.dir().join("logs"), "not a directory").unwrap();

    let report = AgentRunner::new(&config)
        .run(
            &incident,
            &occurrences(&incident, 1),
            2,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );

    assert_eq!(
        mode(&outside),
        0o755,
        "the outside directory's mode is unchanged"
    );
    for f in [
        "investigation.md",
        "investigation.html",
        "last-message.txt",
        "settings.json",
    ] {
        assert_eq!(fs::read_to_string(outside.join(f)).unwrap(), "KEEP", "{f}");
    }
    for dir in [ws.output_dir(), ws.state_dir(), ws.dir().join("logs")] {
        let meta = fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir(), "{} is a real directory again", dir.display());
        assert_eq!(mode(&dir), 0o700);
    }
    assert!(fs::read_to_string(ws.log_file())
        .unwrap()
        .contains("agent stdout line 1"));
}

/// Item 3: the report is checked and read through one descriptor: once opened, swapping a
/// symlink in at its name changes nothing.
#[test]
fn a_report_swapped_after_the_open_is_not_what_is_read() {
    let root = tempfile::tempdir().unwrap();
    let ws = Workspace::new(root.path(), uuid::Uuid::now_v7());
    ws.prepare().unwrap();
    fs::write(ws.report_file(), REPORT).unwrap();
    let secret = root.path().join("shadow");
    fs::write(&secret, "root:SECRET-HASH").unwrap();
    let entry = ws.open_file(&ws.report_file()).unwrap();
    fs::remove_file(ws.report_file()).unwrap();
    symlink(&secret, ws.report_file()).unwrap();
    let nightcrier::agent::FileEntry::File { file, len } = entry else {
        panic!("the report is a regular file");
    };
    let read = nightcrier::agent::read_bounded(file, len, MAX_REPORT_BYTES).unwrap();
    assert_eq!(
        read,
        nightcrier::agent::Bounded::Content(REPORT.as_bytes().to_vec())
    );
    // And opened now, the symlink is refused; so is a hard link to a file outside.
    assert!(ws
        .read(&ws.report_file(), MAX_REPORT_BYTES)
        .unwrap()
        .is_none());
    let hard = ws.output_dir().join("hard.md");
    fs::hard_link(&secret, &hard).unwrap();
    assert!(ws.read(&hard, MAX_REPORT_BYTES).unwrap().is_none());
}

struct Served {
    addr: std::net::SocketAddr,
    token: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn serve(store: Store, root: &Path) -> Served {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let state = HttpState::new(store, Health::new(), metrics).with_workspace_root(root);
    let server = HttpServer::bind("127.0.0.1:0", state).await.unwrap();
    let addr = server.local_addr();
    let token = CancellationToken::new();
    tokio::spawn(server.run(token.clone()));
    Served { addr, token }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Item 4: an `investigation.html` the agent wrote is never served; the report page is
/// nightcrier's rendering of the Markdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_the_agent_wrote_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let planted = "<meta http-equiv=\"refresh\" content=\"0; url=https://phish.example\">PLANTED";
    let failed = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Failed,
        Some("exit code 1"),
        None,
    )
    .await;
    let ok = finished(
        &store,
        &root,
        "f2",
        IncidentStatus::Succeeded,
        None,
        Some(REPORT),
    )
    .await;
    for id in [failed.id, ok.id] {
        let ws = Workspace::new(&root, id);
        fs::write(ws.output_dir().join("investigation.html"), planted).unwrap();
    }
    let srv = serve(store, &root).await;

    let (status, body) = get(srv.addr, &format!("/incidents/{}/report", failed.id)).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        !body.contains("PLANTED") && !body.contains("phish"),
        "{body}"
    );

    let (status, body) = get(srv.addr, &format!("/incidents/{}/report", ok.id)).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("PLANTED") && !body.contains("phish"),
        "{body}"
    );
    assert!(body.contains("A missing ConfigMap."), "{body}");
}

/// Item 13: a report over the limit fails the run with that reason, and the incident page
/// says the report is too large instead of answering 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_over_the_limit_fails_the_run_and_the_page_says_so() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), script_agent("huge_report.sh"));
    let inc = incident("prod");
    let report = run_once(&config, &inc).await;
    assert_eq!(report.outcome.status, IncidentStatus::Failed, "{report:?}");
    let reason = report.outcome.reason.unwrap_or_default();
    assert!(
        reason.starts_with("report too large (") && reason.contains(&MAX_REPORT_BYTES.to_string()),
        "{reason}"
    );

    // A run recorded as succeeded whose report grew past the limit afterwards still has a page.
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let ws_root = dir.path().join("incidents");
    let big = "z".repeat(MAX_REPORT_BYTES as usize + 10);
    let inc = finished(
        &store,
        &ws_root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&big),
    )
    .await;
    let srv = serve(store, &ws_root).await;
    let (status, body) = get(srv.addr, &format!("/incidents/{}", inc.id)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("too large to render"), "{body}");
    assert!(
        body.contains(&(MAX_REPORT_BYTES + 10).to_string()),
        "{body}"
    );
    let (status, body) = get(srv.addr, &format!("/incidents/{}/report", inc.id)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("too large to render") && !body.contains("zzzz"),
        "{body}"
    );
}

/// Item 5: `nightcrier tail` refuses a symlinked `logs/agent.log`, like the HTTP route.
#[tokio::test]
async fn tail_refuses_a_symlinked_agent_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Failed,
        Some("exit code 1"),
        None,
    )
    .await;
    store.close().await;
    let secret = dir.path().join("shadow");
    fs::write(&secret, "root:SECRET-HASH\n").unwrap();
    let ws = Workspace::new(&root, inc.id);
    fs::remove_file(ws.log_file()).unwrap();
    symlink(&secret, ws.log_file()).unwrap();
    let cfg = dir.path().join("nightcrier.yaml");
    let yaml = serde_json::json!({
        "database": {"url": report_support::common::sqlite_url(dir.path())},
        "workspace_root": root.display().to_string(),
        "agent": {"preset": "command", "command": ["/bin/true"]},
        "clusters": [{"name": "prod-eu-1", "mcp": {"endpoint": "http://127.0.0.1:1/mcp"}}],
    });
    fs::write(&cfg, serde_yaml_ng::to_string(&yaml).unwrap()).unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_nightcrier"))
        .args(["--config", cfg.to_str().unwrap(), "tail", "--no-follow"])
        .arg(inc.id.to_string())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !stdout.contains("SECRET") && !stderr.contains("SECRET"),
        "{stdout}\n{stderr}"
    );
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
}

/// Item 6: a process the agent started with `setsid` (out of its process group) dies with the
/// run.
#[tokio::test]
async fn a_process_that_left_the_group_does_not_outlive_the_run() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), script_agent("setsid_escape.sh"));
    let inc = incident("prod");
    let report = run_once(&config, &inc).await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    let pids = recorded_pids(&report.workspace);
    let escaped: Vec<i32> = pids
        .iter()
        .filter(|(r, _)| r == "escaped")
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(escaped.len(), 1, "{pids:?}");
    let pid = escaped[0];
    let alive_now = alive(pid);
    if alive_now {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!alive_now, "the setsid process {pid} outlived its run");
}

/// Item 6, at start-up: marked processes of runs that are over are killed; a marker this
/// store does not know (another nightcrier's) is left alone.
#[tokio::test]
async fn start_up_kills_marked_processes_of_finished_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let done = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(REPORT),
    )
    .await;
    let spawn = |marker: String| {
        std::process::Command::new("setsid")
            .args(["sleep", "1000"])
            .env(MARKER_VAR, marker)
            .spawn()
            .unwrap()
    };
    let mut ours = spawn(marker_value(done.id, done.attempt));
    let foreign_id = uuid::Uuid::now_v7();
    let mut foreign = spawn(marker_value(foreign_id, 1));
    let (ours_pid, foreign_pid) = (ours.id() as i32, foreign.id() as i32);
    agent_support::wait_for("both markers visible", Duration::from_secs(10), || {
        let groups = nightcrier::agent::find_agent_groups();
        [done.id, foreign_id]
            .iter()
            .all(|id| groups.iter().any(|g| g.incident_id == *id))
    })
    .await;

    let runner = AgentRunner::new(&config(&root, script_agent("success.sh")));
    nightcrier::worker::reconcile_restart(&store, &runner, "test-instance", "test-instance:1", 3)
        .await
        .unwrap();

    let ours_alive = alive(ours_pid);
    let foreign_alive = alive(foreign_pid);
    for child in [&mut ours, &mut foreign] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        !ours_alive,
        "a marked process of a finished run survived start-up"
    );
    assert!(foreign_alive, "another store's agent was killed");
}
