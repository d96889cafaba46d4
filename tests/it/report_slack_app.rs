//! Slack app mode against a fake Slack Web API on loopback (real HTTP, see `slack_support`):
//! one parent per incident (across a restart, across two stores on one PostgreSQL, after a lost
//! answer), the parent updated in place, replies in order, rate limits and server errors
//! retried, permanent errors not retried, and the Block Kit of a long report within Slack's
//! limits block by block.

use crate::support::report as report_support;
use crate::support::slack as slack_support;

use std::time::Duration;

use nightcrier::agent::Workspace;
use nightcrier::config::SlackConfig;
use nightcrier::incident::{Incident, IncidentStatus, RunOutcome, RunStatus};
use nightcrier::report::blocks::{self, RunFacts};
use nightcrier::report::{Links, Reporter, ReporterSettings, RetryPolicy, SlackApp, Summary};
use nightcrier::store::Store;
use nightcrier::telemetry::{build_subscriber, LogFormat};
use report_support::common::{fault, sqlite_store, TestDb};
use report_support::{fixture, WIDE};
use slack_support::{all_text, check_message, FakeSlack, Fault, CHANNEL, FOREIGN_CHANNEL, TOKEN};

const BASE: &str = "https://nightcrier.example.com";

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
    }
}

fn app_config(slack: &FakeSlack, channel: &str) -> SlackConfig {
    let mut c = SlackConfig::app(TOKEN, channel);
    c.api_url = slack.api_url();
    c.timeout = Duration::from_secs(5);
    c
}

fn app(slack: &FakeSlack, cfg: SlackConfig) -> SlackApp {
    let _ = slack;
    SlackApp::from_config(&cfg)
        .unwrap()
        .expect("app mode")
        .with_retry_policy(policy(4))
}

fn reporter(store: &Store, root: &std::path::Path, app: SlackApp) -> Reporter {
    let settings = ReporterSettings {
        workspace_root: root.to_path_buf(),
        base_url: Some(BASE.into()),
        poll_interval: Duration::from_millis(50),
        max_attempts: 3,
        failure_threshold: 100,
        batch: 50,
    };
    Reporter::new(store.clone(), settings).with_slack_app(app)
}

/// Records `fault_id` on prod-eu-1 `n` times (one incident, `n` occurrences).
async fn open(store: &Store, fault_id: &str, n: usize) -> Incident {
    let f = fault("prod-eu-1", fault_id);
    let recorded = store.record_faults(&vec![f; n]).await.unwrap();
    store
        .get(&recorded[0].incident_id.to_string())
        .await
        .unwrap()
}

/// Claims the pending incident, writes `report` and completes it with `status`.
async fn finish(
    store: &Store,
    root: &std::path::Path,
    status: IncidentStatus,
    reason: Option<&str>,
    report: Option<&str>,
) -> Incident {
    let claimed = store.claim("w1", WIDE).await.unwrap().expect("pending");
    let ws = Workspace::new(root, claimed.incident.id);
    ws.prepare().unwrap();
    if let Some(md) = report {
        std::fs::write(ws.report_file(), md).unwrap();
    }
    let outcome = RunOutcome {
        status: status.try_into().expect("a status a run can end with"),
        reason: reason.map(str::to_string),
        exit_code: Some(0),
    };
    assert!(store
        .complete(claimed.incident.id, claimed.attempt, &outcome)
        .await
        .unwrap());
    store.get(&claimed.incident.id.to_string()).await.unwrap()
}

#[tokio::test]
async fn one_parent_updated_in_place_with_replies_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let mut cfg = app_config(&slack, CHANNEL);
    cfg.post_on_open = vec!["critical".into()];
    let mut r = reporter(&store, &root, app(&slack, cfg));

    // Opened: the parent is posted at once (critical is in post_on_open).
    let inc = open(&store, "f1", 1).await;
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "{parents:?}");
    let parent_ts = parents[0].ts.clone();
    assert!(all_text(&parents[0]).contains("Open: "), "{parents:?}");
    assert_eq!(
        parents[0].metadata["event_payload"]["incident_id"],
        inc.id.to_string()
    );
    let thread = store.slack_thread(inc.id).await.unwrap().unwrap();
    assert_eq!(thread.ts.as_deref(), Some(parent_ts.as_str()));
    assert_eq!(thread.channel, CHANNEL);

    // A pass with nothing new sends nothing.
    let calls = slack.calls().len();
    r.run_once().await.unwrap();
    assert_eq!(slack.calls().len(), calls, "an idle pass calls Slack");

    // Seen twice more: one reply, the parent's count updated in place.
    open(&store, "f1", 2).await;
    r.run_once().await.unwrap();
    // The run starts: the parent says so.
    let claimed = store.claim("w1", WIDE).await.unwrap().expect("pending");
    r.run_once().await.unwrap();
    assert!(all_text(&slack.parents()[0]).contains("Investigating: "));
    // The run ends with a report.
    let ws = Workspace::new(&root, claimed.incident.id);
    ws.prepare().unwrap();
    std::fs::write(ws.report_file(), fixture("crashloop_sections.md")).unwrap();
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        reason: None,
        exit_code: Some(0),
    };
    assert!(store
        .complete(claimed.incident.id, claimed.attempt, &outcome)
        .await
        .unwrap());
    let counts = r.run_once().await.unwrap();
    assert_eq!(counts.reported, 1, "{counts:?}");

    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "still one parent: {parents:?}");
    let p = &parents[0];
    assert!(p.updates >= 3, "updated in place: {p:?}");
    let shown = all_text(p);
    assert!(shown.contains("Triaged: "), "{shown}");
    assert!(shown.contains("*Occurrences*\n3"), "{shown}");
    assert!(shown.contains("Root cause"), "{shown}");
    let replies = slack.replies(&parent_ts);
    let kinds: Vec<&str> = replies
        .iter()
        .map(|m| {
            if m.text.starts_with("Seen again") {
                "seen"
            } else if m.text.starts_with("Report") {
                "report"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(kinds, ["seen", "report"], "{replies:?}");
    assert!(all_text(&replies[1]).contains(&format!("{BASE}/incidents/{}", inc.id)));

    // Another incident opens, and its alert resolves before any agent ran: a reply in its own
    // thread and the parent says so, never a new parent.
    let other = open(&store, "f2", 1).await;
    r.run_once().await.unwrap();
    assert_eq!(slack.parents().len(), 2);
    store
        .resolve_open("prod-eu-1", "f2", chrono::Utc::now(), false)
        .await
        .unwrap()
        .expect("open");
    r.run_once().await.unwrap();
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 2, "{parents:?}");
    let ts = store
        .slack_thread(other.id)
        .await
        .unwrap()
        .unwrap()
        .ts
        .unwrap();
    let p = parents.iter().find(|p| p.ts == ts).unwrap();
    assert!(all_text(p).contains("Resolved: "), "{p:?}");
    let replies = slack.replies(&ts);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].text.starts_with("Resolved"), "{replies:?}");
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn a_failed_run_is_posted_in_its_thread_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let mut r = reporter(&store, &root, app(&slack, app_config(&slack, CHANNEL)));
    open(&store, "f1", 1).await;
    r.run_once().await.unwrap();
    assert!(
        slack.parents().is_empty(),
        "no parent before the run ends by default"
    );
    finish(
        &store,
        &root,
        IncidentStatus::TimedOut,
        Some("agent timed out after 15m"),
        None,
    )
    .await;
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 1);
    assert!(all_text(&parents[0]).contains("Triage timed out"));
    let replies = slack.replies(&parents[0].ts);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(all_text(&replies[0]).contains("agent timed out after 15m"));

    // notify_on_failure off: no message for a failed run without a parent.
    let slack2 = FakeSlack::start().await;
    let mut cfg = app_config(&slack2, CHANNEL);
    cfg.notify_on_failure = false;
    let mut r2 = reporter(&store, &root, app(&slack2, cfg));
    open(&store, "f2", 1).await;
    finish(&store, &root, IncidentStatus::Failed, Some("exit 1"), None).await;
    r2.run_once().await.unwrap();
    assert!(slack2.messages().is_empty(), "{:?}", slack2.messages());
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn a_restart_continues_the_same_thread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let mut cfg = app_config(&slack, CHANNEL);
    cfg.post_on_open = vec!["critical".into()];
    let inc = {
        let store = sqlite_store(dir.path()).await;
        let mut r = reporter(&store, &root, app(&slack, cfg.clone()));
        let inc = open(&store, "f1", 1).await;
        r.run_once().await.unwrap();
        store.close().await;
        inc
    };
    assert_eq!(slack.parents().len(), 1);
    // A new process: new pool, new SlackApp (another claim owner).
    let store = sqlite_store(dir.path()).await;
    let mut r = reporter(&store, &root, app(&slack, cfg));
    finish(
        &store,
        &root,
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert!(parents[0].updates >= 1);
    assert_eq!(slack.replies(&parents[0].ts).len(), 1);
    assert_eq!(
        store.slack_thread(inc.id).await.unwrap().unwrap().ts,
        Some(parents[0].ts.clone())
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_found_not_posted_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let mut cfg = app_config(&slack, CHANNEL);
    cfg.post_on_open = vec!["critical".into()];
    let mut r = reporter(&store, &root, app(&slack, cfg));
    let inc = open(&store, "f1", 1).await;
    // Slack stores the message, then the answer is a 500.
    slack.script("chat.postMessage", [Fault::AcceptThen500]);
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "posted twice: {parents:?}");
    assert!(slack.calls_of("conversations.history") >= 1);
    assert_eq!(
        store.slack_thread(inc.id).await.unwrap().unwrap().ts,
        Some(parents[0].ts.clone())
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn a_claim_left_by_a_crashed_process_is_taken_over_without_a_second_parent() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let inc = open(&store, "f1", 1).await;
    // The dead process claimed, posted, and died before recording the ts.
    assert!(store
        .claim_slack_thread(inc.id, CHANNEL, "dead-host/1/x")
        .await
        .unwrap());
    let posted = slack.insert_parent(&inc.id.to_string());
    let taker = app(&slack, app_config(&slack, CHANNEL)).with_claim_stale_after(Duration::ZERO);
    let mut r = reporter(&store, &root, taker);
    finish(
        &store,
        &root,
        IncidentStatus::Succeeded,
        None,
        Some(&fixture("crashloop_sections.md")),
    )
    .await;
    r.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert_eq!(parents[0].ts, posted);
    assert_eq!(
        parents[0].updates, 1,
        "the found parent is brought up to date"
    );
    assert_eq!(slack.replies(&posted).len(), 1);

    // A fresh claim of another live process is left alone: the run is deferred, not posted.
    let other = open(&store, "f2", 1).await;
    assert!(store
        .claim_slack_thread(other.id, CHANNEL, "live-host/2/y")
        .await
        .unwrap());
    let app = app(&slack, app_config(&slack, CHANNEL));
    let mut r = reporter(&store, &root, app);
    finish(
        &store,
        &root,
        IncidentStatus::Succeeded,
        None,
        Some("# r\n\nok"),
    )
    .await;
    let counts = r.run_once().await.unwrap();
    assert_eq!((counts.deferred, counts.reported), (1, 0), "{counts:?}");
    assert_eq!(slack.parents().len(), 1);
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let mut r = reporter(&store, &root, app(&slack, app_config(&slack, CHANNEL)));
    open(&store, "f1", 1).await;
    finish(
        &store,
        &root,
        IncidentStatus::Succeeded,
        None,
        Some("# r\n\nRoot cause: x"),
    )
    .await;
    slack.script(
        "chat.postMessage",
        [Fault::Http429(1), Fault::RateLimited, Fault::Http500],
    );
    let counts = r.run_once().await.unwrap();
    assert_eq!(
        (counts.notified, counts.notify_failed),
        (1, 0),
        "{counts:?}"
    );
    let parents = slack.parents();
    assert_eq!(parents.len(), 1, "{parents:?}");
    assert_eq!(slack.replies(&parents[0].ts).len(), 1);
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_the_run_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    for (channel, fault, code) in [
        (CHANNEL, Some(Fault::InvalidAuth), "invalid_auth"),
        (FOREIGN_CHANNEL, None, "not_in_channel"),
        ("C0MISSING", None, "channel_not_found"),
    ] {
        let slack = FakeSlack::start().await;
        let mut r = reporter(&store, &root, app(&slack, app_config(&slack, channel)));
        open(&store, code, 1).await;
        finish(
            &store,
            &root,
            IncidentStatus::Succeeded,
            None,
            Some("# r\n\nok"),
        )
        .await;
        if let Some(f) = fault {
            slack.script("chat.postMessage", [f]);
        }
        let counts = r.run_once().await.unwrap();
        assert_eq!(
            (counts.reported, counts.notify_failed),
            (1, 1),
            "{code}: {counts:?}"
        );
        assert!(slack.parents().is_empty(), "{code}");
        // invalid_auth is scripted (not recorded as a call); the others reach the handler once.
        assert!(slack.calls_of("chat.postMessage") <= 1, "{code}: retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_post_one_parent() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let (s1, s2) = (db.store().await, db.store().await);
    let mut cfg = app_config(&slack, CHANNEL);
    cfg.post_on_open = vec!["critical".into()];
    let mut r1 = reporter(&s1, &root, app(&slack, cfg.clone()));
    let mut r2 = reporter(&s2, &root, app(&slack, cfg));
    for n in 0..5 {
        open(&s1, &format!("f{n}"), 1).await;
    }
    // Both passes race for the same five parents.
    let (a, b) = tokio::join!(r1.run_once(), r2.run_once());
    a.unwrap();
    b.unwrap();
    assert_eq!(slack.parents().len(), 5, "{:?}", slack.parents());
    // The runs end; both reporters report them (at least once), into the same threads.
    for _ in 0..5 {
        let claimed = s2.claim("w", WIDE).await.unwrap().expect("pending");
        let ws = Workspace::new(&root, claimed.incident.id);
        ws.prepare().unwrap();
        std::fs::write(
            ws.report_file(),
            "# r\n\nRoot cause: the image tag does not exist",
        )
        .unwrap();
        let outcome = RunOutcome {
            status: RunStatus::Succeeded,
            reason: None,
            exit_code: Some(0),
        };
        assert!(s2
            .complete(claimed.incident.id, claimed.attempt, &outcome)
            .await
            .unwrap());
    }
    let (a, b) = tokio::join!(r1.run_once(), r2.run_once());
    a.unwrap();
    b.unwrap();
    r1.run_once().await.unwrap();
    r2.run_once().await.unwrap();
    let parents = slack.parents();
    assert_eq!(parents.len(), 5, "{parents:?}");
    for p in &parents {
        let replies = slack.replies(&p.ts);
        assert!(!replies.is_empty(), "no report in the thread of {p:?}");
        assert!(all_text(p).contains("Triaged"), "{p:?}");
    }
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
}

/// A long, hostile report rendered as Block Kit: every block within Slack's documented limits
/// (checked by the fake's own rules), split over sections, trimmed with a link to the report.
#[test]
fn the_block_kit_of_a_long_report_is_within_slack_limits_block_by_block() {
    let line = "The pod <@U123> & friends restarted: `kubectl describe` says <none> ".repeat(6);
    let report = (0..2000)
        .map(|n| format!("{n}: {line}\n"))
        .collect::<String>()
        + &"x".repeat(10_000);
    let now = chrono::Utc::now();
    let incident = Incident {
        id: uuid::Uuid::new_v4(),
        cluster: "c".repeat(200),
        fault_id: "f".into(),
        fault_type: "CrashLoopBackOff ".repeat(20),
        severity: "critical".into(),
        namespace: Some("n".repeat(3000)),
        resource_kind: "Pod".into(),
        resource_name: "<p>".repeat(1000),
        resource_uid: "u".into(),
        context: String::new(),
        status: IncidentStatus::Succeeded,
        failure_reason: None,
        occurrences: 7,
        first_seen: now,
        last_seen: now,
        created_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        attempt: 1,
        lease_owner: None,
        lease_expires_at: None,
        resolved_at: Some(now),
    };
    let facts = RunFacts {
        summary: Summary {
            root_cause: Some("<!channel> ".repeat(800)),
            confidence: Some("high".into()),
            excerpt: None,
        },
        cost: Some("$0.2500 (reported)".into()),
        failure: None,
        report: Some(report),
        evidence: (0..50).map(|n| format!("evidence {n} <x>")).collect(),
        related: Some("3: CrashLoop Pod shop/web-<1>, ".repeat(500)),
    };
    let links = Links::for_incident(Some(BASE), &incident);
    let ctx = vec![("environment".to_string(), "prod".repeat(2000))];
    let reply = blocks::run_reply(&incident, &facts, &links);
    let parent = blocks::parent(&incident, Some(&facts), &links, &ctx);
    for (name, msg) in [("reply", &reply), ("parent", &parent)] {
        let (problems, code) = check_message(msg);
        assert!(
            problems.is_empty() && code.is_none(),
            "{name}: {problems:?}"
        );
        let blocks = msg["blocks"].as_array().unwrap();
        assert!(blocks.len() <= blocks::MAX_BLOCKS);
        for b in blocks {
            for t in [&b["text"]["text"]]
                .into_iter()
                .chain(
                    b["fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|f| &f["text"]),
                )
                .chain(
                    b["elements"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| &e["text"]),
                )
            {
                let s = t.as_str().unwrap_or("");
                assert!(
                    !s.contains("<@U123>") && !s.contains("<!channel>"),
                    "unescaped: {s}"
                );
            }
        }
        assert!(msg["text"].as_str().unwrap().chars().count() <= blocks::MAX_FALLBACK_TEXT);
    }
    let blocks = reply["blocks"].as_array().unwrap();
    let sections = blocks.iter().filter(|b| b["type"] == "section").count();
    assert!(
        sections >= 4,
        "the report is split over sections: {sections}"
    );
    let shown = reply.to_string();
    assert!(
        shown.contains(&format!(
            "<{BASE}/incidents/{}/report|read it all>",
            incident.id
        )),
        "trimmed with a link to the full report"
    );
    // The start of the report is there, escaped.
    assert!(shown.contains("0: The pod &lt;@U123&gt; &amp; friends"));
}

#[tokio::test]
async fn the_degraded_alert_goes_to_the_channel_and_a_permanent_error_is_logged_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber =
        build_subscriber(LogFormat::Text, "debug", false, move || writer.clone()).unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let slack = FakeSlack::start().await;
    let settings = ReporterSettings {
        workspace_root: root.clone(),
        base_url: Some(BASE.into()),
        poll_interval: Duration::from_millis(50),
        max_attempts: 3,
        failure_threshold: 2,
        batch: 50,
    };
    let mut r = Reporter::new(store.clone(), settings)
        .with_slack_app(app(&slack, app_config(&slack, CHANNEL)));
    for n in 0..2 {
        open(&store, &format!("f{n}"), 1).await;
        finish(&store, &root, IncidentStatus::Failed, Some("exit 1"), None).await;
    }
    r.run_once().await.unwrap();
    let parents = slack.parents();
    // Two incident parents and one alert of its own.
    assert_eq!(parents.len(), 3, "{parents:?}");
    assert_eq!(
        parents
            .iter()
            .filter(|p| p.text.starts_with("Triage degraded"))
            .count(),
        1,
        "{parents:?}"
    );

    // A channel the app is not in: every message refused; the fix is logged once.
    let mut r = reporter(
        &store,
        &root,
        app(&slack, app_config(&slack, FOREIGN_CHANNEL)),
    );
    for n in 2..5 {
        open(&store, &format!("f{n}"), 1).await;
        finish(
            &store,
            &root,
            IncidentStatus::Succeeded,
            None,
            Some("# r\n\nok"),
        )
        .await;
    }
    let counts = r.run_once().await.unwrap();
    assert_eq!(
        (counts.reported, counts.notify_failed),
        (3, 3),
        "{counts:?}"
    );
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warned = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not_in_channel"))
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("/invite"), "{}", warned[0]);
    assert!(!text.contains(TOKEN), "the token leaked into the logs");
}

/// Log lines written by the code under test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn with_upload_failed_a_failed_run_is_uploaded_and_its_thread_links_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let root = dir.path().join("incidents");
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let slack = FakeSlack::start().await;
    let cfg = nightcrier::config::ArtifactsConfig {
        public_base_url: Some("https://bucket.example/nc".into()),
        upload_failed: true,
        ..nightcrier::config::ArtifactsConfig::new(format!("file://{}", bucket.display()))
    };
    let mut r = reporter(&store, &root, app(&slack, app_config(&slack, CHANNEL)))
        .with_artifacts(nightcrier::report::ArtifactStore::from_config(&cfg).unwrap());
    open(&store, "f1", 1).await;
    let inc = finish(&store, &root, IncidentStatus::Failed, Some("exit 3"), None).await;
    std::fs::write(
        Workspace::new(&root, inc.id).log_file(),
        "agent said: boom\n",
    )
    .unwrap();
    let counts = r.run_once().await.unwrap();
    assert_eq!((counts.uploaded, counts.notified), (1, 1), "{counts:?}");
    assert!(bucket.join(inc.id.to_string()).join("agent.log").exists());
    let parents = slack.parents();
    assert_eq!(parents.len(), 1);
    let reply = &slack.replies(&parents[0].ts)[0];
    let shown = all_text(reply);
    assert!(shown.contains("exit 3"), "{shown}");
    assert!(
        shown.contains(&format!("https://bucket.example/nc/{}/agent.log", inc.id)),
        "{shown}"
    );
}
