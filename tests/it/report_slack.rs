//! Slack notifications through a local webhook receiver (real HTTP): message content, 429 with
//! `Retry-After`, 5xx retries, permanent failures, the failure breaker, and the webhook URL kept
//! out of errors and logs.

use crate::support::report as report_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use nightcrier::agent::Workspace;
use nightcrier::config::Secret;
use nightcrier::incident::IncidentStatus;
use nightcrier::report::{
    html_report_file, Reporter, ReporterSettings, RetryPolicy, SlackNotifier,
};
use nightcrier::telemetry::{build_subscriber, LogFormat};
use report_support::common::sqlite_store;
use report_support::{finished, fixture, Receiver, WEBHOOK_SECRET};

/// Short backoffs so retries are quick; `Retry-After` is still honoured as sent.
fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    }
}

fn notifier(rx: &Receiver, max_attempts: u32) -> SlackNotifier {
    SlackNotifier::new(
        Secret::new(rx.url()),
        Duration::from_secs(5),
        policy(max_attempts),
    )
    .unwrap()
}

fn settings(root: &std::path::Path, threshold: u32) -> ReporterSettings {
    ReporterSettings {
        workspace_root: root.to_path_buf(),
        base_url: Some("https://nightcrier.example.com/".into()),
        poll_interval: Duration::from_millis(50),
        max_attempts: 3,
        failure_threshold: threshold,
        batch: 50,
    }
}

#[tokio::test]
async fn a_success_sends_the_incident_facts_summary_and_report_link() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let rx = Receiver::start().await;
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    let mut reporter =
        Reporter::new(store.clone(), settings(&root, 3)).with_slack(notifier(&rx, 3));

    let counts = reporter.run_once().await.unwrap();
    assert_eq!(
        (counts.reported, counts.notified, counts.rendered),
        (1, 1, 1)
    );
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let body = got[0].body.to_string();
    for fact in [
        "prod-eu-1",
        "default",
        &format!("Pod/{}", inc.resource_name),
        "CrashLoop",
        "critical",
        "*Occurrences*\\n2",
        "*Duration*",
        "The new image",
        "DATABASE_URL",
        "High (90%)",
        &format!(
            "<https://nightcrier.example.com/incidents/{}/report|Report>",
            inc.id
        ),
    ] {
        assert!(body.contains(fact), "{fact:?} missing from {body}");
    }
    assert!(got[0].body["text"]
        .as_str()
        .unwrap()
        .starts_with("Triage done: CrashLoop"));
    let html = std::fs::read_to_string(html_report_file(&Workspace::new(&root, inc.id))).unwrap();
    assert!(html.contains("<h2>Root Cause</h2>"));

    // Reported once: the next pass has nothing to do.
    let again = reporter.run_once().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let rx = Receiver::start().await;
    rx.script([(StatusCode::TOO_MANY_REQUESTS, Some(1))]);
    let attempts = notifier(&rx, 3)
        .send(&serde_json::json!({ "text": "hello" }))
        .await
        .unwrap();
    assert_eq!(attempts, 2);
    let got = rx.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    // The receiver's own clock: the retry waited for Retry-After (1 s), not the 20 ms backoff.
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
    assert_eq!(got[1].body["text"], "hello");
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let rx = Receiver::start().await;
    rx.script([
        (StatusCode::INTERNAL_SERVER_ERROR, None),
        (StatusCode::SERVICE_UNAVAILABLE, None),
    ]);
    let attempts = notifier(&rx, 4)
        .send(&serde_json::json!({ "text": "x" }))
        .await
        .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(rx.received().len(), 3);
}

#[tokio::test]
async fn a_client_error_is_final_and_errors_never_show_the_webhook_url() {
    let rx = Receiver::start().await;
    rx.script([(StatusCode::BAD_REQUEST, None)]);
    let err = notifier(&rx, 4)
        .send(&serde_json::json!({ "text": "x" }))
        .await
        .unwrap_err();
    assert_eq!(rx.received().len(), 1, "400 is not retried");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("400"), "{shown}");
    assert!(!shown.contains("xoxb-SECRET"), "{shown}");

    // Unreachable: a transport error, also without the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let n = SlackNotifier::new(
        Secret::new(format!("http://{closed}/services/{WEBHOOK_SECRET}")),
        Duration::from_secs(2),
        policy(2),
    )
    .unwrap();
    let err = n.send(&serde_json::json!({})).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("unreachable after 2 attempt"), "{shown}");
    assert!(
        !shown.contains("xoxb-SECRET") && !shown.contains("/services/"),
        "{shown}"
    );
}

/// Log lines written by the code under test, for checking what they reveal.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Current-thread runtime: the thread-local subscriber sees everything the reporter logs.
#[tokio::test]
async fn a_notification_that_keeps_failing_is_counted_logged_and_the_run_still_reported() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber =
        build_subscriber(LogFormat::Text, "debug", false, move || writer.clone()).unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let rx = Receiver::start().await;
    rx.always((StatusCode::BAD_GATEWAY, None));
    finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("oom_numbered.md")),
    )
    .await;
    let mut reporter =
        Reporter::new(store.clone(), settings(&root, 3)).with_slack(notifier(&rx, 3));

    let counts = reporter.run_once().await.unwrap();
    assert_eq!(
        (counts.reported, counts.notified, counts.notify_failed),
        (1, 0, 1)
    );
    assert_eq!(rx.received().len(), 3, "max_attempts bounds the retries");
    assert!(
        store.unreported_finished(10).await.unwrap().is_empty(),
        "not retried forever"
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("Slack notification failed"), "{logs}");
    assert!(logs.contains("502"), "{logs}");
    assert!(
        !logs.contains("xoxb-SECRET") && !logs.contains("/services/T0000"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_breaker_sends_one_degraded_and_one_recovered_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let rx = Receiver::start().await;
    let mut reporter =
        Reporter::new(store.clone(), settings(&root, 3)).with_slack(notifier(&rx, 3));

    // Two failures: below the threshold, no message at all.
    finished(
        &store,
        &root,
        "a",
        IncidentStatus::Failed,
        Some("agent exited with code 2"),
        None,
    )
    .await;
    finished(
        &store,
        &root,
        "b",
        IncidentStatus::TimedOut,
        Some("agent timed out after 15m"),
        None,
    )
    .await;
    reporter.run_once().await.unwrap();
    assert!(rx.received().is_empty(), "{:?}", rx.texts());

    // The third opens the breaker: exactly one message, with the reasons.
    finished(
        &store,
        &root,
        "c",
        IncidentStatus::Failed,
        Some("report missing"),
        None,
    )
    .await;
    let counts = reporter.run_once().await.unwrap();
    assert_eq!(counts.notified, 1);
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let body = got[0].body.to_string();
    assert!(
        got[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("Triage degraded"),
        "{body}"
    );
    for reason in [
        "agent exited with code 2",
        "agent timed out after 15m",
        "report missing",
    ] {
        assert!(body.contains(reason), "{reason} missing: {body}");
    }
    assert!(reporter.breaker().is_open());

    // More failures while degraded: silence.
    for id in ["d", "e", "f"] {
        finished(
            &store,
            &root,
            id,
            IncidentStatus::Failed,
            Some("again"),
            None,
        )
        .await;
    }
    let counts = reporter.run_once().await.unwrap();
    assert_eq!((counts.reported, counts.notified), (3, 0));
    assert_eq!(rx.received().len(), 1);

    // A success: one recovered message, then its own report message.
    finished(
        &store,
        &root,
        "g",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("imagepull_inline.md")),
    )
    .await;
    reporter.run_once().await.unwrap();
    let texts = rx.texts();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[1].starts_with("Triage recovered"), "{texts:?}");
    assert!(texts[1].contains("after 6 failed runs"), "{texts:?}");
    assert!(texts[2].starts_with("Triage done"), "{texts:?}");

    // Recovered once: the next success and a lone failure send only the success.
    finished(
        &store,
        &root,
        "h",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("oom_numbered.md")),
    )
    .await;
    finished(&store, &root, "i", IncidentStatus::Failed, Some("x"), None).await;
    reporter.run_once().await.unwrap();
    let texts = rx.texts();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts[3].starts_with("Triage done"));
    assert!(!reporter.breaker().is_open());
}

#[tokio::test]
async fn the_reporter_task_reports_runs_finished_while_it_runs_and_stops_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let rx = Receiver::start().await;
    let reporter = Reporter::new(store.clone(), settings(&root, 3)).with_slack(notifier(&rx, 3));
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(reporter.run(token.clone()));

    finished(
        &store,
        &root,
        "a",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("long_root_cause.md")),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rx.received().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rx.texts()[0].contains("CoreDNS pods are CPU-throttled"));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the reporter stops on cancel")
        .unwrap();
}

#[tokio::test]
async fn the_run_cost_is_on_the_page_and_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let rx = Receiver::start().await;
    let inc = finished(
        &store,
        &root,
        "f1",
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    let usage = nightcrier::accounting::RunUsage {
        accounting: nightcrier::accounting::Accounting::Reported,
        model: Some("claude-sonnet-5".into()),
        input_tokens: Some(7350),
        output_tokens: Some(636),
        cache_read_tokens: Some(35400),
        cache_write_tokens: Some(0),
        turns: Some(3),
        cost_usd: Some(0.04221),
        agent_error: Some(false),
    };
    store
        .set_run_usage(inc.id, inc.attempt, &usage)
        .await
        .unwrap();
    let mut reporter =
        Reporter::new(store.clone(), settings(&root, 3)).with_slack(notifier(&rx, 3));
    reporter.run_once().await.unwrap();

    let body = rx.received()[0].body.to_string();
    for fact in [
        "*Agent cost*\\n$0.0422 (reported)",
        "*Tokens*\\n7350 in, 636 out, 35400 cache read, 0 cache write",
    ] {
        assert!(body.contains(fact), "{fact:?} missing from {body}");
    }
    let html = std::fs::read_to_string(html_report_file(&Workspace::new(&root, inc.id))).unwrap();
    for fact in [
        "<dt>Agent cost</dt><dd>$0.0422 (reported)</dd>",
        "<dt>Model</dt><dd>claude-sonnet-5</dd>",
        "<dt>Turns</dt><dd>3</dd>",
    ] {
        assert!(html.contains(fact), "{fact:?} missing from the page");
    }
}
