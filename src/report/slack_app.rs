//! Slack app mode: one thread per incident through the Web API (`chat.postMessage`,
//! `chat.update`, `conversations.history`) with a bot token.
//!
//! This module owns the Web API client, the classification of Slack's answers (transient:
//! retried with backoff; permanent: logged once with what to fix) and the thread of an incident:
//! its parent message is claimed in the store *before* it is posted, so that a restart or
//! another process sharing the database continues the same thread instead of posting a second
//! parent. It never changes an incident; it records only the thread (`store::slack`).
//!
//! At least once, without duplicate parents: a post whose answer was lost (a 5xx, a timeout, a
//! crash before the `ts` was recorded) may still have landed. Every parent carries the incident
//! ID in its message `metadata`; before such a post is tried again (by this process, or by
//! another after the claim went stale) the channel's history is searched for it. Only when that
//! search is impossible (no `channels:history` scope) can a parent be duplicated, and that is
//! logged. Replies and updates may be repeated after a crash (at least once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::blocks::{self, RunFacts};
use super::message::Links;
use super::slack::{retry_after, RetryPolicy};
use crate::config::{Secret, SlackConfig};
use crate::incident::{Incident, IncidentStatus};
use crate::store::{SlackProgress, SlackThread, Store, StoreError};

/// `metadata.event_type` of every parent message; `event_payload.incident_id` names it.
pub const METADATA_EVENT: &str = "nightcrier_incident";
/// A larger Web API answer is not read (Slack's are a few KB; history pages tens of KB).
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Characters kept of a Slack error code (untrusted text in our logs).
const MAX_CODE_CHARS: usize = 64;
/// History pages searched for an unconfirmed parent.
const HISTORY_PAGES: usize = 5;
/// The history is searched from this long before the claim (clock skew between us and Slack).
const HISTORY_MARGIN: Duration = Duration::from_secs(300);
/// Incidents handled per follow-up pass.
const SYNC_BATCH: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot build the Slack HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Retrying cannot help until the configuration (token, channel, scopes) changes.
    #[error("Slack {method} refused: {code} ({fix})")]
    Permanent {
        method: &'static str,
        code: String,
        fix: &'static str,
    },
    #[error("Slack {method} failed after {attempts} attempt(s): {last}")]
    Transient {
        method: &'static str,
        attempts: u32,
        last: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SlackAppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("no Slack channel for cluster {0:?}: set notifications.slack.channel or channels")]
    NoChannel(String),
}

/// What to change for a permanent error.
fn fix_for(code: &str) -> &'static str {
    match code {
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive"
        | "http_401" | "http_403" => {
            "check notifications.slack.bot_token: the bot token (xoxb-...) of an app installed in the workspace"
        }
        "channel_not_found" => {
            "check the channel ID in notifications.slack.channel / channels; a private channel must have the app invited"
        }
        "not_in_channel" => "invite the app to the channel (/invite @your-app)",
        "is_archived" => "the channel is archived: unarchive it or configure another",
        "missing_scope" | "no_permission" => {
            "add the scopes chat:write and channels:history (groups:history for private channels) to the app and reinstall it"
        }
        "message_not_found" | "cant_update_message" | "thread_not_found" => {
            "the incident's message was deleted in Slack; its updates are dropped"
        }
        _ => "Slack refused the request as sent; please report it as a nightcrier bug",
    }
}

/// Slack's error code, bounded and reduced to the characters codes use.
fn code_of(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or("unknown_error")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_CODE_CHARS)
        .collect()
}

/// A message `ts` (`1700000000.123456`) or channel ID as Slack answers them; anything else from
/// the wire is refused.
fn wire_id(v: &Value, max: usize) -> Option<String> {
    v.as_str()
        .filter(|s| {
            !s.is_empty()
                && s.len() <= max
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        })
        .map(str::to_string)
}

/// One try of one Web API call.
enum Try {
    Done(Value),
    Again {
        /// `Retry-After`, when Slack gave one.
        wait: Option<Duration>,
        /// The request may have been carried out (a lost answer), as opposed to refused.
        maybe_done: bool,
        why: String,
    },
    Fail(ApiError),
}

/// The Web API with one bot token. The token travels in the `Authorization` header only and
/// never shows in `Debug`, logs or errors.
#[derive(Clone)]
pub struct SlackApi {
    client: reqwest::Client,
    base: String,
    token: Secret,
    policy: RetryPolicy,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

impl SlackApi {
    pub fn new(
        base: &str,
        token: Secret,
        timeout: Duration,
        policy: RetryPolicy,
    ) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ApiError::Client(e.without_url()))?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            token,
            policy,
        })
    }

    async fn try_once(&self, method: &'static str, body: &Value) -> Try {
        let sent = self
            .client
            .post(format!("{}/{method}", self.base))
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Try::Again {
                    wait: None,
                    maybe_done: !e.is_connect(),
                    why: e.without_url().to_string(),
                }
            }
        };
        let status = resp.status();
        let after = retry_after(&resp);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Try::Again {
                wait: after,
                maybe_done: false,
                why: "HTTP 429 (rate limited)".into(),
            };
        }
        if status.is_server_error() {
            return Try::Again {
                wait: None,
                maybe_done: true,
                why: format!("HTTP {status}"),
            };
        }
        if !status.is_success() {
            let code = format!("http_{}", status.as_u16());
            return Try::Fail(ApiError::Permanent {
                method,
                fix: fix_for(&code),
                code,
            });
        }
        let mut bytes = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) if bytes.len() + c.len() <= MAX_RESPONSE_BYTES => {
                    bytes.extend_from_slice(&c)
                }
                Ok(Some(_)) => {
                    return Try::Again {
                        wait: None,
                        maybe_done: true,
                        why: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Try::Again {
                        wait: None,
                        maybe_done: true,
                        why: e.without_url().to_string(),
                    }
                }
            }
        }
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return Try::Again {
                    wait: None,
                    maybe_done: true,
                    why: format!("answer is not JSON: {e}"),
                }
            }
        };
        if v["ok"] == Value::Bool(true) {
            return Try::Done(v);
        }
        let code = code_of(&v);
        match code.as_str() {
            "ratelimited" | "rate_limited" => Try::Again {
                wait: after,
                maybe_done: false,
                why: code,
            },
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                Try::Again {
                    wait: None,
                    maybe_done: true,
                    why: code,
                }
            }
            _ => Try::Fail(ApiError::Permanent {
                method,
                fix: fix_for(&code),
                code,
            }),
        }
    }

    fn wait(&self, retry_after: Option<Duration>, attempt: u32) -> Duration {
        retry_after.map_or_else(
            || self.policy.backoff(attempt),
            |d| d.min(self.policy.max_retry_after),
        )
    }

    /// Calls `method`, retrying transient failures per the policy. For calls that are safe to
    /// repeat (updates, history) or whose repetition is accepted (replies).
    pub async fn call(&self, method: &'static str, body: &Value) -> Result<Value, ApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_once(method, body).await {
                Try::Done(v) => return Ok(v),
                Try::Fail(e) => return Err(e),
                Try::Again { wait, why, .. } => {
                    if attempt >= self.policy.max_attempts {
                        return Err(ApiError::Transient {
                            method,
                            attempts: attempt,
                            last: why,
                        });
                    }
                    tracing::debug!(method, attempt, why, "Slack call failed; retrying");
                    tokio::time::sleep(self.wait(wait, attempt)).await;
                }
            }
        }
    }
}

/// What a run-end delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Done,
    /// Another process is posting the incident's parent right now: try again later.
    Busy,
}

/// A posted parent.
struct Parent {
    thread: SlackThread,
    /// Posted by this call with the message given (no update needed).
    fresh: bool,
}

/// Slack app mode: the incident threads. Cheap to share by reference; one per reporter.
pub struct SlackApp {
    api: SlackApi,
    default_channel: Option<String>,
    channels: BTreeMap<String, String>,
    post_on_open: Vec<String>,
    notify_on_failure: bool,
    /// Names this process in claims.
    owner: String,
    /// An unposted claim older than this is taken over: longer than a post with its retries.
    claim_stale_after: Duration,
    /// Permanent errors already logged (code and channel), so each is logged once.
    logged: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for SlackApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApp")
            .field("api", &self.api)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl SlackApp {
    /// `None` when the configuration has no `bot_token` (webhook mode).
    pub fn from_config(cfg: &SlackConfig) -> Result<Option<Self>, ApiError> {
        let Some(token) = &cfg.bot_token else {
            return Ok(None);
        };
        let policy = RetryPolicy::with_attempts(cfg.max_attempts);
        let api = SlackApi::new(&cfg.api_url, token.clone(), cfg.timeout, policy)?;
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "nightcrier".into());
        // Each attempt may take the timeout plus the longest wait before the next.
        let claim_stale_after = (cfg.timeout + policy.max_retry_after.max(policy.max_backoff))
            .saturating_mul(policy.max_attempts.saturating_add(1));
        Ok(Some(Self {
            api,
            default_channel: cfg.channel.clone(),
            channels: cfg.channels.clone(),
            post_on_open: cfg.post_on_open.clone(),
            notify_on_failure: cfg.notify_on_failure,
            owner: format!("{host}/{}/{}", std::process::id(), Uuid::new_v4()),
            claim_stale_after,
            logged: Mutex::new(HashSet::new()),
        }))
    }

    /// Replaces the retry policy (tests use short backoffs).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.api.policy = policy;
        self
    }

    pub fn with_claim_stale_after(mut self, d: Duration) -> Self {
        self.claim_stale_after = d;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn notify_on_failure(&self) -> bool {
        self.notify_on_failure
    }

    fn channel_for(&self, cluster: &str) -> Result<&str, SlackAppError> {
        self.channels
            .get(cluster)
            .or(self.default_channel.as_ref())
            .map(String::as_str)
            .ok_or_else(|| SlackAppError::NoChannel(cluster.to_string()))
    }

    /// Logs a failed delivery: a permanent error once per (code, channel) with what to fix,
    /// later ones at debug; transient ones each time.
    pub fn log_failure(&self, incident: &Incident, kind: &str, e: &SlackAppError) {
        if let SlackAppError::Api(ApiError::Permanent { code, fix, .. }) = e {
            let channel = self.channel_for(&incident.cluster).unwrap_or("-");
            let first = self
                .logged
                .lock()
                .map(|mut l| l.insert(format!("{code} {channel}")))
                .unwrap_or(true);
            if first {
                tracing::warn!(
                    incident_id = %incident.id, cluster = %incident.cluster, kind, channel, code,
                    fix, "Slack refused a message; further ones with this error are logged at debug"
                );
            } else {
                tracing::debug!(incident_id = %incident.id, kind, code, "Slack refused a message");
            }
            return;
        }
        tracing::warn!(
            incident_id = %incident.id, cluster = %incident.cluster, kind, error = %e,
            "Slack message not delivered"
        );
    }

    /// The incident's parent, posting it with `msg` when there is none yet. `None` while
    /// another process holds a fresh claim on it.
    async fn ensure_parent(
        &self,
        store: &Store,
        incident: &Incident,
        msg: &Value,
    ) -> Result<Option<Parent>, SlackAppError> {
        let channel = self.channel_for(&incident.cluster)?;
        for _ in 0..3 {
            match store.slack_thread(incident.id).await? {
                Some(t) if t.ts.is_some() => {
                    return Ok(Some(Parent {
                        thread: t,
                        fresh: false,
                    }))
                }
                Some(t) => {
                    if t.claim_owner != self.owner {
                        let cutoff = chrono::Utc::now()
                            - chrono::Duration::from_std(self.claim_stale_after)
                                .unwrap_or(chrono::Duration::MAX);
                        if t.claimed_at >= cutoff {
                            return Ok(None);
                        }
                        if !store
                            .take_over_slack_claim(incident.id, &self.owner, cutoff)
                            .await?
                        {
                            continue;
                        }
                        tracing::info!(incident_id = %incident.id, previous = %t.claim_owner,
                            "taking over a stale claim on a Slack parent message");
                    }
                    // An earlier try (ours or the previous owner's) may have landed.
                    if let Some(found) = self.find_posted(&t.channel, incident, t.claimed_at).await
                    {
                        return self.adopt(store, incident.id, found).await;
                    }
                    return self
                        .post_parent(store, incident, &t.channel, t.claimed_at, msg)
                        .await;
                }
                None => {
                    if store
                        .claim_slack_thread(incident.id, channel, &self.owner)
                        .await?
                    {
                        let claimed_at = chrono::Utc::now();
                        return self
                            .post_parent(store, incident, channel, claimed_at, msg)
                            .await;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Records a parent found in the channel as ours.
    async fn adopt(
        &self,
        store: &Store,
        id: Uuid,
        (channel, ts): (String, String),
    ) -> Result<Option<Parent>, SlackAppError> {
        // `false` when another process recorded one meanwhile: the recorded one wins.
        store.set_slack_ts(id, &self.owner, &channel, &ts).await?;
        Ok(store
            .slack_thread(id)
            .await?
            .filter(|t| t.ts.is_some())
            .map(|thread| Parent {
                thread,
                // Found, not posted by this call: its content is older, update it.
                fresh: false,
            }))
    }

    async fn post_parent(
        &self,
        store: &Store,
        incident: &Incident,
        channel: &str,
        claimed_at: chrono::DateTime<chrono::Utc>,
        msg: &Value,
    ) -> Result<Option<Parent>, SlackAppError> {
        let mut body = msg.clone();
        body["channel"] = json!(channel);
        body["unfurl_links"] = json!(false);
        body["metadata"] = json!({
            "event_type": METADATA_EVENT,
            "event_payload": { "incident_id": incident.id.to_string() },
        });
        let method = "chat.postMessage";
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.api.try_once(method, &body).await {
                Try::Done(v) => {
                    let Some(ts) = wire_id(&v["ts"], 64) else {
                        return Err(ApiError::Transient {
                            method,
                            attempts: attempt,
                            last: "answer without a message ts".into(),
                        }
                        .into());
                    };
                    let answered = wire_id(&v["channel"], 64).unwrap_or_else(|| channel.into());
                    if store
                        .set_slack_ts(incident.id, &self.owner, &answered, &ts)
                        .await?
                    {
                        return Ok(store.slack_thread(incident.id).await?.map(|thread| Parent {
                            thread,
                            fresh: true,
                        }));
                    }
                    // Our claim was taken over while we waited: whoever recorded a ts wins.
                    tracing::warn!(incident_id = %incident.id,
                        "a Slack parent message was posted twice (a claim went stale mid-post)");
                    return Ok(store
                        .slack_thread(incident.id)
                        .await?
                        .filter(|t| t.ts.is_some())
                        .map(|thread| Parent {
                            thread,
                            fresh: false,
                        }));
                }
                Try::Fail(e) => return Err(e.into()),
                Try::Again {
                    wait,
                    maybe_done,
                    why,
                } => {
                    if attempt >= self.api.policy.max_attempts {
                        return Err(ApiError::Transient {
                            method,
                            attempts: attempt,
                            last: why,
                        }
                        .into());
                    }
                    tokio::time::sleep(self.api.wait(wait, attempt)).await;
                    // A lost answer: the message may be there. Never post it twice.
                    if maybe_done {
                        if let Some(found) = self.find_posted(channel, incident, claimed_at).await {
                            return self.adopt(store, incident.id, found).await;
                        }
                    }
                }
            }
        }
    }

    /// The parent of `incident` in `channel`'s history since shortly before `since`, by its
    /// metadata. `None` when absent or when the history cannot be read (logged).
    async fn find_posted(
        &self,
        channel: &str,
        incident: &Incident,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Option<(String, String)> {
        let oldest = since - chrono::Duration::from_std(HISTORY_MARGIN).ok()?;
        let oldest = format!(
            "{}.{:06}",
            oldest.timestamp(),
            oldest.timestamp_subsec_micros()
        );
        let id = incident.id.to_string();
        let mut cursor: Option<String> = None;
        for _ in 0..HISTORY_PAGES {
            let mut body = json!({
                "channel": channel, "oldest": oldest, "inclusive": true,
                "include_all_metadata": true, "limit": 200,
            });
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let v = match self.api.call("conversations.history", &body).await {
                Ok(v) => v,
                Err(e) => {
                    self.log_failure(incident, "history", &SlackAppError::Api(e));
                    return None;
                }
            };
            let found = v["messages"].as_array().into_iter().flatten().find(|m| {
                m["metadata"]["event_type"] == METADATA_EVENT
                    && m["metadata"]["event_payload"]["incident_id"] == id.as_str()
            });
            if let Some(ts) = found.and_then(|m| wire_id(&m["ts"], 64)) {
                return Some((channel.to_string(), ts));
            }
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .filter(|c| !c.is_empty() && c.len() <= 256)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        None
    }

    async fn update(&self, t: &SlackThread, msg: &Value) -> Result<(), ApiError> {
        let mut body = msg.clone();
        body["channel"] = json!(t.channel);
        body["ts"] = json!(t.ts);
        self.api.call("chat.update", &body).await.map(drop)
    }

    async fn reply(&self, t: &SlackThread, msg: &Value) -> Result<(), ApiError> {
        let mut body = msg.clone();
        body["channel"] = json!(t.channel);
        body["thread_ts"] = json!(t.ts);
        body["unfurl_links"] = json!(false);
        self.api.call("chat.postMessage", &body).await.map(drop)
    }

    /// A message of its own (the degraded / recovered alerts) in the cluster's channel.
    pub async fn post_alert(&self, cluster: &str, msg: &Value) -> Result<(), SlackAppError> {
        let mut body = msg.clone();
        body["channel"] = json!(self.channel_for(cluster)?);
        body["unfurl_links"] = json!(false);
        self.api.call("chat.postMessage", &body).await?;
        Ok(())
    }

    /// A run ended: the parent (posted now if needed) shows the result, and the thread gets the
    /// report or, for a failed run, its reason (unless `notify_on_failure` is off).
    pub async fn run_ended(
        &self,
        store: &Store,
        incident: &Incident,
        facts: &RunFacts,
        links: &Links,
        cluster_context: &[(String, String)],
    ) -> Result<Delivery, SlackAppError> {
        let msg = blocks::parent(incident, Some(facts), links, cluster_context);
        if facts.failure.is_some() && !self.notify_on_failure {
            // Only a parent that exists is brought up to date.
            if let Some(t) = store
                .slack_thread(incident.id)
                .await?
                .filter(|t| t.ts.is_some())
            {
                self.update(&t, &msg).await?;
            }
            return Ok(Delivery::Done);
        }
        let Some(parent) = self.ensure_parent(store, incident, &msg).await? else {
            return Ok(Delivery::Busy);
        };
        if !parent.fresh {
            self.update(&parent.thread, &msg).await?;
        }
        if parent.thread.posted_attempt < incident.attempt {
            self.reply(&parent.thread, &blocks::run_reply(incident, facts, links))
                .await?;
        }
        store
            .record_slack_progress(
                incident.id,
                SlackProgress {
                    // The parent shows the count and the status now.
                    occurrences: incident.occurrences,
                    attempt: incident.attempt,
                    resolved: false,
                    status: Some(incident.status),
                },
            )
            .await?;
        Ok(Delivery::Done)
    }

    /// One pass over what is not about a run's end: parents of incidents that open with a
    /// severity in `post_on_open`, later occurrences and resolutions as replies, and the parent
    /// updated when the status changed (open, investigating, resolved, cancelled...) while no
    /// run result is on it. Returns the replies and parents sent.
    pub async fn sync(
        &self,
        store: &Store,
        base_url: Option<&str>,
        cluster_context: &HashMap<String, Vec<(String, String)>>,
    ) -> Result<u64, StoreError> {
        let mut sent = 0;
        let ctx = |c: &str| cluster_context.get(c).map_or(&[][..], Vec::as_slice);
        if !self.post_on_open.is_empty() {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(self.claim_stale_after)
                    .unwrap_or(chrono::Duration::MAX);
            for i in store
                .slack_unopened(&self.post_on_open, cutoff, SYNC_BATCH)
                .await?
            {
                let links = Links::for_incident(base_url, &i);
                let msg = blocks::parent(&i, None, &links, ctx(&i.cluster));
                match self.ensure_parent(store, &i, &msg).await {
                    Ok(Some(_)) => {
                        sent += 1;
                        let p = SlackProgress {
                            occurrences: i.occurrences,
                            status: Some(i.status),
                            ..SlackProgress::default()
                        };
                        store.record_slack_progress(i.id, p).await?;
                    }
                    Ok(None) => {}
                    Err(SlackAppError::Store(e)) => return Err(e),
                    Err(e) => self.log_failure(&i, "opened", &e),
                }
            }
        }
        for i in store.slack_followups(SYNC_BATCH).await? {
            let Some(t) = store.slack_thread(i.id).await?.filter(|t| t.ts.is_some()) else {
                continue;
            };
            match self
                .follow_up(store, &i, &t, base_url, ctx(&i.cluster))
                .await
            {
                Ok(n) => sent += n,
                Err(SlackAppError::Store(e)) => return Err(e),
                Err(e) => {
                    self.log_failure(&i, "follow-up", &e);
                    // A permanent refusal will not change on its own: do not ask again each
                    // pass. A transient one is tried again next pass.
                    if matches!(e, SlackAppError::Api(ApiError::Permanent { .. })) {
                        let p = SlackProgress {
                            occurrences: i.occurrences,
                            attempt: 0,
                            resolved: is_resolved(&i),
                            status: Some(i.status),
                        };
                        store.record_slack_progress(i.id, p).await?;
                    }
                }
            }
        }
        Ok(sent)
    }

    async fn follow_up(
        &self,
        store: &Store,
        i: &Incident,
        t: &SlackThread,
        base_url: Option<&str>,
        ctx: &[(String, String)],
    ) -> Result<u64, SlackAppError> {
        let mut sent = 0;
        let mut p = SlackProgress {
            occurrences: t.posted_occurrences,
            attempt: t.posted_attempt,
            resolved: t.resolved_posted,
            status: None,
        };
        if i.occurrences > t.posted_occurrences {
            self.reply(t, &blocks::occurrences_reply(i, t.posted_occurrences))
                .await?;
            sent += 1;
            p.occurrences = i.occurrences;
            store.record_slack_progress(i.id, p).await?;
        }
        if is_resolved(i) && !t.resolved_posted {
            self.reply(t, &blocks::resolved_reply(i)).await?;
            sent += 1;
            p.resolved = true;
            store.record_slack_progress(i.id, p).await?;
        }
        // A parent with a run's result on it keeps it: it is not rendered again here.
        let has_result = matches!(
            i.status,
            IncidentStatus::Succeeded | IncidentStatus::Failed | IncidentStatus::TimedOut
        );
        if !has_result {
            let links = Links::for_incident(base_url, i);
            self.update(t, &blocks::parent(i, None, &links, ctx))
                .await?;
        }
        // With a result, the run-end report renders the parent (this pass or a later one);
        // recorded either way so that the incident stops being a follow-up.
        p.status = Some(i.status);
        store.record_slack_progress(i.id, p).await?;
        Ok(sent)
    }
}

fn is_resolved(i: &Incident) -> bool {
    i.resolved_at.is_some() || i.status == IncidentStatus::Resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_are_checked() {
        assert_eq!(
            wire_id(&json!("1700000000.123456"), 64).as_deref(),
            Some("1700000000.123456")
        );
        assert_eq!(wire_id(&json!("C0123ABC"), 64).as_deref(), Some("C0123ABC"));
        assert_eq!(wire_id(&json!("<script>"), 64), None);
        assert_eq!(wire_id(&json!(12), 64), None);
        assert_eq!(wire_id(&json!("1".repeat(65)), 64), None);
    }

    #[test]
    fn codes_are_bounded_and_known_ones_say_what_to_fix() {
        assert_eq!(
            code_of(&json!({"error": "not_in_channel"})),
            "not_in_channel"
        );
        assert_eq!(code_of(&json!({"error": "x\ny<z>".repeat(40)})).len(), 64);
        assert!(fix_for("not_in_channel").contains("/invite"));
        assert!(fix_for("invalid_auth").contains("bot_token"));
        assert!(fix_for("channel_not_found").contains("channel"));
    }
}
