//! The per-run phase event (`nightcrier::run_phases`, debug) that the runs benchmark reads from
//! the binary's JSON log: one run of a real `/bin/sh` agent, the event captured through the
//! application's own JSON subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::agent as agent_support;
use agent_support::*;
use nightcrier::agent::{phases::PHASES_TARGET, AgentRunner};
use nightcrier::config::{AgentConfig, AgentPreset};
use nightcrier::incident::IncidentStatus;
use nightcrier::telemetry::{build_subscriber, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_run_reports_where_its_time_went() {
    let root = tempfile::tempdir().unwrap();
    let agent = AgentConfig {
        preset: AgentPreset::Command,
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "printf '%0200d\\n' 0 > \"$1\"".into(),
            "agent".into(),
            "{report_file}".into(),
        ],
        ..script_agent("unused")
    };
    let config = config(root.path(), agent);
    let incident = incident("prod");
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = build_subscriber(
        LogFormat::Json,
        &format!("{PHASES_TARGET}=debug"),
        false,
        move || writer.clone(),
    )
    .unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);

    let report = AgentRunner::new(&config)
        .run(
            &incident,
            &occurrences(&incident, 1),
            1,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["target"] == PHASES_TARGET)
        .collect();
    assert_eq!(events.len(), 1, "one phase event per run: {text}");
    let e = &events[0];
    assert_eq!(e["side"], "agent");
    assert_eq!(e["incident_id"], incident.id.to_string());
    assert_eq!(e["attempt"], 1);
    let us = |k: &str| {
        e[format!("{k}_us")]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}_us in {e}"))
    };
    for k in [
        "proxy", "evidence", "prepare", "spawn", "reap", "evaluate", "log", "usage",
    ] {
        us(k);
    }
    assert!(us("process") > 0, "the agent's own time is measured: {e}");
    assert!(us("spawn") <= us("process"), "{e}");
    assert!(
        us("total") >= us("process") + us("evidence") + us("prepare"),
        "{e}"
    );
}
