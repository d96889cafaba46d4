//! A fake Slack Web API on loopback (real HTTP) for the Slack app mode tests. It checks what
//! Slack checks and answers as Slack answers:
//! - the bot token in `Authorization: Bearer` (`not_authed` without, `invalid_auth` when wrong);
//! - a JSON body (`Content-Type: application/json`), else `invalid_arguments`;
//! - `channel` known (`channel_not_found`) and the bot a member (`not_in_channel`);
//! - `chat.update`'s `ts` and `thread_ts` of replies naming an existing parent in that channel
//!   (`message_not_found`, `thread_not_found`);
//! - Block Kit structure and limits (`invalid_blocks`, `msg_blocks_too_long`, `msg_too_long`),
//!   checked by [`check_message`], written from Slack's reference independently of nightcrier;
//! - scripted faults: HTTP 429 with `Retry-After`, `ok:false error:ratelimited`, HTTP 500, and
//!   a 500 sent *after* the message was stored (a lost answer).
//!
//! Every refusal is also recorded in [`FakeSlack::violations`] so that a test can assert that
//! nightcrier never sent anything Slack would refuse.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

pub const TOKEN: &str = "xoxb-test-SECRET-bot-token";
/// The channel the bot is a member of.
pub const CHANNEL: &str = "C0INCIDENTS";
/// A channel that exists but the bot was not invited to.
pub const FOREIGN_CHANNEL: &str = "C0FOREIGN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: secs`.
    Http429(u64),
    /// HTTP 200, `{"ok": false, "error": "ratelimited"}`.
    RateLimited,
    /// HTTP 200, `{"ok": false, "error": "invalid_auth"}`.
    InvalidAuth,
    /// HTTP 500 before doing anything.
    Http500,
    /// The request is carried out, then answered with HTTP 500.
    AcceptThen500,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    pub metadata: Value,
    /// Times `chat.update` changed it.
    pub updates: u32,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub answer: Value,
}

#[derive(Default)]
struct Inner {
    messages: Mutex<Vec<Message>>,
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    /// (method, fault): the next call of that method gets the fault.
    script: Mutex<VecDeque<(String, Fault)>>,
    next_ts: Mutex<u64>,
}

pub struct FakeSlack {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn err(code: &str) -> Value {
    json!({ "ok": false, "error": code })
}

fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// A text object: `type` plain_text or mrkdwn, non-empty `text` of at most `max` characters.
fn check_text(what: &str, t: &Value, max: usize, plain_only: bool, out: &mut Vec<String>) -> usize {
    let ty = t["type"].as_str().unwrap_or("");
    if !(ty == "plain_text" || (!plain_only && ty == "mrkdwn")) {
        out.push(format!("{what}: text type {ty:?}"));
    }
    let n = chars(&t["text"]);
    if n == 0 {
        out.push(format!("{what}: empty text"));
    }
    if n > max {
        out.push(format!("{what}: {n} characters, over {max}"));
    }
    n
}

/// Slack's Block Kit rules for messages (api.slack.com/reference/block-kit/blocks): at most 50
/// blocks; header: plain_text up to 150; section: `text` up to 3000 and/or 1..=10 `fields` of up
/// to 2000 each; context: 1..=10 elements (text objects up to 3000); divider. The message
/// `text` up to 40,000; all block text together below ~13,000 (`msg_blocks_too_long`).
/// Returns the problems found (empty: Slack would accept it) and the Slack error code.
pub fn check_message(msg: &Value) -> (Vec<String>, Option<&'static str>) {
    let mut out = Vec::new();
    let mut code = None;
    let text_len = chars(&msg["text"]);
    if text_len > 40_000 {
        out.push(format!("text: {text_len} characters, over 40000"));
        code = Some("msg_too_long");
    }
    let Some(blocks) = msg.get("blocks") else {
        if text_len == 0 {
            out.push("neither text nor blocks".into());
            code = Some("no_text");
        }
        return (out, code);
    };
    let Some(blocks) = blocks.as_array() else {
        out.push("blocks is not an array".into());
        return (out, Some("invalid_blocks"));
    };
    if blocks.len() > 50 {
        out.push(format!("{} blocks, over 50", blocks.len()));
    }
    let mut total = 0;
    for (n, b) in blocks.iter().enumerate() {
        let what = format!("block {n} ({})", b["type"]);
        match b["type"].as_str() {
            Some("header") => total += check_text(&what, &b["text"], 150, true, &mut out),
            Some("section") => {
                let has_text = b.get("text").is_some();
                if has_text {
                    total += check_text(&what, &b["text"], 3000, false, &mut out);
                }
                match b.get("fields").map(Value::as_array) {
                    Some(Some(fields)) => {
                        if fields.is_empty() || fields.len() > 10 {
                            out.push(format!("{what}: {} fields", fields.len()));
                        }
                        for f in fields {
                            total += check_text(&what, f, 2000, false, &mut out);
                        }
                    }
                    Some(None) => out.push(format!("{what}: fields is not an array")),
                    None if !has_text => out.push(format!("{what}: neither text nor fields")),
                    None => {}
                }
            }
            Some("context") => match b["elements"].as_array() {
                Some(els) if !els.is_empty() && els.len() <= 10 => {
                    for e in els {
                        total += check_text(&what, e, 3000, false, &mut out);
                    }
                }
                _ => out.push(format!("{what}: elements must be 1 to 10")),
            },
            Some("divider") => {}
            other => out.push(format!("{what}: unknown block type {other:?}")),
        }
    }
    if code.is_none() && !out.is_empty() {
        code = Some("invalid_blocks");
    }
    if total > 13_000 {
        out.push(format!("blocks hold {total} characters"));
        code = code.or(Some("msg_blocks_too_long"));
    }
    (out, code)
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let answer = |status: StatusCode, v: Value| (status, axum::Json(v)).into_response();
    let violation = |what: String| inner.violations.lock().unwrap().push(what);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => {
            violation(format!("{method}: no Authorization header"));
            return answer(StatusCode::OK, err("not_authed"));
        }
        Some(a) if a != format!("Bearer {TOKEN}") => {
            return answer(StatusCode::OK, err("invalid_auth"));
        }
        Some(_) => {}
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let Some(body) = parsed.filter(|_| ct.starts_with("application/json")) else {
        violation(format!("{method}: not a JSON body ({ct:?})"));
        return answer(StatusCode::OK, err("invalid_arguments"));
    };
    let fault = {
        let mut script = inner.script.lock().unwrap();
        script
            .iter()
            .position(|(m, _)| *m == method)
            .and_then(|at| script.remove(at))
            .map(|(_, f)| f)
    };
    match fault {
        Some(Fault::Http429(secs)) => {
            let mut r = answer(StatusCode::TOO_MANY_REQUESTS, err("ratelimited"));
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
            return r;
        }
        Some(Fault::RateLimited) => return answer(StatusCode::OK, err("ratelimited")),
        Some(Fault::InvalidAuth) => return answer(StatusCode::OK, err("invalid_auth")),
        Some(Fault::Http500) => return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({})),
        _ => {}
    }
    let result = handle(&inner, &method, &body);
    if let Some(code) = result["error"].as_str() {
        if !matches!(code, "channel_not_found" | "not_in_channel") {
            violation(format!("{method}: {code} for {body}"));
        }
    }
    inner.calls.lock().unwrap().push(Call {
        method: method.clone(),
        body,
        answer: result.clone(),
    });
    if fault == Some(Fault::AcceptThen500) {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({}));
    }
    answer(StatusCode::OK, result)
}

fn channel_of(body: &Value) -> Result<String, Value> {
    let ch = body["channel"].as_str().unwrap_or("");
    match ch {
        "" => Err(err("channel_not_found")),
        CHANNEL | "#incidents" => Ok(CHANNEL.to_string()),
        FOREIGN_CHANNEL => Err(err("not_in_channel")),
        _ => Err(err("channel_not_found")),
    }
}

fn handle(inner: &Inner, method: &str, body: &Value) -> Value {
    let channel = match channel_of(body) {
        Ok(c) => c,
        Err(e) => return e,
    };
    match method {
        "chat.postMessage" => {
            let (problems, code) = check_message(body);
            if let Some(code) = code {
                return json!({ "ok": false, "error": code, "problems": problems });
            }
            let mut messages = inner.messages.lock().unwrap();
            let thread_ts = body["thread_ts"].as_str().map(str::to_string);
            if let Some(t) = &thread_ts {
                if !messages
                    .iter()
                    .any(|m| m.channel == channel && &m.ts == t && m.thread_ts.is_none())
                {
                    return err("thread_not_found");
                }
            }
            let ts = {
                let mut n = inner.next_ts.lock().unwrap();
                *n += 1;
                format!("1700000000.{:06}", *n)
            };
            messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                text: body["text"].as_str().unwrap_or("").to_string(),
                blocks: body["blocks"].clone(),
                metadata: body["metadata"].clone(),
                updates: 0,
            });
            json!({ "ok": true, "channel": channel, "ts": ts, "message": { "text": body["text"] } })
        }
        "chat.update" => {
            let (problems, code) = check_message(body);
            if let Some(code) = code {
                return json!({ "ok": false, "error": code, "problems": problems });
            }
            let Some(ts) = body["ts"].as_str() else {
                return err("message_not_found");
            };
            let mut messages = inner.messages.lock().unwrap();
            let Some(m) = messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return err("message_not_found");
            };
            m.text = body["text"].as_str().unwrap_or("").to_string();
            m.blocks = body["blocks"].clone();
            m.updates += 1;
            json!({ "ok": true, "channel": channel, "ts": ts })
        }
        "conversations.history" => {
            let with_metadata = body["include_all_metadata"] == json!(true);
            let limit = body["limit"].as_u64().unwrap_or(100).clamp(1, 999) as usize;
            let from: usize = body["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let messages = inner.messages.lock().unwrap();
            // Newest first, parents only, as Slack lists a channel.
            let all: Vec<&Message> = messages
                .iter()
                .rev()
                .filter(|m| m.channel == channel && m.thread_ts.is_none())
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(from)
                .take(limit)
                .map(|m| {
                    let mut v = json!({ "type": "message", "ts": m.ts, "text": m.text });
                    if with_metadata && !m.metadata.is_null() {
                        v["metadata"] = m.metadata.clone();
                    }
                    v
                })
                .collect();
            let next = if from + limit < all.len() {
                (from + limit).to_string()
            } else {
                String::new()
            };
            json!({ "ok": true, "messages": page, "has_more": !next.is_empty(),
                    "response_metadata": { "next_cursor": next } })
        }
        _ => err("unknown_method"),
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/api/{method}", post(api))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeSlack { inner, addr, task }
    }

    /// The `api_url` to configure.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The next call of `method` gets `fault` (in order, per method).
    pub fn script(&self, method: &str, faults: impl IntoIterator<Item = Fault>) {
        let mut s = self.inner.script.lock().unwrap();
        for f in faults {
            s.push_back((method.to_string(), f));
        }
    }

    pub fn messages(&self) -> Vec<Message> {
        self.inner.messages.lock().unwrap().clone()
    }

    /// Parent messages (not in a thread).
    pub fn parents(&self) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.thread_ts.is_none())
            .collect()
    }

    /// Replies in the thread of `ts`, in the order they were posted.
    pub fn replies(&self, ts: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.thread_ts.as_deref() == Some(ts))
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, method: &str) -> usize {
        self.calls().iter().filter(|c| c.method == method).count()
    }

    /// What nightcrier sent that Slack would have refused.
    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    /// A parent message as a previous process would have left it (posted, `ts` never recorded).
    pub fn insert_parent(&self, incident_id: &str) -> String {
        let ts = {
            let mut n = self.inner.next_ts.lock().unwrap();
            *n += 1;
            format!("1700000000.{:06}", *n)
        };
        self.inner.messages.lock().unwrap().push(Message {
            channel: CHANNEL.into(),
            ts: ts.clone(),
            thread_ts: None,
            text: "posted before a crash".into(),
            blocks: json!([]),
            metadata: json!({ "event_type": "nightcrier_incident",
                              "event_payload": { "incident_id": incident_id } }),
            updates: 0,
        });
        ts
    }
}

/// Every text of a message's blocks, joined (for content assertions).
pub fn all_text(m: &Message) -> String {
    let mut out = m.text.clone();
    collect(&m.blocks, &mut out);
    out
}

fn collect(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push('\n');
            out.push_str(s);
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect(x, out)),
        _ => {}
    }
}
