//! Property tests over everything that parses outside input: the SSE parser, the classification
//! of stream messages, tool results, the configuration loader and incident id look-ups. The
//! properties: never panic, stay bounded in memory, and reject bad input with an error instead of
//! losing good input around it.

use std::time::Duration;

use nightcrier::config;
use nightcrier::fault::{Fault, ReceivedFault};
use nightcrier::mcp::jsonrpc::{classify, Incoming, ToolResult};
use nightcrier::mcp::sse::{SseItem, SseParser};
use nightcrier::store::{ListFilter, Store, StoreError, StoreOptions};
use proptest::prelude::*;
use serde_json::json;

const MAX_EVENT: usize = 1024;

fn feed_all(parser: &mut SseParser, chunks: &[Vec<u8>]) -> Vec<SseItem> {
    let mut out = Vec::new();
    for c in chunks {
        parser.feed(c, &mut |item| out.push(item));
        // The bound holds after every chunk, not only at the end: a frame that never ends
        // cannot grow memory past the event limit (plus one line being measured).
        assert!(
            parser.buffered_bytes() <= 2 * MAX_EVENT + 16,
            "parser holds {} bytes",
            parser.buffered_bytes()
        );
    }
    out
}

fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        out.push(bytes[start..p].to_vec());
        start = p;
    }
    out.push(bytes[start..].to_vec());
    out
}

fn valid_fault(id: &str) -> serde_json::Value {
    json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"warning",
        "logger":"kubernetes/faults","data":{"subscriptionId":"sub-1","cluster":"kind",
        "faultId":id,"faultType":"CrashLoop","severity":"critical",
        "resource":{"apiVersion":"v1","kind":"Pod","name":"p","namespace":"default","uid":"u"},
        "context":"c","timestamp":"2025-12-19T22:11:10+01:00"}}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes in arbitrary chunks: no panic, memory bounded.
    #[test]
    fn sse_parser_survives_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                                     cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let mut p = SseParser::new(MAX_EVENT);
        let _ = feed_all(&mut p, &split(&bytes, &cuts));
    }

    /// Valid events interleaved with garbage events: how the body is chunked never changes what
    /// comes out, and every valid event comes out.
    #[test]
    fn sse_chunking_never_changes_the_events(
        datas in proptest::collection::vec("[a-z0-9 {}:\"]{0,40}", 1..8),
        junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut body = Vec::new();
        for (i, d) in datas.iter().enumerate() {
            body.extend_from_slice(format!("event: message\ndata: {d}\n\n").as_bytes());
            if let Some(j) = junk.get(i) {
                // Garbage as a comment line of its own event: cannot merge with its neighbours.
                let cleaned: Vec<u8> = j.iter().copied().filter(|b| *b != b'\n' && *b != b'\r').collect();
                body.extend_from_slice(b":");
                body.extend_from_slice(&cleaned);
                body.extend_from_slice(b"\n\n");
            }
        }
        let whole = feed_all(&mut SseParser::new(MAX_EVENT), &[body.clone()]);
        let chunked = feed_all(&mut SseParser::new(MAX_EVENT), &split(&body, &cuts));
        prop_assert_eq!(&whole, &chunked);
        let got: Vec<String> = whole.iter().filter_map(|i| match i {
            SseItem::Event(e) => Some(e.data.clone()),
            _ => None,
        }).collect();
        prop_assert_eq!(got, datas);
    }

    /// Any text as a stream message: classified, never a panic.
    #[test]
    fn classify_never_panics_on_text(s in ".{0,512}") {
        let _ = classify(&s);
    }

    /// Structurally valid faults with one field replaced by an arbitrary JSON value: either a
    /// fault or a counted malformed message, never a panic.
    #[test]
    fn classify_handles_every_field_mutation(
        field in prop::sample::select(vec!["subscriptionId","cluster","faultId","faultType","severity","resource","context","timestamp"]),
        value in prop_oneof![
            Just(json!(null)), any::<i64>().prop_map(|n| json!(n)), any::<bool>().prop_map(|b| json!(b)),
            ".{0,20}".prop_map(|s| json!(s)), Just(json!([1, "a"])), Just(json!({"x": {"y": []}})),
        ],
    ) {
        let mut msg = valid_fault("0123456789abcdef");
        msg["params"]["data"][field] = value;
        match classify(&msg.to_string()) {
            Incoming::Fault { .. } | Incoming::Malformed { .. } => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// Tool results with arbitrary text: the JSON look-up never panics.
    #[test]
    fn tool_result_json_never_panics(text in ".{0,256}") {
        let r = ToolResult::from_result(&json!({"content":[{"type":"text","text":text}]}));
        let _ = r.json();
    }

    /// Arbitrary YAML-ish text and overrides: loaded or rejected with an error, never a panic.
    #[test]
    fn config_loader_never_panics(
        text in "[a-z_:\\-\\[\\]{}\"' 0-9\n]{0,200}",
        key in "[A-Z_]{1,30}",
        value in ".{0,20}",
    ) {
        let env = vec![(format!("NIGHTCRIER_{key}"), value)];
        let _ = config::from_str_with_env(&text, "fuzz.yaml", env);
    }
}

#[test]
fn deeply_nested_and_huge_messages_are_rejected_not_fatal() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(classify(&deep), Incoming::Malformed { .. }));
    let mut msg = valid_fault("0123456789abcdef");
    msg["params"]["data"]["context"] = json!("x".repeat(10 * 1024 * 1024));
    // 10 MiB is the transport's problem (max_event_bytes); classification itself copes.
    assert!(matches!(classify(&msg.to_string()), Incoming::Fault { .. }));
}

#[test]
fn a_frame_that_never_ends_stays_bounded_and_the_next_event_flows() {
    let mut p = SseParser::new(MAX_EVENT);
    let mut items = Vec::new();
    p.feed(b"data: ", &mut |i| items.push(i));
    for _ in 0..10_000 {
        p.feed(&[b'x'; 1000], &mut |i| items.push(i));
        assert!(p.buffered_bytes() <= 2 * MAX_EVENT + 16);
    }
    p.feed(b"\n\ndata: ok\n\n", &mut |i| items.push(i));
    assert!(
        matches!(items.first(), Some(SseItem::Oversized { .. })),
        "{items:?}"
    );
    assert!(
        matches!(items.last(), Some(SseItem::Event(e)) if e.data == "ok"),
        "{items:?}"
    );
}

/// Incident ids come from users (CLI, HTTP): any string gives a typed answer, never a database
/// error (no SQL wildcard or injection gets through).
#[test]
fn incident_lookup_by_any_string_gives_a_typed_answer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(Store::connect(StoreOptions {
            url: format!("sqlite://{}", dir.path().join("f.db").display()),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            dedup_cooldown: Duration::from_secs(60),
        }))
        .unwrap();
    // Three incidents, so prefixes can match one, several (shared time prefix) or none.
    let faults: Vec<ReceivedFault> = (0..3)
        .map(|i| {
            let fault: Fault =
                serde_json::from_value(valid_fault(&format!("{i:016x}"))["params"]["data"].clone())
                    .unwrap();
            ReceivedFault {
                cluster: "c".into(),
                raw: serde_json::to_value(&fault).unwrap(),
                fault,
                received_at: chrono::Utc::now(),
                triage_enabled: true,
            }
        })
        .collect();
    rt.block_on(store.record_faults(&faults)).unwrap();
    let ids: Vec<String> = rt
        .block_on(store.list(&ListFilter::default()))
        .unwrap()
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let real_prefix = (0..3usize, 0..=36usize).prop_map(move |(i, n)| ids[i][..n].to_string());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &prop_oneof![
                real_prefix.clone(),
                real_prefix.prop_map(|p| p.to_uppercase()),
                ".{0,48}",
                "[0-9a-f%_'\\-]{0,40}",
                Just("%%%%%%%%".to_string()),
                Just("' OR 1=1 --".to_string())
            ],
            |s| match rt.block_on(store.get(&s)) {
                Ok(found) => {
                    let id = found.id.to_string();
                    prop_assert!(
                        s.len() >= 8 && id.starts_with(&s.to_ascii_lowercase()),
                        "{s:?} matched {id}"
                    );
                    Ok(())
                }
                Err(StoreError::NotFound(_))
                | Err(StoreError::InvalidInput(_))
                | Err(StoreError::Ambiguous { .. }) => Ok(()),
                Err(other) => Err(TestCaseError::fail(format!("{s:?} gave {other}"))),
            },
        )
        .unwrap();
}
