//! Rendering and summary extraction on realistic agent reports (`tests/fixtures/reports/`).

use std::path::PathBuf;

use chrono::Utc;
use nightcrier::incident::{Incident, IncidentStatus};
use nightcrier::report::{render_page, summarize, MAX_SUMMARY_CHARS};
use uuid::Uuid;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reports")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn incident() -> Incident {
    let now = Utc::now();
    Incident {
        id: Uuid::now_v7(),
        cluster: "prod-eu-1".into(),
        fault_id: "f1".into(),
        fault_type: "CrashLoop".into(),
        severity: "critical".into(),
        namespace: Some("payments".into()),
        resource_kind: "Pod".into(),
        resource_name: "api-<7d9f>".into(),
        resource_uid: "uid".into(),
        context: "ctx".into(),
        status: IncidentStatus::Succeeded,
        failure_reason: None,
        occurrences: 3,
        first_seen: now,
        last_seen: now,
        created_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        attempt: 1,
        lease_owner: None,
        lease_expires_at: None,
        resolved_at: None,
    }
}

#[test]
fn sections_report_gives_root_cause_and_confidence() {
    let s = summarize(&fixture("crashloop_sections.md"));
    let rc = s.root_cause.as_deref().unwrap();
    assert!(
        rc.starts_with("The new image `registry.internal/payments/api:2.14.0`")
            || rc.starts_with("The new image registry.internal/payments/api:2.14.0"),
        "{rc}"
    );
    assert!(
        rc.ends_with("missing required env DATABASE_URL`.")
            || rc.ends_with("missing required env DATABASE_URL."),
        "{rc}"
    );
    assert_eq!(s.confidence.as_deref(), Some("High (90%)"));
    assert_eq!(s.excerpt, None);
}

#[test]
fn numbered_analysis_heading_and_confidence_in_a_table() {
    let s = summarize(&fixture("oom_numbered.md"));
    let rc = s.root_cause.as_deref().unwrap();
    assert!(
        rc.starts_with("The job's shuffle partition count was lowered from 400 to 50"),
        "{rc}"
    );
    assert!(
        !rc.contains("Nodes are not under memory pressure"),
        "first item only: {rc}"
    );
    assert_eq!(s.confidence.as_deref(), Some("Medium (70%)"));
}

#[test]
fn inline_bold_label_without_confidence() {
    let s = summarize(&fixture("imagepull_inline.md"));
    let rc = s.root_cause.as_deref().unwrap();
    assert!(
        rc.starts_with("the Deployment references the tag web:1.9.3-rc1"),
        "{rc}"
    );
    assert!(rc.contains("manifest unknown"), "{rc}");
    assert_eq!(s.confidence, None);
}

#[test]
fn no_root_cause_falls_back_to_the_first_meaningful_paragraph() {
    let s = summarize(&fixture("pending_no_root_cause.md"));
    assert_eq!(s.root_cause, None);
    assert_eq!(s.confidence, None);
    let ex = s.excerpt.as_deref().unwrap();
    assert!(
        ex.starts_with("A pod of the ml-training job has been Pending"),
        "{ex}"
    );
    assert!(ex.chars().count() <= MAX_SUMMARY_CHARS + 1, "{}", ex.len());
    assert!(!ex.contains('\n'));
    assert_eq!(s.headline(), Some(ex));
}

#[test]
fn long_root_cause_is_truncated_on_a_word_and_low_confidence_found() {
    let s = summarize(&fixture("long_root_cause.md"));
    let rc = s.root_cause.as_deref().unwrap();
    assert!(rc.starts_with("CoreDNS pods are CPU-throttled"), "{rc}");
    assert!(rc.ends_with('…'), "{rc}");
    assert!(rc.chars().count() <= MAX_SUMMARY_CHARS + 1);
    assert!(!rc.ends_with(" …"));
    assert_eq!(s.confidence.as_deref(), Some("Low"));
}

#[test]
fn pages_are_standalone_with_styled_tables_and_code() {
    let inc = incident();
    for name in [
        "crashloop_sections.md",
        "oom_numbered.md",
        "imagepull_inline.md",
        "pending_no_root_cause.md",
        "long_root_cause.md",
    ] {
        let html = render_page(&inc, &fixture(name));
        assert!(html.starts_with("<!DOCTYPE html>"), "{name}");
        assert!(html.contains("<style>"), "{name}: inline CSS");
        for external in ["<link", "<script", "src=", "@import"] {
            assert!(!html.contains(external), "{name}: {external} in page");
        }
        assert!(
            html.contains(&inc.id.to_string()),
            "{name}: incident id in the header"
        );
        assert!(
            html.contains("Pod/api-&lt;7d9f&gt;"),
            "{name}: metadata is escaped"
        );
    }
    let html = render_page(&inc, &fixture("crashloop_sections.md"));
    assert!(html.contains("<table>") && html.contains("<th>Time (UTC)</th>"));
    assert!(html.contains("<pre><code class=\"language-text\">"));
    assert!(html.contains("<h2>Root Cause</h2>"));
    let html = render_page(&inc, &fixture("imagepull_inline.md"));
    assert!(
        html.contains("<del>Rebuilding the node image</del>"),
        "strikethrough"
    );
    let html = render_page(&inc, &fixture("pending_no_root_cause.md"));
    assert!(
        html.contains("&lt;script&gt;alert"),
        "raw HTML is shown as text"
    );
    assert!(html.contains("<td>gpu-c</td>"));
}
