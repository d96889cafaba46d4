//! Posting to a Slack incoming webhook, with bounded retries.
//!
//! The webhook URL is a credential: it is held as a [`Secret`] and stripped from every reqwest
//! error (`without_url`), so neither logs nor errors can show it. Retried: network errors,
//! timeouts, 5xx, and 429 after its `Retry-After`. Other 4xx are the payload's fault and final.

use std::time::Duration;

use reqwest::StatusCode;

use crate::config::{Secret, SlackConfig};

/// Backoff before the first retry; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A longer `Retry-After` is cut to this, so one message cannot hold the reporter for long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Response text kept in errors.
const MAX_ERROR_BODY: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    pub fn with_attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }

    /// Exponential, with jitter in its upper half so that retries of several senders spread.
    pub(super) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exp / 2;
        half + exp.saturating_sub(half).mul_f64(rand::random::<f64>())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook_url is not set")]
    NoWebhook,
    #[error("cannot build the Slack HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("Slack webhook answered {status} after {attempts} attempt(s): {body}")]
    Rejected {
        status: StatusCode,
        attempts: u32,
        body: String,
    },
    #[error("Slack webhook unreachable after {attempts} attempt(s): {source}")]
    Transport {
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
}

/// Sends JSON payloads to one webhook. Cheap to clone.
#[derive(Clone)]
pub struct SlackNotifier {
    client: reqwest::Client,
    url: Secret,
    policy: RetryPolicy,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("url", &self.url)
            .field("policy", &self.policy)
            .finish()
    }
}

impl SlackNotifier {
    pub fn from_config(cfg: &SlackConfig) -> Result<Self, NotifyError> {
        Self::new(
            cfg.webhook_url.clone().ok_or(NotifyError::NoWebhook)?,
            cfg.timeout,
            RetryPolicy::with_attempts(cfg.max_attempts),
        )
    }

    pub fn new(url: Secret, timeout: Duration, policy: RetryPolicy) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| NotifyError::Client(e.without_url()))?;
        Ok(Self {
            client,
            url: url.clone(),
            policy,
        })
    }

    /// Posts `payload`, retrying per the policy; returns the attempts it took.
    pub async fn send(&self, payload: &serde_json::Value) -> Result<u32, NotifyError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.policy.max_attempts;
            let wait = match self
                .client
                .post(self.url.expose())
                .json(payload)
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => return Ok(attempt),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if !retryable || last {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(NotifyError::Rejected {
                            status,
                            attempts: attempt,
                            body: body.chars().take(MAX_ERROR_BODY).collect(),
                        });
                    }
                    match retry_after {
                        Some(after) if status == StatusCode::TOO_MANY_REQUESTS => {
                            after.min(self.policy.max_retry_after)
                        }
                        _ => self.policy.backoff(attempt),
                    }
                }
                Err(e) => {
                    if last {
                        return Err(NotifyError::Transport {
                            attempts: attempt,
                            source: e.without_url(),
                        });
                    }
                    tracing::debug!(error = %e.without_url(), attempt, "Slack webhook unreachable; retrying");
                    self.policy.backoff(attempt)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// `Retry-After` in seconds (Slack sends seconds; an HTTP date falls back to the backoff).
pub(super) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            max_retry_after: MAX_RETRY_AFTER,
        };
        let b1 = p.backoff(1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b3 = p.backoff(3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
        let b9 = p.backoff(9);
        assert!(b9 <= Duration::from_millis(400));
    }

    #[test]
    fn debug_hides_the_url() {
        let n = SlackNotifier::new(
            Secret::new("https://hooks.slack.com/services/T/B/SECRET"),
            Duration::from_secs(1),
            RetryPolicy::with_attempts(1),
        )
        .unwrap();
        assert!(!format!("{n:?}").contains("SECRET"));
    }
}
