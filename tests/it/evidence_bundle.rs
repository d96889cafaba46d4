//! The evidence bundle gathered against the simulated cluster: what is gathered for each
//! scenario, the bounds, and what happens when a tool errors or hangs or the server is down.

use std::time::Duration;

use nightcrier::config::{EvidenceConfig, McpConfig};
use nightcrier::evidence::{self, load_index, Bundle, Target, EVIDENCE_DIR};
use nightcrier::simulate::{FaultSpec, Scenario, SimConfig, SimHandle, Simulator, ToolFault};
use tokio_util::sync::CancellationToken;

async fn sim() -> SimHandle {
    Simulator::start(SimConfig {
        read_only: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn target(spec: &FaultSpec) -> Target<'_> {
    Target {
        cluster: "sim-1",
        fault_type: &spec.fault_type,
        kind: &spec.kind,
        namespace: spec.namespace.as_deref(),
        name: &spec.name,
    }
}

async fn gather(
    endpoint: &str,
    cfg: &EvidenceConfig,
    spec: &FaultSpec,
    ws: &std::path::Path,
) -> Bundle {
    evidence::gather(
        &reqwest::Client::new(),
        &McpConfig::new(endpoint),
        cfg,
        target(spec),
        &ws.join(EVIDENCE_DIR),
        &CancellationToken::new(),
    )
    .await
}

fn labels(b: &Bundle) -> Vec<&str> {
    b.index.calls.iter().map(|c| c.label.as_str()).collect()
}

fn highlights(b: &Bundle) -> String {
    evidence::highlights(b)
        .lines
        .iter()
        .map(|l| l.text.to_lowercase())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn every_scenario_yields_its_root_cause_in_the_highlights() {
    let sim = sim().await;
    let cfg = EvidenceConfig::default();
    for scenario in Scenario::ALL {
        let spec = scenario.example(9);
        sim.add_to_cluster(&spec);
        let ws = tempfile::tempdir().unwrap();
        let b = gather(&sim.endpoint(), &cfg, &spec, ws.path()).await;
        assert_eq!(b.index.session_error, None, "{scenario:?}");
        let l = labels(&b);
        let expected: &[&str] = match spec.kind.as_str() {
            "Pod" => &["pod", "log", "log-previous", "events", "owner-1", "owner-2"],
            "Node" => &["object", "events", "node-top"],
            _ => &["object", "events", "pods", "pod", "log", "log-previous"],
        };
        for e in expected {
            assert!(l.contains(e), "{scenario:?}: {e} missing from {l:?}");
        }
        // Every call has its file and its index entry; files hold what the index says.
        let index = load_index(ws.path()).expect("index.json");
        assert_eq!(index, b.index);
        for c in &index.calls {
            let file = c.file.as_ref().expect("an answer file");
            let len = std::fs::metadata(ws.path().join(EVIDENCE_DIR).join(file))
                .unwrap()
                .len();
            assert_eq!(len as usize, c.bytes, "{file}");
            assert!(c.bytes <= cfg.max_call_bytes);
        }
        let h = highlights(&b);
        for k in scenario.root_cause_keywords() {
            assert!(h.contains(k), "{scenario:?}: {k:?} not in highlights:\n{h}");
        }
    }
    // The previous log's panic is the first thing quoted for the crash loop.
    let spec = Scenario::MissingEnv.example(9);
    let ws = tempfile::tempdir().unwrap();
    let b = gather(&sim.endpoint(), &cfg, &spec, ws.path()).await;
    let first = &evidence::highlights(&b).lines[0];
    assert!(first
        .text
        .starts_with("panic: required environment variable DATABASE_URL"));
    assert!(first.file.ends_with("-log-previous.txt"), "{}", first.file);
}

#[tokio::test]
async fn a_tool_that_errors_or_hangs_is_a_recorded_gap() {
    let sim = sim().await;
    let spec = Scenario::OomKilled.example(9);
    sim.add_to_cluster(&spec);
    sim.set_tool_fault(
        "events_list",
        Some(ToolFault::Error("forbidden: events".into())),
    );
    sim.set_tool_fault("pods_log", Some(ToolFault::Hang));
    let cfg = EvidenceConfig {
        call_timeout: Duration::from_millis(300),
        ..EvidenceConfig::default()
    };
    let ws = tempfile::tempdir().unwrap();
    let b = gather(&sim.endpoint(), &cfg, &spec, ws.path()).await;
    let by = |label: &str| b.index.calls.iter().find(|c| c.label == label).unwrap();
    assert!(by("events").tool_error);
    assert_eq!(by("events").error.as_deref(), Some("forbidden: events"));
    let log = by("log-previous");
    assert!(
        log.error
            .as_deref()
            .unwrap()
            .contains("no reply within 300ms"),
        "{log:?}"
    );
    assert!(by("pod").answered(), "the other calls still answer");
    let gaps = evidence::highlights(&b).gaps;
    assert!(
        gaps.iter()
            .any(|g| g.starts_with("pods_log (log-previous)")),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn replies_over_the_byte_bound_are_gaps_not_files() {
    let sim = sim().await;
    let spec = Scenario::NodeNotReady.example(9);
    sim.add_to_cluster(&spec);
    sim.set_tool_fault("events_list", Some(ToolFault::Huge(10 * 1024 * 1024)));
    let cfg = EvidenceConfig {
        max_call_bytes: 64 * 1024,
        ..EvidenceConfig::default()
    };
    let ws = tempfile::tempdir().unwrap();
    let b = gather(&sim.endpoint(), &cfg, &spec, ws.path()).await;
    let events = b.index.calls.iter().find(|c| c.label == "events").unwrap();
    assert!(events
        .error
        .as_deref()
        .unwrap()
        .contains("larger than 65536 bytes"));
    assert_eq!(events.file, None);
    let total: usize = b.index.calls.iter().map(|c| c.bytes).sum();
    assert!(total <= b.index.calls.len() * cfg.max_call_bytes);
}

#[tokio::test]
async fn a_server_that_is_down_leaves_an_index_with_the_gap() {
    let sim = sim().await;
    let endpoint = sim.endpoint();
    sim.stop_serving().await;
    let spec = Scenario::MissingEnv.example(9);
    let ws = tempfile::tempdir().unwrap();
    let b = gather(&endpoint, &EvidenceConfig::default(), &spec, ws.path()).await;
    let why = b.index.session_error.as_deref().expect("a session error");
    assert!(
        why.starts_with("initialize: cannot reach the server"),
        "{why}"
    );
    assert!(b.index.calls.is_empty());
    assert_eq!(load_index(ws.path()), Some(b.index.clone()));
    let h = evidence::highlights(&b);
    assert!(h.gaps[0].starts_with("no evidence session"), "{:?}", h.gaps);
}

#[tokio::test]
async fn a_planted_symlink_is_not_followed() {
    let sim = sim().await;
    let spec = Scenario::MissingEnv.example(9);
    sim.add_to_cluster(&spec);
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join(EVIDENCE_DIR)).unwrap();
    let b = gather(
        &sim.endpoint(),
        &EvidenceConfig::default(),
        &spec,
        ws.path(),
    )
    .await;
    assert!(!b.index.calls.is_empty());
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written through the link"
    );
    assert!(std::fs::symlink_metadata(ws.path().join(EVIDENCE_DIR))
        .unwrap()
        .is_dir());
}
