//! The real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) in front of the real
//! `nightcrier` binary, on loopback: alerts posted to Alertmanager's own API (`/api/v2/alerts`)
//! are grouped and sent by Alertmanager to nightcrier's receiver with `http_config` credentials,
//! become incidents and an agent run; a wrong token is refused (401, nothing recorded) and
//! Alertmanager's next attempts succeed once the token file is fixed; resolving the alerts
//! (`endsAt` in the past) ends the pending incident as `resolved` and stops the running one.
//!
//! Alertmanager is not vendored: `scripts/install-test-tools.sh alertmanager` installs the
//! package when it is missing (the test runs it), or point `NIGHTCRIER_TEST_ALERTMANAGER_BIN`
//! at a binary. Without it the test fails.

use crate::support::e2e as e2e_support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use e2e_support::*;
use nightcrier::incident::IncidentStatus;
use nightcrier::store::RESOLVED_RUN_REASON;
use serde_json::{json, Value};

const GOOD_TOKEN: &str = "e2e-alertmanager-token";
const AGENT: &str = "#!/bin/sh\necho ready > output/ready\nsleep 300\n";

fn alertmanager_binary() -> PathBuf {
    if let Ok(path) = std::env::var("NIGHTCRIER_TEST_ALERTMANAGER_BIN") {
        return PathBuf::from(path);
    }
    let default = PathBuf::from("/usr/bin/prometheus-alertmanager");
    if default.exists() {
        return default;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-test-tools.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg("alertmanager")
        .status();
    match status {
        Ok(s) if s.success() && default.exists() => default,
        other => panic!(
            "prometheus-alertmanager is not installed and `{} alertmanager` failed ({other:?}): \
             it needs root and apt; or set NIGHTCRIER_TEST_ALERTMANAGER_BIN",
            script.display()
        ),
    }
}

/// A port free a moment ago (Alertmanager takes its address as a flag).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running Alertmanager; killed and reaped on drop.
struct Alertmanager {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- alertmanager log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Alertmanager {
    async fn start(dir: &Path, receiver_url: &str, token_file: &Path) -> Alertmanager {
        let config = format!(
            "route:\n  receiver: nightcrier\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nightcrier\n    \
             webhook_configs:\n      - url: {receiver_url}\n        send_resolved: true\n        \
             http_config:\n          authorization:\n            type: Bearer\n            \
             credentials_file: {}\n",
            token_file.display()
        );
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config).expect("writing alertmanager.yml");
        let data = dir.join("am-data");
        std::fs::create_dir_all(&data).expect("alertmanager data dir");
        let port = free_port();
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("alertmanager log");
        let child = Command::new(alertmanager_binary())
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("starting prometheus-alertmanager");
        let am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/-/ready", am.base);
        wait_until("alertmanager ready", DEADLINE, || async {
            let r = client.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        am
    }

    /// Posts alerts to Alertmanager's own API, as Prometheus does.
    async fn post_alerts(&self, alerts: &Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.base))
            .json(alerts)
            .send()
            .await
            .expect("POST /api/v2/alerts");
        assert!(
            resp.status().is_success(),
            "alertmanager answered {}",
            resp.status()
        );
    }
}

fn alerts(ends_at: Option<&str>) -> Value {
    let one = |pod: &str| {
        let mut a = json!({
            "labels": {"alertname": "KubePodCrashLooping", "cluster": "prod",
                       "namespace": "shop", "pod": pod, "severity": "critical"},
            "annotations": {"summary": format!("{pod} is crash looping"),
                            "runbook_url": "https://runbooks.example/KubePodCrashLooping"},
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=kube_pod_restarts",
        });
        if let Some(t) = ends_at {
            a["endsAt"] = json!(t);
        }
        a
    };
    json!([one("cart-1"), one("cart-2")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_through_the_real_alertmanager_become_incidents_and_resolve() {
    let _ = nightcrier::telemetry::init_tracing(nightcrier::telemetry::LogFormat::Text, None);
    let sim = simulator("prod").await;
    let rig = Rig::sqlite(&[&sim], AGENT);
    // The receiver on nightcrier's HTTP listener, one agent per cluster.
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&rig.setup.to_yaml(&rig.workspace_root())).expect("config");
    doc["intake"] = serde_yaml_ng::to_value(json!({
        "alertmanager": {"auth": {"bearer_token": GOOD_TOKEN}, "cancel_running_on_resolve": true}
    }))
    .expect("intake block");
    std::fs::write(
        rig.config_path(),
        serde_yaml_ng::to_string(&doc).expect("yaml"),
    )
    .expect("writing the config");

    let mut proc = rig.start_run();
    let addr = proc.http_addr().await;
    let store = rig.store().await;

    let token_file = rig.path().join("am-token");
    std::fs::write(&token_file, "not-the-token").expect("token file");
    let receiver = format!("http://{addr}/api/v1/alertmanager");
    let am = Alertmanager::start(rig.path(), &receiver, &token_file).await;

    am.post_alerts(&alerts(None)).await;
    // Alertmanager's notifications are refused: counted, nothing recorded.
    wait_until("a refused notification", DEADLINE, || async {
        let m = metrics(addr).await;
        m.value(
            "nightcrier_alerts_rejected_total",
            &[("source", "alertmanager"), ("reason", "unauthorized")],
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    assert!(all_incidents(&store).await.is_empty());

    // Fixed: Alertmanager's next flush of the group gets through.
    std::fs::write(&token_file, GOOD_TOKEN).expect("token file");
    let incidents = wait_until("two incidents, one running", DEADLINE, || async {
        let all = all_incidents(&store).await;
        let running = all
            .iter()
            .filter(|i| i.status == IncidentStatus::Running)
            .count();
        let pending = all
            .iter()
            .filter(|i| i.status == IncidentStatus::Pending)
            .count();
        (all.len() == 2 && running == 1 && pending == 1).then_some(all)
    })
    .await;
    for inc in &incidents {
        assert_eq!(inc.cluster, "prod");
        assert_eq!(inc.fault_type, "KubePodCrashLooping");
        assert!(inc.fault_id.starts_with("am-"), "{}", inc.fault_id);
        assert!(inc
            .context
            .contains("Runbook: https://runbooks.example/KubePodCrashLooping"));
        assert!(inc
            .context
            .contains("Source (generatorURL): http://prometheus.example:9090/graph"));
    }
    let running = incidents
        .iter()
        .find(|i| i.status == IncidentStatus::Running)
        .expect("running")
        .id;
    let pending = incidents
        .iter()
        .find(|i| i.status == IncidentStatus::Pending)
        .expect("pending")
        .id;
    wait_until("the agent started", DEADLINE, || async {
        (!agent_processes(&HashSet::from([running])).is_empty()).then_some(())
    })
    .await;
    let prompt = std::fs::read_to_string(
        rig.workspace_root()
            .join(running.to_string())
            .join("prompt.md"),
    )
    .expect("the agent's prompt");
    assert!(
        prompt.contains("Runbook: https://runbooks.example/KubePodCrashLooping"),
        "the agent is handed the runbook:\n{prompt}"
    );

    // Resolved at Alertmanager: a notification with both alerts resolved.
    let past = (chrono::Utc::now() - chrono::Duration::seconds(5)).to_rfc3339();
    am.post_alerts(&alerts(Some(&past))).await;
    wait_until("both incidents resolved", DEADLINE, || async {
        let all = all_incidents(&store).await;
        all.iter()
            .all(|i| i.status == IncidentStatus::Resolved)
            .then_some(())
    })
    .await;
    assert!(
        store.agent_runs(pending).await.unwrap().is_empty(),
        "no agent ran"
    );
    let run = &store.agent_runs(running).await.unwrap()[0];
    assert_eq!(run.outcome, Some(IncidentStatus::Cancelled));
    assert_eq!(run.reason.as_deref(), Some(RESOLVED_RUN_REASON));
    // The running agent is stopped when its heartbeat finds the lease gone.
    wait_until("the agent stopped", DEADLINE, || async {
        agent_processes(&HashSet::from([running]))
            .is_empty()
            .then_some(())
    })
    .await;
    let m = metrics(addr).await;
    assert_eq!(
        m.value(
            "nightcrier_incidents_resolved_total",
            &[("cluster", "prod"), ("resolution", "ended")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "nightcrier_incidents_resolved_total",
            &[("cluster", "prod"), ("resolution", "stopped")]
        ),
        Some(1.0)
    );
    proc.assert_alive();
    drop(am);
}
