//! The demo agent reads the evidence bundle gathered from the simulated cluster and names each
//! scenario's real root cause, in the report and in `output/verdict.json`.

use std::time::Duration;

use nightcrier::config::{EvidenceConfig, McpConfig};
use nightcrier::demo::agent::run_with;
use nightcrier::evidence::{self, Target, EVIDENCE_DIR};
use nightcrier::report::verdict;
use nightcrier::simulate::{Scenario, SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn demo_reports_name_every_scenarios_root_cause() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    for scenario in Scenario::ALL {
        let spec = scenario.example(13);
        sim.add_to_cluster(&spec);
        let ws = tempfile::tempdir().unwrap();
        let target = Target {
            cluster: "sim-1",
            fault_type: &spec.fault_type,
            kind: &spec.kind,
            namespace: spec.namespace.as_deref(),
            name: &spec.name,
        };
        evidence::gather(
            &reqwest::Client::new(),
            &McpConfig::new(sim.endpoint()),
            &EvidenceConfig::default(),
            target,
            &ws.path().join(EVIDENCE_DIR),
            &CancellationToken::new(),
        )
        .await;
        let incident = serde_json::json!({"incident": {
            "id": "0193", "cluster": "sim-1", "fault_type": spec.fault_type,
            "severity": spec.severity, "resource_kind": spec.kind,
            "namespace": spec.namespace, "resource_name": spec.name,
            "context": spec.context, "occurrences": 1}});
        let inc = ws.path().join("incident.json");
        std::fs::write(&inc, incident.to_string()).unwrap();
        let report_file = ws.path().join("output/investigation.md");
        run_with(&inc, &report_file, Duration::ZERO).await.unwrap();

        let report = std::fs::read_to_string(&report_file)
            .unwrap()
            .to_lowercase();
        let v = verdict::read(ws.path()).expect("a verdict");
        let cause = v.root_cause.clone().unwrap_or_default().to_lowercase();
        for k in scenario.root_cause_keywords() {
            assert!(cause.contains(k), "{scenario:?}: {k:?} not in {cause:?}");
            assert!(report.contains(k), "{scenario:?}: {k:?} not in the report");
        }
        assert_eq!(v.category.as_deref(), Some(scenario.category()));
        assert_eq!(v.confidence.as_deref(), Some("high"));
        assert!(
            v.evidence.iter().all(|e| e.starts_with("evidence/")),
            "{:?}",
            v.evidence
        );
        assert!(
            ws.path().join(&v.evidence[0]).is_file(),
            "{:?} exists",
            v.evidence[0]
        );
        // The report's own verdict line says the same.
        let line = verdict::from_report(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
        assert_eq!(line.root_cause, v.root_cause);
        for section in nightcrier::agent::REPORT_SECTIONS {
            assert!(
                report.contains(&format!("## {}", section.to_lowercase())),
                "{section}"
            );
        }
    }
}
