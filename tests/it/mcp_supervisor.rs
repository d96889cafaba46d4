//! The per-cluster supervisor against the simulator over real loopback HTTP: faults handed off
//! in order, and every kind of session loss answered by a brand-new session and subscription.

use crate::support::mcp as mcp_support;

use std::sync::Arc;
use std::time::Duration;

use nightcrier::config::{ClusterConfig, ReconnectConfig, Secret};
use nightcrier::mcp::{ClusterStats, FaultSink, Supervisor};
use nightcrier::simulate::{FaultSpec, SimConfig, SimHandle, Simulator};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use mcp_support::{client, cluster, eventually, fast_reconnect, CollectingSink};

struct Running {
    sink: Arc<CollectingSink>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("supervisor stops on cancel")
            .unwrap();
    }
}

fn start(c: ClusterConfig, reconnect: ReconnectConfig) -> Running {
    let sink = CollectingSink::new();
    let cancel = CancellationToken::new();
    let stats = Arc::new(ClusterStats::new(c.name.clone()));
    let sup = Supervisor::new(
        c,
        reconnect,
        client(),
        sink.clone() as Arc<dyn FaultSink>,
        stats,
    );
    let task = tokio::spawn(sup.run(cancel.clone()));
    Running { sink, cancel, task }
}

async fn sim(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).await.unwrap()
}

async fn subscribed(r: &Running, n: usize) {
    subscribed_as(r, "prod", n).await
}

async fn subscribed_as(r: &Running, cluster: &str, n: usize) {
    r.sink
        .wait_for(&format!("{n} subscription(s)"), 10, |s| {
            s.subscriptions(cluster).len() >= n
        })
        .await;
}

/// Emits `specs` one by one and waits until the sink holds `total` faults.
async fn emit_and_wait(sim: &SimHandle, r: &Running, specs: &[FaultSpec], total: usize) {
    for s in specs {
        assert_eq!(sim.emit_fault(s).await, 1, "delivered to our subscription");
    }
    r.sink
        .wait_for(&format!("{total} faults"), 10, |s| {
            s.faults().len() >= total
        })
        .await;
}

/// The first error the supervisor reported in its connection states.
fn last_error(r: &Running) -> String {
    r.sink
        .states()
        .into_iter()
        .find_map(|s| s.last_error)
        .expect("a reported error")
}

fn specs(range: std::ops::Range<usize>) -> Vec<FaultSpec> {
    range.map(|i| FaultSpec::generate(i, 42)).collect()
}

#[tokio::test]
async fn faults_are_handed_off_in_order_with_the_configured_cluster_name() {
    let sim = sim(SimConfig {
        context: String::new(), // a server whose kubeconfig context has no name
        ..SimConfig::default()
    })
    .await;
    let mut c = cluster("prod", &sim.endpoint());
    c.triage.enabled = false;
    let r = start(c, fast_reconnect(Duration::from_secs(30)));
    subscribed(&r, 1).await;
    let session = sim.session_ids()[0].clone();
    assert_eq!(
        sim.method_log(&session).unwrap(),
        vec![
            "initialize",
            "GET",
            "notifications/initialized",
            "logging/setLevel",
            "tools/call:events_subscribe"
        ]
    );
    sim.emit_diagnostic("informer cache resynced").await;
    let sent = specs(0..30);
    emit_and_wait(&sim, &r, &sent, 30).await;
    let got = r.sink.faults();
    let want: Vec<String> = sent.iter().map(|s| s.fault_id("")).collect();
    assert_eq!(r.sink.fault_ids(), want);
    for f in &got {
        assert_eq!(f.cluster, "prod");
        assert_eq!(f.fault.cluster, "prod", "empty server cluster replaced");
        assert!(!f.triage_enabled);
        assert_eq!(f.raw["faultId"], f.fault.fault_id.as_str());
        assert_eq!(f.raw["cluster"], "");
    }
    let state = r.sink.last_state("prod").unwrap();
    assert_eq!(state.state, "subscribed");
    r.stop().await;
    assert_eq!(sim.sessions(), 0, "session deleted on shutdown");
}

#[tokio::test]
async fn a_server_restart_leads_to_a_new_session_and_subscription() {
    let sim = sim(SimConfig::default()).await;
    let r = start(
        cluster("prod", &sim.endpoint()),
        fast_reconnect(Duration::from_secs(3600)),
    );
    subscribed(&r, 1).await;
    let old_session = sim.session_ids()[0].clone();
    emit_and_wait(&sim, &r, &specs(0..3), 3).await;

    sim.restart().await.unwrap();
    subscribed(&r, 2).await;
    let subs = r.sink.subscriptions("prod");
    assert_ne!(subs[0], subs[1]);
    let new_session = sim.session_ids();
    assert_eq!(new_session.len(), 1);
    assert_ne!(new_session[0], old_session);
    // Events after the restart are ingested, including a fault seen before (new subscription).
    let mut after = specs(3..6);
    after.push(FaultSpec::generate(0, 42));
    emit_and_wait(&sim, &r, &after, 7).await;
    let lost = r
        .sink
        .states()
        .into_iter()
        .find(|s| s.state == "backing_off")
        .expect("a backing_off state was reported");
    assert!(lost.last_error.is_some());
    assert!(r.sink.last_state("prod").unwrap().reconnects >= 1);
    r.stop().await;
}

#[tokio::test]
async fn a_dropped_stream_is_noticed_without_waiting_for_a_ping() {
    let sim = sim(SimConfig::default()).await;
    // Pings are an hour apart: only the stream's end can explain a quick reconnect.
    let r = start(
        cluster("prod", &sim.endpoint()),
        fast_reconnect(Duration::from_secs(3600)),
    );
    subscribed(&r, 1).await;
    assert_eq!(sim.drop_streams(), 1);
    subscribed(&r, 2).await;
    let err = last_error(&r);
    assert!(err.contains("GET stream"), "{err}");
    assert!(
        err.contains("; next attempt at "),
        "the retry time is shown: {err}"
    );
    assert_eq!(sim.sessions(), 1, "the old session was deleted");
    emit_and_wait(&sim, &r, &specs(0..1), 1).await;
    r.stop().await;
}

#[tokio::test]
async fn an_event_that_never_ends_leads_to_a_new_session_after_the_event_timeout() {
    let sim = sim(SimConfig::default()).await;
    let mut c = cluster("prod", &sim.endpoint());
    c.mcp.event_timeout = Duration::from_millis(800);
    // Pings are an hour apart and answered: only the unfinished event can end the session.
    let r = start(c, fast_reconnect(Duration::from_secs(3600)));
    subscribed(&r, 1).await;
    // An idle stream is not timed out: well past the event timeout, still the first session.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(sim.sessions_created(), 1, "an idle stream was cut");
    emit_and_wait(&sim, &r, &specs(0..1), 1).await;

    // An event that begins and never ends, while bytes keep coming.
    assert_eq!(
        sim.inject_raw(&b"event: message\ndata: {\"jsonrpc\""[..])
            .await,
        1
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        sim.inject_raw(&b",\"x\":1"[..]).await;
    }
    subscribed(&r, 2).await;
    assert_eq!(sim.sessions_created(), 2);
    let err = last_error(&r);
    assert!(err.contains("mcp.event_timeout"), "{err}");
    emit_and_wait(&sim, &r, &specs(1..2), 2).await;
    r.stop().await;
}

#[tokio::test]
async fn a_404_on_ping_leads_to_a_new_session() {
    let sim = sim(SimConfig::default()).await;
    let r = start(
        cluster("prod", &sim.endpoint()),
        fast_reconnect(Duration::from_millis(50)),
    );
    subscribed(&r, 1).await;
    sim.expire_sessions(); // streams stay open, requests get 404
    subscribed(&r, 2).await;
    let err = last_error(&r);
    assert!(err.contains("ping") && err.contains("404"), "{err}");
    emit_and_wait(&sim, &r, &specs(0..2), 2).await;
    r.stop().await;
}

#[tokio::test]
async fn an_unanswered_ping_leads_to_a_new_session() {
    let sim = sim(SimConfig::default()).await;
    let mut reconnect = fast_reconnect(Duration::from_millis(50));
    reconnect.ping_timeout = Duration::from_millis(100);
    let r = start(cluster("prod", &sim.endpoint()), reconnect);
    subscribed(&r, 1).await;
    sim.set_pings_hang(true);
    r.sink
        .wait_for("a ping timeout", 10, |s| {
            s.states().iter().any(|st| st.state == "backing_off")
        })
        .await;
    let err = last_error(&r);
    assert!(err.contains("ping: no answer within 100ms"), "{err}");
    sim.set_pings_hang(false);
    subscribed(&r, 2).await;
    emit_and_wait(&sim, &r, &specs(0..1), 1).await;
    r.stop().await;
}

#[tokio::test]
async fn an_error_of_our_subscription_ends_the_session_others_do_not() {
    let sim = sim(SimConfig::default()).await;
    let r = start(
        cluster("prod", &sim.endpoint()),
        fast_reconnect(Duration::from_secs(3600)),
    );
    subscribed(&r, 1).await;
    let foreign = json!({"jsonrpc":"2.0","method":"notifications/message","params":{
        "level":"warning","logger":"kubernetes/subscription_error",
        "data":{"subscriptionId":"sub-not-ours","cluster":"sim-1","error":"x","degraded":true}}});
    assert_eq!(sim.inject_json(&foreign).await, 1);
    emit_and_wait(&sim, &r, &specs(0..1), 1).await;
    assert_eq!(
        r.sink.subscriptions("prod").len(),
        1,
        "still the first session"
    );

    assert_eq!(sim.fail_subscriptions("watch channel closed").await, 1);
    subscribed(&r, 2).await;
    let err = last_error(&r);
    assert!(err.contains("watch channel closed"), "{err}");
    emit_and_wait(&sim, &r, &specs(1..2), 2).await;
    r.stop().await;
}

#[tokio::test]
async fn a_subscription_missing_from_the_list_leads_to_a_new_session() {
    let sim = sim(SimConfig::default()).await;
    let mut reconnect = fast_reconnect(Duration::from_secs(3600));
    reconnect.subscription_check_interval = Duration::from_millis(50);
    let r = start(cluster("prod", &sim.endpoint()), reconnect);
    subscribed(&r, 1).await;
    let sub = r.sink.subscriptions("prod")[0].clone();
    let session = sim.session_ids()[0].clone();
    let resp = client()
        .post(sim.endpoint())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .body(
            json!({"jsonrpc":"2.0","id":99,"method":"tools/call",
                   "params":{"name":"events_unsubscribe","arguments":{"subscriptionId":sub}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Subscription Cancelled"));
    subscribed(&r, 2).await;
    let err = last_error(&r);
    assert!(err.contains("missing"), "{err}");
    r.stop().await;
}

#[tokio::test]
async fn malformed_notifications_are_counted_and_the_stream_goes_on() {
    // The only recorder of this test binary; the cluster name is this test's own.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();
    let sim = sim(SimConfig::default()).await;
    let mut c = cluster("malformed", &sim.endpoint());
    c.mcp.max_event_bytes = 8 * 1024;
    let r = start(c, fast_reconnect(Duration::from_millis(50)));
    subscribed_as(&r, "malformed", 1).await;
    let fault = |i: usize| {
        serde_json::to_value(FaultSpec::generate(i, 5).to_fault("sim-1", "sub-x")).unwrap()
    };
    let envelope = |data: serde_json::Value| {
        json!({"jsonrpc":"2.0","method":"notifications/message",
               "params":{"level":"warning","logger":"kubernetes/faults","data":data}})
    };
    let mut no_id = fault(1);
    no_id.as_object_mut().unwrap().remove("faultId");
    let mut wrong = fault(2);
    wrong["resource"] = json!(["Pod"]);
    let oversized = envelope(json!({"faultId": "x".repeat(20 * 1024)}));

    sim.inject_json(&envelope(fault(0))).await;
    sim.inject_json(&json!([1, 2, 3])).await; // not an object
    sim.inject_json(&envelope(json!("crash"))).await; // data not an object
    sim.inject_json(&envelope(no_id)).await; // missing faultId
    sim.inject_json(&envelope(wrong)).await; // wrong type
    sim.inject_json(&oversized).await; // larger than max_event_bytes
    sim.inject_raw(&b"event: message\ndata: {\"jsonrpc\":\"2.0\xff\xfe\"}\n\n"[..])
        .await; // invalid UTF-8
    sim.inject_raw(&b"event: message\ndata: {not json\n\n"[..])
        .await;
    sim.inject_json(&json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}))
        .await; // unknown method: ignored
    sim.inject_json(&json!({"jsonrpc":"2.0","method":"notifications/message",
        "params":{"level":"info","logger":"kubernetes/events","data":{"event":{}}}}))
        .await; // another logger: ignored
    sim.emit_diagnostic("watch restarted").await; // ignored
    sim.inject_json(&envelope(fault(3))).await;

    r.sink
        .wait_for("2 valid faults", 10, |s| s.faults().len() >= 2)
        .await;
    r.sink
        .wait_for("7 malformed counted", 10, |s| {
            s.last_state("malformed")
                .is_some_and(|st| st.events_malformed == 7)
        })
        .await;
    let ids = r.sink.fault_ids();
    assert_eq!(
        ids,
        vec![
            fault(0)["faultId"].as_str().unwrap(),
            fault(3)["faultId"].as_str().unwrap()
        ]
    );
    let st = r.sink.last_state("malformed").unwrap();
    assert_eq!(st.events_received, 2);
    assert_eq!(st.state, "subscribed");
    assert_eq!(r.sink.subscriptions("malformed").len(), 1, "no reconnect");
    let text = metrics.render();
    for reason in [
        "not_an_object\"} 2",
        "missing_field\"} 1",
        "wrong_type\"} 1",
        "oversized\"} 1",
        "invalid_utf8\"} 1",
        "invalid_json\"} 1",
    ] {
        let line =
            format!("nightcrier_events_malformed_total{{cluster=\"malformed\",reason=\"{reason}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    assert!(
        text.contains("nightcrier_events_received_total{cluster=\"malformed\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("nightcrier_mcp_connected{cluster=\"malformed\"} 1"),
        "{text}"
    );
    r.stop().await;
}

#[tokio::test]
async fn request_headers_are_sent_and_never_shown() {
    let sim = sim(SimConfig {
        bearer_token: Some("t0ken-123".into()),
        ..SimConfig::default()
    })
    .await;
    let mut c = cluster("prod", &sim.endpoint());
    c.mcp
        .headers
        .insert("Authorization".into(), Secret::new("Bearer t0ken-123"));
    let ok = start(c.clone(), fast_reconnect(Duration::from_secs(3600)));
    subscribed(&ok, 1).await;
    ok.stop().await;

    c.mcp
        .headers
        .insert("Authorization".into(), Secret::new("Bearer wrong-s3cret"));
    let denied = start(c, fast_reconnect(Duration::from_secs(3600)));
    denied
        .sink
        .wait_for("a failed attempt", 10, |s| {
            s.states().iter().any(|st| st.state == "backing_off")
        })
        .await;
    let err = last_error(&denied);
    assert!(err.contains("401") && !err.contains("s3cret"), "{err}");
    denied.stop().await;
}

#[tokio::test]
async fn a_refused_connection_backs_off_and_recovers_when_the_server_appears() {
    // Find a free port, then close it so the first attempts are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/mcp");
    let r = start(
        cluster("prod", &endpoint),
        fast_reconnect(Duration::from_secs(3600)),
    );
    r.sink
        .wait_for("two failed attempts", 10, |s| {
            s.last_state("prod").is_some_and(|st| st.reconnects >= 2)
        })
        .await;
    let sim = sim(SimConfig {
        listen: ([127, 0, 0, 1], port).into(),
        ..SimConfig::default()
    })
    .await;
    subscribed(&r, 1).await;
    emit_and_wait(&sim, &r, &specs(0..1), 1).await;
    eventually("one live session", 5, || sim.sessions() == 1).await;
    r.stop().await;
}
