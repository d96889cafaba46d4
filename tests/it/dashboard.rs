//! The dashboard end to end: a real server on loopback over SQLite, real workspaces, and a real
//! headless Chromium (Debian's `chromium` and `chromium-driver`) over WebDriver for what a person
//! sees; plain HTTP for the protocol details (SSE resume, CSRF, auth).

use crate::support::common;
use crate::support::dashboard as dashboard_support;

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use nightcrier::incident::{short_id, IncidentStatus, RunOutcome, RunStatus};
use nightcrier::store::ClaimLimits;

use dashboard_support::webdriver::Driver;
use dashboard_support::{append_log, server, Server, TOKEN};

const WAIT: Duration = Duration::from_secs(30);

const LIMITS: ClaimLimits = ClaimLimits {
    max_concurrent_agents: 100,
    max_agents_per_cluster: 100,
    lease: Duration::from_secs(600),
};

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/screenshots")
        .join(format!("{name}.png"))
}

/// `n` incidents over clusters `blue` and `red`, every third a warning, every fifth an OOM;
/// the first `failed` of them claimed and failed.
async fn seed(s: &Server, n: usize, failed: usize) -> Vec<uuid::Uuid> {
    let faults: Vec<_> = (0..n)
        .map(|k| {
            let mut f = common::fault(
                if k % 2 == 0 { "blue" } else { "red" },
                &format!("fault-{k:04}"),
            );
            if k % 3 == 0 {
                f.fault.severity = "warning".into();
            }
            if k % 5 == 0 {
                f.fault.fault_type = "OOMKilled".into();
            }
            f
        })
        .collect();
    let rec = s.store.record_faults(&faults).await.unwrap();
    for _ in 0..failed {
        let c = s.store.claim("test-worker", LIMITS).await.unwrap().unwrap();
        let outcome = RunOutcome {
            status: RunStatus::Failed,
            reason: Some("agent exited with status 2".into()),
            exit_code: Some(2),
        };
        assert!(s
            .store
            .complete(c.incident.id, c.attempt, &outcome)
            .await
            .unwrap());
    }
    rec.iter().map(|r| r.incident_id).collect()
}

/// Logs in through the login form with the dashboard token.
async fn log_in(d: &Driver, s: &Server) {
    d.goto(&format!("{}/dashboard", s.base)).await;
    assert!(
        d.url().await.ends_with("/dashboard/login"),
        "{}",
        d.url().await
    );
    let field = d.find("input[name=token]").await;
    d.type_into(&field, TOKEN).await;
    let button = d.find("form.login button").await;
    d.click(&button).await;
    d.wait_for("the Now page after logging in", WAIT, || async {
        d.url().await.ends_with("/dashboard").then_some(())
    })
    .await;
}

/// No console error and no request to anything but this server, since the last check.
async fn assert_clean(d: &Driver, s: &Server) {
    let errors = d.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let urls = d.requested_urls().await;
    assert!(
        !urls.is_empty(),
        "the performance log saw no request at all"
    );
    for u in &urls {
        assert!(
            u.starts_with(&format!("{}/", s.base)),
            "a request left the dashboard's origin: {u}"
        );
    }
}

async fn log_text(d: &Driver, log: &str) -> String {
    d.property(&log.to_string(), "textContent")
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn row_ids(d: &Driver) -> Vec<String> {
    let ids = d
        .execute(
            "return Array.from(document.querySelectorAll('#incident-rows tr[data-id]'), r => r.dataset.id);",
        )
        .await;
    ids.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Clicks `css` and waits for the page at another URL to load.
async fn click_away(d: &Driver, css: &str) {
    let before = d.url().await;
    let el = d.find(css).await;
    d.click(&el).await;
    d.wait_for(&format!("the page after clicking {css}"), WAIT, || {
        let before = before.clone();
        async move {
            let ready = d.execute("return document.readyState;").await;
            (d.url().await != before && ready == "complete").then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_lists_filters_and_pages_incidents() {
    let s = server(true).await;
    let ids = seed(&s, 120, 2).await;
    let d = Driver::start().await;
    log_in(&d, &s).await;
    let now_text = d.text(&d.find("main").await).await;
    assert!(
        now_text.contains("blue") && now_text.contains("red"),
        "{now_text}"
    );

    // The first page: 50 rows, newest first, each with its short id.
    d.goto(&format!("{}/dashboard/incidents", s.base)).await;
    let first = row_ids(&d).await;
    assert_eq!(first.len(), 50);
    let mut newest: Vec<_> = ids.clone();
    newest.sort();
    newest.reverse();
    let expected: Vec<String> = newest[..50].iter().map(|id| short_id(*id)).collect();
    assert_eq!(first, expected);

    // Next page, then back.
    click_away(&d, "a[rel=next]").await;
    let second = row_ids(&d).await;
    let expected: Vec<String> = newest[50..100].iter().map(|id| short_id(*id)).collect();
    assert_eq!(second, expected);
    click_away(&d, "a[rel=prev]").await;
    assert_eq!(row_ids(&d).await, first);

    // Filters through the form: cluster red, severity warning.
    let cluster = d.find("input[name=cluster]").await;
    d.type_into(&cluster, "red").await;
    let severity = d.find("select[name=severity] option[value=warning]").await;
    d.click(&severity).await;
    click_away(&d, "form.filters button[type=submit]").await;
    let filtered = row_ids(&d).await;
    // Odd k (red) divisible by 3: k = 3, 9, ..., 117 → 20.
    assert_eq!(filtered.len(), 20, "{}", d.url().await);
    assert!(d.url().await.contains("cluster=red"));

    // Status filter by URL: the two failed ones.
    d.goto(&format!("{}/dashboard/incidents?status=failed", s.base))
        .await;
    assert_eq!(row_ids(&d).await.len(), 2);

    // Fault type and an impossible time window.
    d.goto(&format!(
        "{}/dashboard/incidents?fault=OOMKilled&size=100",
        s.base
    ))
    .await;
    assert_eq!(row_ids(&d).await.len(), 24);
    d.goto(&format!("{}/dashboard/incidents?until=2000-01-01", s.base))
        .await;
    assert!(row_ids(&d).await.is_empty());

    // A bad filter is a clear error, not an empty list.
    d.goto(&format!("{}/dashboard/incidents?status=done", s.base))
        .await;
    let err = d.text(&d.find("main").await).await;
    assert!(err.contains("unknown incident status \"done\""), "{err}");
    // The error page itself is a 400, which Chromium logs as a failed load: drain it.
    let _ = d.console_errors().await;

    // The list refreshes by itself: a new incident shows up without a reload.
    d.goto(&format!("{}/dashboard/incidents", s.base)).await;
    assert_clean(&d, &s).await;
    let fresh = s
        .store
        .record_faults(&[common::fault("green", "brand-new")])
        .await
        .unwrap()[0]
        .incident_id;
    let want = short_id(fresh);
    d.wait_for("the new incident in the refreshed list", WAIT, || async {
        row_ids(&d)
            .await
            .first()
            .filter(|id| **id == want)
            .map(|_| ())
    })
    .await;
    assert_clean(&d, &s).await;
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shows_the_agent_log_live_without_gaps_or_repeats() {
    let s = server(true).await;
    seed(&s, 1, 0).await;
    let c = s.store.claim("test-worker", LIMITS).await.unwrap().unwrap();
    let id = c.incident.id;
    append_log(&s.root, id, "starting triage\n");
    let d = Driver::start().await;
    log_in(&d, &s).await;
    d.goto(&format!("{}/dashboard/incidents/{}", s.base, short_id(id)))
        .await;
    let log = d.find("#live-log").await;
    assert_eq!(log_text(&d, &log).await, "starting triage\n");
    d.wait_for("the live stream to open", WAIT, || async {
        let state = d.text(&d.find("#live-state").await).await;
        (state == "(live)").then_some(())
    })
    .await;

    // Lines the agent writes now appear as it writes them, each once.
    let mut expected = String::from("starting triage\n");
    for n in 1..=5 {
        let line = format!("step {n}: kubectl get pods -n default ✓\n");
        append_log(&s.root, id, &line);
        expected.push_str(&line);
        let want = expected.clone();
        d.wait_for(&format!("line {n} in the page"), WAIT, || {
            let (d, log, want) = (&d, log.clone(), want.clone());
            async move { (log_text(d, &log).await == want).then_some(()) }
        })
        .await;
    }
    // Half a line, then its end: shown as written, without a repeat.
    append_log(&s.root, id, "partial ");
    expected.push_str("partial ");
    append_log(&s.root, id, "line done\n");
    expected.push_str("line done\n");
    let want = expected.clone();
    d.wait_for("the finished partial line", WAIT, || {
        let (d, log, want) = (&d, log.clone(), want.clone());
        async move { (log_text(d, &log).await == want).then_some(()) }
    })
    .await;

    // The run ends: the page says so and the stream closes.
    append_log(&s.root, id, "## Root cause\n");
    expected.push_str("## Root cause\n");
    let ok = RunOutcome {
        status: RunStatus::Succeeded,
        reason: None,
        exit_code: Some(0),
    };
    assert!(s.store.complete(id, c.attempt, &ok).await.unwrap());
    d.wait_for("the finished state", WAIT, || async {
        let state = d.text(&d.find("#live-state").await).await;
        (state == "(finished: succeeded)").then_some(())
    })
    .await;
    assert_eq!(log_text(&d, &log).await, expected);
    assert_clean(&d, &s).await;
    d.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_retries_and_cancels_with_the_token_only() {
    let s = server(true).await;
    let ids = seed(&s, 3, 1).await;
    let failed = s
        .store
        .incident_page(&nightcrier::store::PageQuery {
            status: Some(IncidentStatus::Failed),
            size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .incidents[0]
        .id;
    let pending = *ids.iter().find(|id| **id != failed).unwrap();
    let d = Driver::start().await;
    log_in(&d, &s).await;

    // Retry the failed incident.
    d.goto(&format!(
        "{}/dashboard/incidents/{}",
        s.base,
        short_id(failed)
    ))
    .await;
    assert!(
        d.find_all("#cancel").await.is_empty(),
        "a finished incident offers no cancel"
    );
    let retry = d.find("#retry").await;
    d.click(&retry).await;
    d.wait_for("the retried page", WAIT, || async {
        d.url().await.contains("done=retried").then_some(())
    })
    .await;
    assert!(d.text(&d.find("p.flash").await).await.contains("retried"));
    assert_eq!(
        s.store.get(&failed.to_string()).await.unwrap().status,
        IncidentStatus::Pending
    );

    // Cancel a pending one.
    d.goto(&format!(
        "{}/dashboard/incidents/{}",
        s.base,
        short_id(pending)
    ))
    .await;
    assert!(
        d.find_all("#retry").await.is_empty(),
        "an open incident offers no retry"
    );
    let cancel = d.find("#cancel").await;
    d.click(&cancel).await;
    d.wait_for("the cancelled page", WAIT, || async {
        d.url().await.contains("done=cancelled").then_some(())
    })
    .await;
    assert_eq!(
        s.store.get(&pending.to_string()).await.unwrap().status,
        IncidentStatus::Cancelled
    );
    assert_clean(&d, &s).await;
    d.quit().await;

    // A dashboard without credentials offers no action at all.
    let open = server(false).await;
    let ids = seed(&open, 1, 1).await;
    let d = Driver::start().await;
    d.goto(&format!(
        "{}/dashboard/incidents/{}",
        open.base,
        short_id(ids[0])
    ))
    .await;
    assert!(d.find_all("#retry").await.is_empty() && d.find_all("#cancel").await.is_empty());
    let note = d.text(&d.find(".actions-off").await).await;
    assert!(note.contains("http.auth"), "{note}");
    assert_clean(&d, &open).await;
    d.quit().await;
}

/// A realistic scene for the README's screenshots: three configured clusters (one backing off),
/// finished incidents with reports, verdicts and costs, one running with its output live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_screenshots_of_the_main_pages() {
    use nightcrier::accounting::{Accounting, RunUsage};
    use nightcrier::incident::ConnectionState;

    let clusters: Vec<nightcrier::config::ClusterConfig> = ["prod-eu", "prod-us", "staging"]
        .iter()
        .map(|name| {
            serde_yaml_ng::from_str(&format!(
                "name: {name}\nmcp:\n  endpoint: http://127.0.0.1:1/mcp\n"
            ))
            .unwrap()
        })
        .collect();
    let s = dashboard_support::server_with(true, clusters).await;
    let now = Utc::now();
    for (cluster, state, error, events) in [
        ("prod-eu", "subscribed", None, 18_204),
        (
            "prod-us",
            "backing_off",
            Some("POST http://mcp.prod-us.internal:8080/mcp: connection refused; next attempt in 30s"),
            7_911,
        ),
        ("staging", "subscribed", None, 342),
    ] {
        s.store
            .put_connection_state(&ConnectionState {
                cluster: cluster.into(),
                state: state.parse().unwrap(),
                subscription_id: Some(format!("sub-{cluster}")),
                last_error: error.map(str::to_string),
                last_event_at: Some(now - chrono::TimeDelta::seconds(if error.is_some() { 340 } else { 4 })),
                events_received: events,
                events_malformed: 0,
                reconnects: if error.is_some() { 6 } else { 0 },
                updated_at: now - chrono::TimeDelta::seconds(if error.is_some() { 95 } else { 3_600 }),
            })
            .await
            .unwrap();
    }
    let kinds = [
        (
            "prod-eu",
            "CrashLoop",
            "critical",
            "payments",
            "Pod",
            "checkout-7d9f8b6c5-x2x4k",
        ),
        (
            "prod-us",
            "OOMKilled",
            "critical",
            "search",
            "Pod",
            "indexer-0",
        ),
        (
            "prod-eu",
            "ImagePullBackOff",
            "warning",
            "web",
            "Pod",
            "frontend-5c8d7b9f4-qq7zp",
        ),
        (
            "staging",
            "CrashLoop",
            "warning",
            "jobs",
            "Pod",
            "report-cron-29411220-8kq2d",
        ),
        (
            "prod-eu",
            "NodeNotReady",
            "critical",
            "-",
            "Node",
            "ip-10-0-3-17",
        ),
        (
            "prod-us",
            "FailedScheduling",
            "warning",
            "batch",
            "Pod",
            "etl-worker-6f5d9c7b8-4mnb2",
        ),
    ];
    let mut faults = Vec::new();
    for round in 0..4 {
        for (k, (cluster, fault_type, severity, ns, kind, name)) in kinds.iter().enumerate() {
            let mut f = common::fault(cluster, &format!("{fault_type}-{name}-{round}"));
            f.fault.fault_type = fault_type.to_string();
            f.fault.severity = severity.to_string();
            f.fault.resource.kind = kind.to_string();
            f.fault.resource.name = name.to_string();
            f.fault.resource.namespace = (*ns != "-").then(|| ns.to_string());
            f.fault.context = format!("{fault_type} on {kind} {name} (round {round}, fault {k})");
            faults.push(f);
        }
    }
    s.store.record_faults(&faults).await.unwrap();
    // Finish all but the newest few: most succeed with a report, a verdict and a cost.
    let verdicts = [
        ("The checkout container exits on start: DATABASE_URL points to a deleted secret key (payments/db-creds, key url).", "high", 0.4213),
        ("The indexer is OOM-killed at its 512Mi limit while rebuilding the search index after the 02:00 reindex job.", "high", 0.3107),
        ("The image tag v2.14.1 does not exist in the registry; the deploy at 01:12 referenced a tag that was never pushed.", "medium", 0.1894),
    ];
    for n in 0..18 {
        let c = s.store.claim("worker-1", LIMITS).await.unwrap().unwrap();
        let id = c.incident.id;
        let ws = nightcrier::agent::Workspace::new(&s.root, id);
        let (root_cause, confidence, cost) = verdicts[n % verdicts.len()];
        let failed = n % 7 == 3;
        append_log(
            &s.root,
            id,
            &format!(
                "{{\"type\":\"system\",\"subtype\":\"init\"}}\nkubectl get pods -n {}\n",
                c.incident.namespace.as_deref().unwrap_or("default")
            ),
        );
        if !failed {
            ws.write(
                &ws.report_file(),
                format!(
                    "# Investigation: {} on {}\n\n**Verdict:** {root_cause} (confidence: {confidence})\n\n## Root cause\n\n{root_cause}\n\n## Evidence\n\n- `kubectl describe pod {}`: last state Terminated, exit code 1\n- events: Back-off restarting failed container\n\n## Remediation\n\n1. Restore the secret key.\n2. Roll the deployment.\n",
                    c.incident.fault_type, c.incident.resource_name, c.incident.resource_name
                )
                .as_bytes(),
            )
            .unwrap();
            ws.write(
                &ws.output_dir().join("verdict.json"),
                serde_json::json!({ "root_cause": root_cause, "confidence": confidence, "category": "configuration", "evidence": ["pod describe", "events"] }).to_string().as_bytes(),
            )
            .unwrap();
        }
        let usage = RunUsage {
            accounting: Accounting::Reported,
            model: Some("claude-sonnet-4-5".into()),
            input_tokens: Some(48_210 + n as i64 * 911),
            output_tokens: Some(2_304 + n as i64 * 57),
            turns: Some(9 + (n as i64 % 5)),
            cost_usd: Some(cost),
            ..RunUsage::default()
        };
        s.store.set_run_usage(id, c.attempt, &usage).await.unwrap();
        let outcome = if failed {
            RunOutcome {
                status: RunStatus::Failed,
                reason: Some("agent exited with status 1 and wrote no report".into()),
                exit_code: Some(1),
            }
        } else {
            RunOutcome {
                status: RunStatus::Succeeded,
                reason: None,
                exit_code: Some(0),
            }
        };
        assert!(s.store.complete(id, c.attempt, &outcome).await.unwrap());
    }
    // One running, its output arriving.
    let running = s.store.claim("worker-2", LIMITS).await.unwrap().unwrap();
    append_log(
        &s.root,
        running.incident.id,
        "Reading the evidence bundle (7 tool calls, 0 gaps)\n$ kubectl get pod -n web -o wide\nNAME                        READY   STATUS             RESTARTS   AGE\nfrontend-5c8d7b9f4-qq7zp   0/1     ImagePullBackOff   0          14m\n$ kubectl describe pod frontend-5c8d7b9f4-qq7zp -n web\n  Warning  Failed  14m (x6 over 16m)  kubelet  Failed to pull image \"registry.local/web/frontend:v2.14.1\": not found\n",
    );

    let d = Driver::start().await;
    log_in(&d, &s).await;
    let main = d.text(&d.find("main").await).await;
    assert!(
        main.contains("connection refused; next attempt in 30s"),
        "{main}"
    );
    assert!(main.contains("backing off"), "{main}");
    d.screenshot(&screenshot_path("now")).await;
    d.goto(&format!("{}/dashboard/incidents", s.base)).await;
    let list = d.text(&d.find("main").await).await;
    assert!(
        list.contains("DATABASE_URL points to a deleted secret key"),
        "verdict lines in the list: {list}"
    );
    d.screenshot(&screenshot_path("incidents")).await;
    d.goto(&format!(
        "{}/dashboard/incidents/{}",
        s.base,
        short_id(running.incident.id)
    ))
    .await;
    d.wait_for("the live stream to open", WAIT, || async {
        (d.text(&d.find("#live-state").await).await == "(live)").then_some(())
    })
    .await;
    append_log(
        &s.root,
        running.incident.id,
        "The tag v2.14.1 was never pushed: the 01:12 deploy references it.\n",
    );
    d.wait_for("the new line", WAIT, || async {
        log_text(&d, &d.find("#live-log").await)
            .await
            .contains("never pushed")
            .then_some(())
    })
    .await;
    d.screenshot(&screenshot_path("incident-live")).await;
    let done = s
        .store
        .incident_page(&nightcrier::store::PageQuery {
            status: Some(IncidentStatus::Succeeded),
            size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .incidents[0]
        .id;
    d.goto(&format!(
        "{}/dashboard/incidents/{}",
        s.base,
        short_id(done)
    ))
    .await;
    let page = d.text(&d.find("main").await).await;
    assert!(
        page.contains("Verdict")
            && page.contains("Root cause")
            && page.contains("claude-sonnet-4-5"),
        "{page}"
    );
    d.screenshot(&screenshot_path("incident")).await;
    assert_clean(&d, &s).await;
    d.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP: the protocol details.

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_refused_without_token_csrf_or_same_origin() {
    let s = server(true).await;
    let ids = seed(&s, 1, 1).await;
    let id = ids[0];
    let http = client();
    let url = format!("{}/dashboard/incidents/{}/retry", s.base, short_id(id));
    let session = {
        let r = http
            .post(format!("{}/dashboard/login", s.base))
            .header("origin", &s.base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
        assert!(!c.contains(TOKEN), "the cookie must not carry the token");
        c.split(';').next().unwrap().to_string()
    };
    // A wrong token does not log in.
    let wrong = http
        .post(format!("{}/dashboard/login", s.base))
        .header("origin", &s.base)
        .body("token=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let csrf = "0123456789abcdef0123456789abcdef";
    let cookies = format!("{session}; nightcrier_csrf={csrf}");
    let post = |cookie: Option<String>, origin: Option<&str>, body: String| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    // No credentials.
    let r = post(None, Some(&s.base), format!("csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Credentials, but the form's token is missing or wrong.
    let r = post(Some(cookies.clone()), Some(&s.base), String::new())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("CSRF"));
    let r = post(
        Some(cookies.clone()),
        Some(&s.base),
        "csrf=ffffffffffffffffffffffffffffffff".into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    // Another site's form.
    let r = post(
        Some(cookies.clone()),
        Some("http://evil.example"),
        format!("csrf={csrf}"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not from this dashboard"));
    assert_eq!(
        s.store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Failed
    );
    // All three: retried, and a 303 back to the incident.
    let r = post(Some(cookies.clone()), Some(&s.base), format!("csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        s.store.get(&id.to_string()).await.unwrap().status,
        IncidentStatus::Pending
    );
    // Retrying a pending incident is a conflict, said plainly.
    let r = post(Some(cookies), Some(&s.base), format!("csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Without configured credentials the routes refuse writes.
    let open = server(false).await;
    let ids = seed(&open, 1, 1).await;
    let r = http
        .post(format!(
            "{}/dashboard/incidents/{}/retry",
            open.base,
            short_id(ids[0])
        ))
        .header("origin", &open.base)
        .header("cookie", format!("nightcrier_csrf={csrf}"))
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("configure http.auth"));
    assert_eq!(
        open.store.get(&ids[0].to_string()).await.unwrap().status,
        IncidentStatus::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_strict_and_the_log_stream_resumes_at_the_byte() {
    let s = server(false).await;
    seed(&s, 1, 0).await;
    let c = s.store.claim("test-worker", LIMITS).await.unwrap().unwrap();
    let id = c.incident.id;
    let http = client();

    // Security headers on pages; the assets are served from the binary.
    for path in [
        "/dashboard",
        "/dashboard/incidents",
        &format!("/dashboard/incidents/{}", short_id(id)),
    ] {
        let r = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("<script>"), "no inline script on {path}");
        assert!(!body.contains("style=\""), "no inline style on {path}");
    }
    for (path, ctype) in [
        ("/dashboard/assets/app.js", "text/javascript"),
        ("/dashboard/assets/style.css", "text/css"),
    ] {
        let r = http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(ctype));
    }

    // The stream from 0, then from the id of an event (a reconnect): the bytes after it only.
    let first = "line one\n";
    let second = "línea dos\n";
    append_log(&s.root, id, first);
    append_log(&s.root, id, second);
    let stream_url = format!("{}/dashboard/incidents/{}/log/stream", s.base, id);
    let events = read_events(&http, &stream_url, None, 1).await;
    assert_eq!(events[0].0, "chunk");
    assert_eq!(events[0].1, (first.len() + second.len()).to_string());
    assert_eq!(
        serde_json::from_str::<String>(&events[0].2).unwrap(),
        format!("{first}{second}")
    );

    let resumed = read_events(&http, &stream_url, Some(first.len()), 1).await;
    assert_eq!(
        serde_json::from_str::<String>(&resumed[0].2).unwrap(),
        second
    );
    assert_eq!(resumed[0].1, (first.len() + second.len()).to_string());

    // A log shorter than the offset asked for was started anew: reset, then from 0.
    let reset = read_events(&http, &stream_url, Some(10_000), 2).await;
    assert_eq!(reset[0].0, "reset");
    assert_eq!(
        serde_json::from_str::<String>(&reset[1].2).unwrap(),
        format!("{first}{second}")
    );

    // A bad offset is named.
    let r = http
        .get(format!("{stream_url}?from=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("abc") && body.contains("not a byte offset"),
        "{body}"
    );

    // The finished incident's stream ends with its status.
    let ok = RunOutcome {
        status: RunStatus::Succeeded,
        reason: None,
        exit_code: Some(0),
    };
    assert!(s.store.complete(id, c.attempt, &ok).await.unwrap());
    let end = read_events(&http, &stream_url, Some(first.len() + second.len()), 1).await;
    assert_eq!((end[0].0.as_str(), end[0].2.as_str()), ("end", "succeeded"));

    // Unknown and ambiguous ids are clear errors.
    let r = http
        .get(format!("{}/dashboard/incidents/0000000000", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let _ = Utc::now();
}

/// Reads `n` events (event, id, data) from an SSE stream, with `Last-Event-ID: from`.
async fn read_events(
    http: &reqwest::Client,
    url: &str,
    from: Option<usize>,
    n: usize,
) -> Vec<(String, String, String)> {
    use futures::StreamExt as _;
    let mut req = http.get(url).header("accept", "text/event-stream");
    if let Some(f) = from {
        req = req.header("last-event-id", f.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let read = async {
        while events.len() < n {
            let chunk = body.next().await.expect("the stream ended early").unwrap();
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(at) = buf.find("\n\n") {
                let block: String = buf.drain(..at + 2).collect();
                let (mut ev, mut id, mut data) =
                    (String::from("message"), String::new(), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                    }
                }
                if !data.is_empty() {
                    events.push((ev, id, data.join("\n")));
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("events within the wait");
    events
}
