//! One MCP session against the simulator over real loopback HTTP: the handshake as the server
//! sees it, requests, replies as SSE or JSON, the server's errors and limits.

use crate::support::mcp as mcp_support;

use std::time::Duration;

use nightcrier::mcp::sse::SseItem;
use nightcrier::mcp::{McpError, Session, SessionOptions};
use nightcrier::simulate::{FaultSpec, SimConfig, SimHandle, Simulator};
use serde_json::{json, Value};

use mcp_support::{client, cluster};

async fn sim(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).await.unwrap()
}

fn opts(sim: &SimHandle) -> SessionOptions {
    SessionOptions::from_config(&cluster("c1", &sim.endpoint()).mcp).unwrap()
}

async fn next_event(stream: &mut nightcrier::mcp::EventStream) -> Value {
    match tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5s")
        .unwrap()
    {
        SseItem::Event(ev) => serde_json::from_str(&ev.data).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn handshake_happens_in_the_go_sdk_order_and_faults_arrive() {
    for json_responses in [false, true] {
        let sim = sim(SimConfig {
            json_responses,
            ..SimConfig::default()
        })
        .await;
        let (session, mut stream) = Session::open(client(), opts(&sim)).await.unwrap();
        let sub = session.subscribe_faults().await.unwrap();
        assert!(sub.starts_with("sub-"), "{sub}");
        assert_eq!(
            sim.method_log(session.id()).unwrap(),
            vec![
                "initialize",
                "GET",
                "notifications/initialized",
                "logging/setLevel",
                "tools/call:events_subscribe"
            ]
        );
        let spec = FaultSpec::generate(0, 1);
        assert_eq!(sim.emit_fault(&spec).await, 1);
        let msg = next_event(&mut stream).await;
        assert_eq!(msg["params"]["logger"], "kubernetes/faults");
        assert_eq!(msg["params"]["data"]["faultId"], spec.fault_id("sim-1"));
        assert_eq!(msg["params"]["data"]["subscriptionId"], sub.as_str());
        assert_eq!(session.list_subscriptions().await.unwrap(), vec![sub]);
        session.delete().await;
        assert_eq!(sim.sessions(), 0);
        assert_eq!(sim.subscriptions(), 0);
    }
}

#[tokio::test]
async fn a_fault_is_not_sent_again_within_the_reemit_period_but_is_after_it() {
    let sim = sim(SimConfig {
        reemit_every: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let (session, mut stream) = Session::open(client(), opts(&sim)).await.unwrap();
    session.subscribe_faults().await.unwrap();
    let spec = FaultSpec::generate(4, 9);
    assert_eq!(sim.emit_fault(&spec).await, 1);
    assert_eq!(sim.emit_fault(&spec).await, 0, "deduplicated by the server");
    // The informers keep seeing the fault; the server sends it again once the period is over.
    let start = tokio::time::Instant::now();
    while sim.emit_fault(&spec).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "never re-emitted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "not before the period"
    );
    let a = next_event(&mut stream).await;
    let b = next_event(&mut stream).await;
    assert_eq!(
        a["params"]["data"]["faultId"],
        b["params"]["data"]["faultId"]
    );
}

#[tokio::test]
async fn the_server_says_404_for_an_unknown_session_and_409_for_a_second_stream() {
    let sim = sim(SimConfig::default()).await;
    let (session, _stream) = Session::open(client(), opts(&sim)).await.unwrap();

    let http = client();
    let second = http
        .get(sim.endpoint())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.id())
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 409);

    let with_last_id = http
        .get(sim.endpoint())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.id())
        .header("last-event-id", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(with_last_id.status(), 400);

    sim.expire_sessions();
    let err = session.ping(Duration::from_secs(2)).await.unwrap_err();
    assert!(err.is_session_lost(), "{err}");
    let stale = http
        .post(sim.endpoint())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", session.id())
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 404);
    assert_eq!(stale.text().await.unwrap(), "session not found");
}

#[tokio::test]
async fn faults_are_dropped_until_set_level_and_need_a_stream() {
    let sim = sim(SimConfig::default()).await;
    let http = client();
    let post = |sid: Option<String>, body: Value| {
        let mut r = http
            .post(sim.endpoint())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = sid {
            r = r.header("mcp-session-id", s);
        }
        r.send()
    };
    let init = post(
        None,
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}),
    )
    .await
    .unwrap();
    assert_eq!(init.headers()["content-type"], "text/event-stream");
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = init.text().await.unwrap();
    assert!(body.starts_with("event: message\ndata: "), "{body}");
    assert!(
        body.contains("\"protocolVersion\":\"2025-06-18\""),
        "{body}"
    );
    let note = post(
        Some(sid.clone()),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await
    .unwrap();
    assert_eq!(note.status(), 202);
    // Subscribed without setLevel and without a GET stream.
    let r = post(
        Some(sid.clone()),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"events_subscribe","arguments":{"mode":"faults"}}}),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        r.contains("# Event Subscription Created\\n\\n{\\n  \\\"cluster\\\""),
        "{r}"
    );
    assert_eq!(sim.subscriptions(), 1);
    sim.emit_fault(&FaultSpec::generate(1, 1)).await;
    assert_eq!(sim.delivered(), 0);
    assert_eq!(sim.subscriptions(), 1, "level gating drops silently");
    post(
        Some(sid.clone()),
        json!({"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"info"}}),
    )
    .await
    .unwrap();
    sim.emit_fault(&FaultSpec::generate(2, 1)).await;
    assert_eq!(sim.delivered(), 0);
    assert_eq!(
        sim.subscriptions(),
        0,
        "delivery without a GET stream cancels"
    );
    assert_eq!(sim.cancelled_subscriptions(), 1);
}

#[tokio::test]
async fn tool_errors_and_limits_come_back_as_is_error_results() {
    let sim = sim(SimConfig {
        max_subscriptions_total: 12,
        ..SimConfig::default()
    })
    .await;
    let (s1, _st1) = Session::open(client(), opts(&sim)).await.unwrap();
    for _ in 0..10 {
        s1.subscribe_faults().await.unwrap();
    }
    match s1.subscribe_faults().await.unwrap_err() {
        McpError::Tool { tool, message } => {
            assert_eq!(tool, "events_subscribe");
            assert_eq!(
                message,
                "failed to create subscription: session has reached maximum subscriptions (10)"
            );
        }
        e => panic!("{e}"),
    }
    let (s2, _st2) = Session::open(client(), opts(&sim)).await.unwrap();
    s2.subscribe_faults().await.unwrap();
    s2.subscribe_faults().await.unwrap();
    let e = s2.subscribe_faults().await.unwrap_err();
    assert!(e.to_string().contains("maximum subscriptions (12)"), "{e}");
    let e = s2
        .call_tool(
            "events_unsubscribe",
            json!({"subscriptionId": "sub-00000000"}),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("subscription not found"), "{e}");
    let e = s2
        .request("resources/list", json!({}), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(e, McpError::Rpc { code: -32601, .. }), "{e}");
}

#[tokio::test]
async fn a_subscribe_that_never_returns_times_out() {
    let sim = sim(SimConfig::default()).await;
    sim.set_subscribe_hangs(true);
    let mut c = cluster("c1", &sim.endpoint());
    c.mcp.subscribe_timeout = Duration::from_millis(200);
    let (session, _stream) = Session::open(client(), SessionOptions::from_config(&c.mcp).unwrap())
        .await
        .unwrap();
    let e = session.subscribe_faults().await.unwrap_err();
    assert!(
        matches!(
            e,
            McpError::Timeout {
                what: "events_subscribe",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn pings_reuse_one_connection() {
    let sim = sim(SimConfig::default()).await;
    let (session, _stream) = Session::open(client(), opts(&sim)).await.unwrap();
    let before = sim.accepted_connections();
    for _ in 0..50 {
        session.ping(Duration::from_secs(2)).await.unwrap();
    }
    let opened = sim.accepted_connections() - before;
    assert!(opened <= 1, "50 pings opened {opened} connections");
    // The GET stream holds one connection and the POSTs share another.
    assert!(
        sim.accepted_connections() <= 3,
        "{}",
        sim.accepted_connections()
    );
}

#[tokio::test]
async fn a_bad_header_value_is_named_without_its_value() {
    let mut c = cluster("c1", "http://127.0.0.1:1/mcp");
    c.mcp.headers.insert(
        "Authorization".into(),
        nightcrier::config::Secret::new("Bearer s3cr3t\n"),
    );
    let e = SessionOptions::from_config(&c.mcp).unwrap_err().to_string();
    assert!(e.contains("Authorization") && !e.contains("s3cr3t"), "{e}");
    let c = cluster("c1", "ftp://x/mcp");
    assert!(SessionOptions::from_config(&c.mcp).is_err());
}

#[tokio::test]
async fn healthz_answers() {
    let sim = sim(SimConfig::default()).await;
    let r = client()
        .get(format!("http://{}/healthz", sim.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_server_that_sends_stream_headers_only_with_the_first_event_still_works() {
    let sim = sim(SimConfig {
        late_stream_headers: true,
        ..SimConfig::default()
    })
    .await;
    let (session, mut stream) = Session::open(client(), opts(&sim)).await.unwrap();
    session.subscribe_faults().await.unwrap();
    assert_eq!(
        sim.method_log(session.id()).unwrap()[..3],
        ["initialize", "GET", "notifications/initialized"]
    );
    let spec = FaultSpec::generate(7, 1);
    assert_eq!(sim.emit_fault(&spec).await, 1);
    let msg = next_event(&mut stream).await;
    assert_eq!(msg["params"]["data"]["faultId"], spec.fault_id("sim-1"));
}

#[tokio::test]
async fn a_pending_stream_ended_by_a_restart_is_reported_at_once() {
    let sim = sim(SimConfig {
        late_stream_headers: true,
        ..SimConfig::default()
    })
    .await;
    let (_session, mut stream) = Session::open(client(), opts(&sim)).await.unwrap();
    sim.restart().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, McpError::StreamEnded | McpError::Transport { .. }),
        "{e}"
    );
}

#[tokio::test]
async fn re_subscribing_in_place_yields_duplicates_as_the_real_server_does() {
    let sim = sim(SimConfig::default()).await;
    let (session, mut stream) = Session::open(client(), opts(&sim)).await.unwrap();
    let old = session.subscribe_faults().await.unwrap();
    session
        .call_tool(
            "events_unsubscribe",
            json!({"subscriptionId": old}),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(session.list_subscriptions().await.unwrap().is_empty());
    let new = session.subscribe_faults().await.unwrap();
    assert_eq!(sim.emit_fault(&FaultSpec::generate(3, 3)).await, 2);
    let mut ids = vec![
        next_event(&mut stream).await["params"]["data"]["subscriptionId"]
            .as_str()
            .unwrap()
            .to_string(),
        next_event(&mut stream).await["params"]["data"]["subscriptionId"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    ids.sort();
    let mut want = vec![old, new];
    want.sort();
    assert_eq!(ids, want, "the cancelled subscription still delivers");
    assert_eq!(sim.subscriptions(), 1);
}
