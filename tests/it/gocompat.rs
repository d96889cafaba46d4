//! Moving from the Go nightcrier: its example configurations imported (and accepted by
//! `config check`), its database refused and then imported, its `/health/clusters` shape.
//! Everything runs the real binary, real SQLite files and real HTTP on loopback.

use crate::support::common;

use common::gosqlite::{go_database, GO_INCIDENTS};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nightcrier::config::{AgentPreset, ClusterConfig, McpConfig, TriageConfig};
use nightcrier::health::Health;
use nightcrier::http::{HttpServer, HttpState};
use nightcrier::incident::{ConnectionState, IncidentStatus};
use nightcrier::store::{ListFilter, Store};
use nightcrier::telemetry::install_metrics_recorder;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_nightcrier");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/go")
        .join(name)
}

/// The binary with no inherited configuration or Go variables, plus `env`.
fn nightcrier(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running nightcrier")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const EXAMPLES: &[&str] = &[
    "config.example.yaml",
    "config-example-claude.yaml",
    "config-example-codex.yaml",
    "config-example-gemini.yaml",
    "config-example-goose.yaml",
];

/// Imports a Go example into `dir/nightcrier.yaml` and returns its text.
fn import(dir: &Path, example: &str, env: &[(&str, &str)]) -> String {
    let go = fixture(example);
    let tuning = fixture("tuning.yaml");
    let out = nightcrier(
        &[
            "config",
            "import-go",
            go.to_str().unwrap(),
            "--tuning",
            tuning.to_str().unwrap(),
        ],
        env,
        dir,
    );
    assert!(out.status.success(), "{example}: {}", text(&out.stderr));
    let yaml = text(&out.stdout);
    std::fs::write(dir.join("nightcrier.yaml"), &yaml).unwrap();
    yaml
}

#[test]
fn every_go_example_imports_into_a_configuration_config_check_accepts() {
    for example in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        let yaml = import(dir.path(), example, &[]);
        let check = nightcrier(
            &["config", "check", "--config", "nightcrier.yaml"],
            &[],
            dir.path(),
        );
        assert!(
            check.status.success(),
            "{example}: config check refused the import:\n{}\n--- output ---\n{yaml}",
            text(&check.stderr)
        );
        assert!(text(&check.stdout).starts_with("# configuration OK"));
        // The notes say what to do with what did not translate.
        for key in [
            "severity_threshold",
            "global_queue_size",
            "agent_image",
            "log_level",
        ] {
            assert!(
                yaml.contains(&format!("- {key}"))
                    || yaml.contains(&format!("{key}:"))
                    || yaml.contains(&format!("- {key} ")),
                "{example}: no note on {key}:\n{yaml}"
            );
        }
        // Go's environment variables are listed with their nightcrier names.
        assert!(yaml.contains("SLACK_WEBHOOK_URL") && yaml.contains("NIGHTCRIER_WORKSPACE_ROOT"));
    }
}

#[test]
fn imported_values_are_the_go_values_in_nightcrier_keys() {
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), "config-example-codex.yaml", &[]);
    let c = nightcrier::config::load(Some(&dir.path().join("nightcrier.yaml")), Vec::new())
        .expect("loads")
        .config;
    assert_eq!(c.agent.preset, AgentPreset::Codex);
    // `sonnet` was the Go codex runner's alias of gpt-5.2.
    assert_eq!(c.agent.model.as_deref(), Some("gpt-5.2"));
    assert_eq!(c.agent.timeout, Duration::from_secs(300));
    assert_eq!(c.agent.kill_grace, Duration::from_secs(60)); // tuning timeout_buffer_seconds
    assert_eq!(c.agent.min_report_bytes, 100);
    assert_eq!(
        c.agent.system_prompt_file.as_deref(),
        Some(Path::new("./configs/triage-system-prompt.md"))
    );
    assert_eq!(c.limits.max_concurrent_agents, 5);
    assert_eq!(c.dedup.cooldown, Duration::from_secs(300));
    assert_eq!(c.reconnect.initial_backoff, Duration::from_secs(1));
    assert_eq!(c.reconnect.max_backoff, Duration::from_secs(60));
    assert_eq!(c.worker.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.notifications.failure_threshold, 3);
    assert_eq!(c.workspace_root, PathBuf::from("./incidents"));
    // Never the Go file itself.
    assert_eq!(c.database.url.expose(), "sqlite://./data/nightcrier-rs.db");
    assert_eq!(c.clusters.len(), 1);
    let cl = &c.clusters[0];
    assert_eq!(cl.name, "my-cluster");
    assert_eq!(cl.environment.as_deref(), Some("production"));
    assert_eq!(cl.mcp.endpoint, "http://kubernetes-mcp-server:8080/mcp");
    assert!(cl.triage.enabled);
    assert_eq!(
        cl.triage.kubeconfig.as_deref(),
        Some(Path::new("./kubeconfigs/my-cluster-readonly.yaml"))
    );

    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), "config-example-claude.yaml", &[]);
    let c = nightcrier::config::load(Some(&dir.path().join("nightcrier.yaml")), Vec::new())
        .unwrap()
        .config;
    assert_eq!(c.agent.preset, AgentPreset::Claude);
    assert_eq!(c.agent.model.as_deref(), Some("sonnet"));
    // Go allowed Read,Write,Grep,Glob,Bash,Skill; the preset already allows Read Write Edit Bash.
    assert_eq!(
        c.agent.extra_args,
        ["--allowedTools", "Grep", "Glob", "Skill"]
    );

    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), "config-example-gemini.yaml", &[]);
    let c = nightcrier::config::load(Some(&dir.path().join("nightcrier.yaml")), Vec::new())
        .unwrap()
        .config;
    assert_eq!(c.agent.preset, AgentPreset::Gemini);
    assert_eq!(c.agent.model.as_deref(), Some("gemini-2.0-flash-exp"));
}

#[test]
fn go_environment_variables_are_applied_and_secrets_stay_out_of_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "https://hooks.slack.com/services/T0/B0/very-secret-token";
    let yaml = import(
        dir.path(),
        "config-example-claude.yaml",
        &[
            ("SLACK_WEBHOOK_URL", secret),
            ("ANTHROPIC_API_KEY", "sk-ant-do-not-copy"),
            ("WORKSPACE_ROOT", "/srv/incidents"),
            ("AGENT_MODEL", "opus"),
        ],
    );
    assert!(!yaml.contains("very-secret-token") && !yaml.contains("sk-ant-do-not-copy"));
    assert!(yaml.contains("NIGHTCRIER_NOTIFICATIONS__SLACK__WEBHOOK_URL=\"$SLACK_WEBHOOK_URL\""));
    assert!(yaml.contains("NIGHTCRIER_AGENT__ENV__ANTHROPIC_API_KEY"));
    let c = nightcrier::config::load(Some(&dir.path().join("nightcrier.yaml")), Vec::new())
        .unwrap()
        .config;
    assert_eq!(c.workspace_root, PathBuf::from("/srv/incidents"));
    assert_eq!(c.agent.model.as_deref(), Some("opus"));
    // With the variable nightcrier reads, the Slack webhook is configured and still redacted.
    let check = nightcrier(
        &["config", "check", "--config", "nightcrier.yaml"],
        &[
            ("NIGHTCRIER_NOTIFICATIONS__SLACK__WEBHOOK_URL", secret),
            // Required with Slack (links must reach the endpoint); the Go file has none.
            (
                "NIGHTCRIER_REPORTING__BASE_URL",
                "https://nightcrier.example.com",
            ),
        ],
        dir.path(),
    );
    assert!(check.status.success(), "{}", text(&check.stderr));
    let shown = text(&check.stdout);
    assert!(
        shown.contains("webhook_url") && !shown.contains("very-secret-token"),
        "{shown}"
    );
}

#[test]
fn a_file_that_is_not_a_go_configuration_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("other.yaml");
    std::fs::write(&bad, "database:\n  url: sqlite://x.db\n").unwrap();
    let out = nightcrier(
        &["config", "import-go", bad.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no `clusters` list"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The Go database.

fn config_for(dir: &Path, db: &Path) -> PathBuf {
    let cfg = dir.join("nightcrier.yaml");
    std::fs::write(
        &cfg,
        format!(
            "database:\n  url: \"sqlite://{}\"\nworkspace_root: \"{}/ws\"\nhttp:\n  listen: \"\"\n",
            db.display(),
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_database_is_refused_untouched_then_imported() {
    let dir = tempfile::tempdir().unwrap();
    let go_db = dir.path().join("data/nightcrier.db");
    std::fs::create_dir_all(go_db.parent().unwrap()).unwrap();
    go_database(&go_db).await;
    let before = std::fs::read(&go_db).unwrap();

    // Pointed at the Go file, nightcrier stops with the message, not an SQL error.
    let cfg = config_for(dir.path(), &go_db);
    for args in [&["migrate"][..], &["status"][..]] {
        let mut all = args.to_vec();
        all.extend(["--config", cfg.to_str().unwrap()]);
        let out = nightcrier(&all, &[], dir.path());
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted the Go database");
        assert!(
            err.contains("holds the Go nightcrier's tables")
                && err.contains("nightcrier migrate --import-go"),
            "{args:?}: {err}"
        );
    }
    assert!(
        std::fs::read(&go_db).unwrap() == before,
        "the Go file was modified"
    );
    assert!(!dir.path().join("data/nightcrier.db-wal").exists());

    // Another path, and the import.
    let ours = dir.path().join("data/nightcrier-rs.db");
    let cfg = config_for(dir.path(), &ours);
    let out = nightcrier(
        &[
            "migrate",
            "--import-go",
            go_db.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("imported 3 incident(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        std::fs::read(&go_db).unwrap() == before,
        "the Go file was modified"
    );

    // Again: nothing doubles.
    let out = nightcrier(
        &[
            "migrate",
            "--import-go",
            go_db.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    assert!(
        text(&out.stdout).contains("imported 0 incident(s)")
            && text(&out.stdout).contains("3 already present"),
        "{}",
        text(&out.stdout)
    );

    let store = Store::connect(common::store_options(&format!(
        "sqlite://{}",
        ours.display()
    )))
    .await
    .unwrap();
    let all = store
        .list(&ListFilter {
            limit: Some(10),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let by_id = |id: &str| all.iter().find(|i| i.id.to_string() == id).unwrap().clone();
    let ok = by_id(GO_INCIDENTS[0].0);
    assert_eq!(ok.status, IncidentStatus::Succeeded);
    assert_eq!(ok.cluster, "prod-us-east-1");
    assert_eq!(
        (ok.fault_id.as_str(), ok.fault_type.as_str()),
        ("fault-0", "CrashLoop")
    );
    assert_eq!(
        (ok.resource_kind.as_str(), ok.resource_name.as_str()),
        ("Pod", "web-0")
    );
    assert_eq!(ok.created_at.to_rfc3339(), "2025-12-20T10:00:01+00:00");
    assert_eq!(
        ok.started_at.unwrap().to_rfc3339(),
        "2025-12-20T10:00:05.500+00:00"
    );
    assert_eq!(
        ok.finished_at.unwrap().to_rfc3339(),
        "2025-12-20T10:03:05.500+00:00"
    );
    let runs = store.agent_runs(ok.id).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].exit_code, Some(0));
    assert_eq!(
        runs[0].log_path.as_deref(),
        Some(format!("/srv/incidents/{}/logs/agent-stdout.log", GO_INCIDENTS[0].0).as_str())
    );
    let failed = by_id(GO_INCIDENTS[1].0);
    assert_eq!(failed.status, IncidentStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("agent exited with code 2")
    );
    // Left `investigating` by Go: old news, not re-run.
    let stale = by_id(GO_INCIDENTS[2].0);
    assert_eq!(stale.status, IncidentStatus::Expired);
    assert!(stale.failure_reason.unwrap().contains("investigating"));
    assert_eq!(store.occurrences(stale.id, 10).await.unwrap().len(), 1);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// /health/clusters.

/// The JSON type of every path in a document (`clusters[].labels.team: string`).
fn shape(v: &Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                shape(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for v in items {
                shape(v, &format!("{path}[]"), out);
            }
        }
        Value::String(_) => {
            out.insert(format!("{path}: string"));
        }
        Value::Number(_) => {
            out.insert(format!("{path}: number"));
        }
        Value::Bool(_) => {
            out.insert(format!("{path}: bool"));
        }
        Value::Null => {
            out.insert(format!("{path}: null"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_clusters_has_the_go_shape_and_values() {
    let metrics = install_metrics_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = common::sqlite_store(dir.path()).await;
    let at = chrono::DateTime::parse_from_rfc3339("2025-12-20T10:11:12.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let state = |cluster: &str, state: &str, error: Option<&str>, n: i64, last| ConnectionState {
        cluster: cluster.into(),
        state: state.parse().unwrap(),
        subscription_id: None,
        last_error: error.map(str::to_string),
        last_event_at: last,
        events_received: n,
        events_malformed: 0,
        reconnects: 0,
        updated_at: at,
    };
    store
        .put_connection_state(&state("prod-us-east-1", "subscribed", None, 42, Some(at)))
        .await
        .unwrap();
    store
        .put_connection_state(&state(
            "staging",
            "backing_off",
            Some("connection refused"),
            0,
            None,
        ))
        .await
        .unwrap();
    let cluster = |name: &str, triage: bool, labels: &[(&str, &str)]| ClusterConfig {
        name: name.into(),
        mcp: McpConfig::new("http://127.0.0.1:1/mcp"),
        triage: TriageConfig {
            enabled: triage,
            kubeconfig: None,
        },
        agent: None,
        evidence: Default::default(),
        environment: None,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut clusters = vec![
        cluster(
            "prod-us-east-1",
            true,
            &[("team", "platform"), ("region", "us-east-1")],
        ),
        cluster("staging", false, &[]),
    ];
    clusters[0].environment = Some("production".into());
    nightcrier::telemetry::record_cluster_info(&clusters);
    let server = HttpServer::bind(
        "127.0.0.1:0",
        HttpState::new(store.clone(), Health::new(), metrics).with_clusters(clusters),
    )
    .await
    .unwrap();
    let url = format!("http://{}/health/clusters", server.local_addr());
    let token = CancellationToken::new();
    let task = tokio::spawn(server.run(token.clone()));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ours: Value = resp.json().await.unwrap();
    let go: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("health_clusters.json")).unwrap())
            .unwrap();
    let (mut a, mut b) = (Default::default(), Default::default());
    shape(&ours, "", &mut a);
    shape(&go, "", &mut b);
    assert_eq!(
        a, b,
        "shape differs from the Go response:\nours: {ours:#}\ngo: {go:#}"
    );
    // The same values too (the fixture describes the same two clusters).
    assert_eq!(ours, go);
    // The environment is a bounded metrics label; labels are not.
    let metrics = reqwest::get(url.replace("/health/clusters", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"nightcrier_cluster_info{cluster="prod-us-east-1",environment="production"} 1"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("platform"));
    token.cancel();
    task.await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Operations: --version and run --check.

#[test]
fn version_names_the_release_and_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = nightcrier(&["--version"], &[], dir.path());
    let v = text(&out.stdout);
    assert!(
        v.starts_with(&format!(
            "nightcrier {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{v}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(o) if o.status.success() => {
            let commit = text(&o.stdout);
            assert!(v.contains(&format!("(commit {})", commit.trim())), "{v}");
        }
        // Built outside a git checkout (and without NIGHTCRIER_COMMIT).
        _ => assert!(v.contains("(commit unknown)"), "{v}"),
    }
}

#[test]
fn run_check_fails_fast_with_one_line_per_missing_piece() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nightcrier.yaml");
    std::fs::write(
        &cfg,
        format!(
            "database:\n  url: \"sqlite://{0}/nc.db\"\nagent:\n  preset: codex\n  binary: {0}/bin/codex\nclusters:\n  - name: prod\n    mcp: {{endpoint: \"http://127.0.0.1:1/mcp\"}}\n    triage: {{enabled: true, kubeconfig: {0}/kube/prod.yaml}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = nightcrier(
        &["run", "--check", "--config", cfg.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    assert!(errors[0].contains("bin/codex"), "{err}");
    assert!(errors[1].contains("OPENAI_API_KEY"), "{err}");
    assert!(errors[2].contains("kube/prod.yaml"), "{err}");
    // Nothing was started: no database file.
    assert!(!dir.path().join("nc.db").exists());

    // Everything in place: exit 0.
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("kube")).unwrap();
    std::fs::write(dir.path().join("bin/codex"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("bin/codex"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(dir.path().join("kube/prod.yaml"), "apiVersion: v1\n").unwrap();
    let out = nightcrier(
        &["run", "--check", "--config", cfg.to_str().unwrap()],
        &[("NIGHTCRIER_AGENT__ENV__OPENAI_API_KEY", "sk-test")],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("run check OK"));
}
