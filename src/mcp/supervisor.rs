//! The per-cluster supervisor: `connecting → subscribed → backing_off → connecting`.
//!
//! Any failure is fatal to the session: it is DELETEd (best effort) and, after an exponential
//! backoff with full jitter, replaced by a brand-new session and subscription. A session is never
//! repaired and never re-subscribed in place (the server leaks old subscriptions' notifications
//! into the session, which would duplicate faults).
//!
//! The GET stream is read the whole time the session lives, concurrently with the handshake's
//! last step (the subscribe call) and the watchdog, so a lost stream or a 404 is acted on at
//! once, not at the next ping, and notifications are handed to the sink in arrival order.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::McpError;
use super::jsonrpc::{classify, Incoming, MalformedReason};
use super::session::{EventStream, Session, SessionOptions};
use super::sink::{ClusterStats, FaultSink, Phase};
use super::sse::SseItem;
use crate::config::{ClusterConfig, ReconnectConfig};
use crate::fault::ReceivedFault;
use crate::telemetry::RateLimited;

/// Floor of the first backoff and of the watchdog's periods (zero would spin).
const MIN_BACKOFF: Duration = Duration::from_millis(1);
/// Malformed-message warnings per cluster are logged at most this often.
const MALFORMED_WARN_EVERY: Duration = Duration::from_secs(10);
/// Unsaved event counts are reported this often while subscribed.
const STATE_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Exponential backoff with full jitter: the n-th delay is uniform in `[0, min(max, initial·2ⁿ)]`,
/// so a fleet that lost its server at once does not come back at once.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        // A zero initial backoff would never grow: reconnect in a hot loop.
        let initial = initial.max(MIN_BACKOFF);
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let cap = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        cap.mul_f64(rng.random::<f64>())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay after a session ended; a session that stayed subscribed for `healthy_after`
    /// starts the backoff over.
    pub fn after_session(
        &mut self,
        subscribed_for: Option<Duration>,
        healthy_after: Duration,
        rng: &mut impl Rng,
    ) -> Duration {
        if subscribed_for.is_some_and(|d| d >= healthy_after) {
            self.reset();
        }
        self.next_delay(rng)
    }
}

/// How one session ended.
#[derive(Debug)]
pub enum SessionEnd {
    /// Shutdown was asked for.
    Cancelled,
    Failed {
        error: McpError,
        /// How long the session had been subscribed, if it got that far.
        subscribed_for: Option<Duration>,
    },
}

/// Keeps one cluster subscribed, forever, until cancelled.
pub struct Supervisor {
    cluster: ClusterConfig,
    reconnect: ReconnectConfig,
    client: reqwest::Client,
    sink: Arc<dyn FaultSink>,
    stats: Arc<ClusterStats>,
    backoff: Backoff,
    rng: StdRng,
    malformed_warn: Mutex<RateLimited>,
}

impl Supervisor {
    pub fn new(
        cluster: ClusterConfig,
        reconnect: ReconnectConfig,
        client: reqwest::Client,
        sink: Arc<dyn FaultSink>,
        stats: Arc<ClusterStats>,
    ) -> Self {
        Self {
            backoff: Backoff::new(reconnect.initial_backoff, reconnect.max_backoff),
            cluster,
            reconnect,
            client,
            sink,
            stats,
            rng: StdRng::from_os_rng(),
            malformed_warn: Mutex::new(RateLimited::new(MALFORMED_WARN_EVERY)),
        }
    }

    fn name(&self) -> &str {
        &self.cluster.name
    }

    fn report(&self, phase: Phase, sub: Option<String>, error: Option<String>) {
        let state = self.stats.set_phase(phase, sub, error);
        self.sink.report_state(state);
        let connected = if phase == Phase::Subscribed { 1.0 } else { 0.0 };
        metrics::gauge!(crate::telemetry::names::MCP_CONNECTED, "cluster" => self.cluster.name.clone())
            .set(connected);
    }

    /// Sessions one after another, with backoff between them, until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let end = self.run_once(&cancel).await;
            let SessionEnd::Failed {
                error,
                subscribed_for,
            } = end
            else {
                break;
            };
            let delay = self.backoff.after_session(
                subscribed_for,
                self.reconnect.healthy_after,
                &mut self.rng,
            );
            // The next attempt's time goes with the reason: `status` and the dashboard show it.
            let next = chrono::Utc::now() + chrono::TimeDelta::from_std(delay).unwrap_or_default();
            self.report(
                Phase::BackingOff,
                None,
                Some(format!(
                    "{error}; next attempt at {} UTC",
                    next.format("%H:%M:%S")
                )),
            );
            metrics::counter!(crate::telemetry::names::MCP_RECONNECTS, "cluster" => self.cluster.name.clone())
                .increment(1);
            info!(
                cluster = %self.name(),
                reason = %error,
                retry_in = ?delay,
                "connection lost"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => break,
            }
        }
        self.report(Phase::Stopped, None, None);
    }

    /// One session from handshake to failure (or cancellation). The session is DELETEd on the
    /// way out.
    pub async fn run_once(&mut self, cancel: &CancellationToken) -> SessionEnd {
        self.report(Phase::Connecting, None, None);
        let opts = match SessionOptions::from_config(&self.cluster.mcp) {
            Ok(o) => o,
            Err(error) => {
                return SessionEnd::Failed {
                    error,
                    subscribed_for: None,
                }
            }
        };
        let opened = tokio::select! {
            r = Session::open(self.client.clone(), opts) => r,
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
        };
        let (session, mut stream) = match opened {
            Ok(s) => s,
            Err(error) => {
                return SessionEnd::Failed {
                    error,
                    subscribed_for: None,
                }
            }
        };
        debug!(cluster = %self.name(), session = %session.id(), "session opened");
        let subscribed: OnceLock<(String, Instant)> = OnceLock::new();
        let this = &*self;
        let error = tokio::select! {
            _ = cancel.cancelled() => None,
            e = this.read_stream(&mut stream, &subscribed) => Some(e),
            e = this.subscribe_and_watch(&session, &subscribed) => Some(e),
        };
        drop(stream);
        session.delete().await;
        let subscribed_for = subscribed.get().map(|(_, at)| at.elapsed());
        match error {
            None => SessionEnd::Cancelled,
            Some(error) => SessionEnd::Failed {
                error,
                subscribed_for,
            },
        }
    }

    async fn subscribe_and_watch(
        &self,
        session: &Session,
        subscribed: &OnceLock<(String, Instant)>,
    ) -> McpError {
        let id = match session.subscribe_faults().await {
            Ok(id) => id,
            Err(e) => return e,
        };
        let _ = subscribed.set((id.clone(), Instant::now()));
        self.report(Phase::Subscribed, Some(id.clone()), None);
        info!(cluster = %self.name(), subscription_id = %id, session = %session.id(), "subscribed");
        self.watchdog(session, &id).await
    }

    /// Pings (a silent stream is normal, a failed ping is not) and checks now and then that the
    /// subscription is still listed. Returns the first failure.
    async fn watchdog(&self, session: &Session, sub: &str) -> McpError {
        let r = &self.reconnect;
        let start = Instant::now();
        let ping_every = r.ping_interval.max(MIN_BACKOFF);
        let mut ping = tokio::time::interval_at(start + ping_every, ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let check_every = r.subscription_check_interval.max(MIN_BACKOFF);
        let mut check = tokio::time::interval_at(start + check_every, check_every);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Event counts are reported at most once a second as events arrive; this tick saves the
        // last burst's counts too, so `nightcrier status` is never a ping interval behind.
        let mut flush = tokio::time::interval_at(start + STATE_FLUSH_EVERY, STATE_FLUSH_EVERY);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                _ = flush.tick() => Ok(()),
                _ = ping.tick() => session.ping(r.ping_timeout).await,
                _ = check.tick() => match session.list_subscriptions().await {
                    Ok(subs) if subs.iter().any(|s| s == sub) => Ok(()),
                    Ok(_) => Err(McpError::SubscriptionMissing { id: sub.to_string() }),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                return e;
            }
            if let Some(state) = self.stats.flush() {
                self.sink.report_state(state);
            }
        }
    }

    /// Reads the GET stream until it fails; hands every notification off in order.
    async fn read_stream(
        &self,
        stream: &mut EventStream,
        subscribed: &OnceLock<(String, Instant)>,
    ) -> McpError {
        loop {
            let item = match stream.next().await {
                Ok(i) => i,
                Err(e) => return e,
            };
            let max = self.cluster.mcp.max_event_bytes;
            match item {
                SseItem::Event(ev) => match classify(&ev.data) {
                    Incoming::Fault { fault, raw } => self.fault(*fault, raw),
                    Incoming::SubscriptionError {
                        subscription_id,
                        error,
                    } => {
                        let ours = subscribed.get().map(|(id, _)| id.as_str());
                        if ours == Some(subscription_id.as_str()) {
                            return McpError::SubscriptionFailed {
                                id: subscription_id,
                                error,
                            };
                        }
                        debug!(cluster = %self.name(), %subscription_id, "error of another subscription ignored");
                    }
                    Incoming::Ignored => {}
                    Incoming::Malformed { reason, detail } => self.malformed(reason, &detail),
                },
                SseItem::Oversized { bytes } => self.malformed(
                    MalformedReason::Oversized,
                    &format!("event of more than {bytes} bytes (max_event_bytes is {max})"),
                ),
                SseItem::InvalidUtf8 => {
                    self.malformed(MalformedReason::InvalidUtf8, "event is not valid UTF-8")
                }
            }
        }
    }

    fn fault(&self, mut fault: crate::fault::Fault, raw: serde_json::Value) {
        if fault.cluster.is_empty() {
            fault.cluster = self.cluster.name.clone();
        }
        metrics::counter!(crate::telemetry::names::EVENTS_RECEIVED, "cluster" => self.cluster.name.clone())
            .increment(1);
        self.sink.offer(ReceivedFault {
            cluster: self.cluster.name.clone(),
            fault,
            received_at: Utc::now(),
            raw,
            triage_enabled: self.cluster.triage.enabled,
        });
        if let Some(state) = self.stats.event(false) {
            self.sink.report_state(state);
        }
    }

    fn malformed(&self, reason: MalformedReason, detail: &str) {
        metrics::counter!(
            crate::telemetry::names::EVENTS_MALFORMED,
            "cluster" => self.cluster.name.clone(),
            "reason" => reason.as_str()
        )
        .increment(1);
        if let Some(state) = self.stats.event(true) {
            self.sink.report_state(state);
        }
        let allowed = self
            .malformed_warn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check();
        if let Some(suppressed) = allowed {
            warn!(
                cluster = %self.name(),
                reason = reason.as_str(),
                detail,
                suppressed,
                "malformed notification skipped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_with_full_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let cap = b.ceiling();
            ceilings.push(cap.as_secs());
            let d = b.next_delay(&mut rng);
            assert!(d <= cap, "{d:?} > {cap:?}");
        }
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<Duration> = (0..100)
            .map(|_| {
                Backoff::new(Duration::from_secs(8), Duration::from_secs(60)).next_delay(&mut rng)
            })
            .collect();
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        assert!(*min < Duration::from_secs(2) && *max > Duration::from_secs(6));
    }

    #[test]
    fn a_healthy_session_resets_the_backoff_a_short_one_does_not() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(9);
        let minute = Duration::from_secs(60);
        for _ in 0..4 {
            b.after_session(None, minute, &mut rng);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(16));
        b.after_session(Some(Duration::from_secs(59)), minute, &mut rng);
        assert_eq!(b.ceiling(), Duration::from_secs(32));
        let d = b.after_session(Some(minute), minute, &mut rng);
        assert!(d <= Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn a_zero_initial_backoff_still_grows() {
        let mut b = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        assert!(b.ceiling() >= Duration::from_millis(32));
    }

    #[test]
    fn backoff_survives_huge_attempt_counts() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
    }
}
