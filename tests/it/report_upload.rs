//! Artifact uploads through `object_store` (in-memory and local-filesystem stores, and a real
//! S3-compatible server for expiring links).

use crate::support::report as report_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nightcrier::agent::Workspace;
use nightcrier::config::{ArtifactsConfig, Secret};
use nightcrier::incident::IncidentStatus;
use nightcrier::report::{ArtifactStore, Reporter, ReporterSettings, RetryPolicy, SlackNotifier};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use report_support::common::sqlite_store;
use report_support::{finished, fixture, Receiver};

fn settings(root: &std::path::Path) -> ReporterSettings {
    ReporterSettings {
        workspace_root: root.to_path_buf(),
        base_url: Some("http://nightcrier.test".into()),
        poll_interval: Duration::from_millis(50),
        max_attempts: 2,
        failure_threshold: 3,
        batch: 50,
    }
}

#[tokio::test]
async fn upload_puts_the_incident_files_under_prefix_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("oom_numbered.md")),
    )
    .await;
    let ws = Workspace::new(&root, inc.id);
    std::fs::write(ws.incident_file(), "{\"id\":1}").unwrap();

    let mem = Arc::new(InMemory::new());
    let artifacts = ArtifactStore::new(
        mem.clone(),
        "night/crier",
        Some("https://b.example/nc".into()),
    );
    let up = artifacts.upload_incident(&ws, inc.id).await.unwrap();
    let want: Vec<String> = ["investigation.md", "incident.json", "agent.log"]
        .iter()
        .map(|n| format!("night/crier/{}/{n}", inc.id))
        .collect();
    assert_eq!(
        up.keys, want,
        "investigation.html is not there before rendering"
    );
    // No page rendered yet: the link is the log's.
    assert_eq!(
        up.report_url,
        Some(format!("https://b.example/nc/{}/agent.log", inc.id))
    );
    let md = mem
        .get(&ObjectPath::from(want[0].as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(md.as_ref(), fixture("oom_numbered.md").as_bytes());
}

#[tokio::test]
async fn upload_by_url_runs_in_the_reporter_and_links_the_archived_report() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let bucket = dir.path().join("bucket");
    std::fs::create_dir(&bucket).unwrap();
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    let cfg = ArtifactsConfig {
        url: format!("file://{}", bucket.display()),
        options: BTreeMap::new(),
        public_base_url: Some("https://bucket.example/nc/".into()),
        ..ArtifactsConfig::new("")
    };
    let rx = Receiver::start().await;
    let slack = SlackNotifier::new(
        Secret::new(rx.url()),
        Duration::from_secs(5),
        RetryPolicy::with_attempts(2),
    )
    .unwrap();
    let mut reporter = Reporter::new(store.clone(), settings(&root))
        .with_slack(slack)
        .with_artifacts(ArtifactStore::from_config(&cfg).unwrap());

    let counts = reporter.run_once().await.unwrap();
    assert_eq!(
        (counts.reported, counts.uploaded, counts.notified),
        (1, 1, 1)
    );
    for name in ["investigation.md", "investigation.html", "agent.log"] {
        let f = bucket.join(inc.id.to_string()).join(name);
        assert!(f.is_file(), "{} not uploaded", f.display());
    }
    let html = std::fs::read_to_string(bucket.join(inc.id.to_string()).join("investigation.html"))
        .unwrap();
    assert!(html.contains("<h2>Root Cause</h2>"));
    let body = rx.received()[0].body.to_string();
    assert!(
        body.contains(&format!(
            "<https://bucket.example/nc/{}/investigation.html|Archived report>",
            inc.id
        )),
        "{body}"
    );
}

#[tokio::test]
async fn a_failing_upload_is_retried_on_later_passes_then_reported_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    // A regular file where the bucket directory should be: every put fails.
    let not_a_dir = dir.path().join("bucket");
    std::fs::write(&not_a_dir, "x").unwrap();
    finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("imagepull_inline.md")),
    )
    .await;
    let cfg = ArtifactsConfig {
        url: format!("file://{}", not_a_dir.display()),
        options: BTreeMap::new(),
        ..ArtifactsConfig::new("")
    };
    let rx = Receiver::start().await;
    let slack = SlackNotifier::new(
        Secret::new(rx.url()),
        Duration::from_secs(5),
        RetryPolicy::with_attempts(2),
    )
    .unwrap();
    let mut reporter = Reporter::new(store.clone(), settings(&root))
        .with_slack(slack)
        .with_artifacts(ArtifactStore::from_config(&cfg).unwrap());

    let first = reporter.run_once().await.unwrap();
    assert_eq!((first.reported, first.deferred, first.notified), (0, 1, 0));
    assert!(
        rx.received().is_empty(),
        "no message before the upload is settled"
    );
    assert_eq!(store.unreported_finished(10).await.unwrap().len(), 1);

    // max_attempts = 2: the second failure gives the upload up and reports the run.
    let second = reporter.run_once().await.unwrap();
    assert_eq!(
        (second.reported, second.deferred, second.notified),
        (1, 0, 1)
    );
    let body = rx.received()[0].body.to_string();
    assert!(!body.contains("Archived report"), "{body}");
    assert!(store.unreported_finished(10).await.unwrap().is_empty());
}
