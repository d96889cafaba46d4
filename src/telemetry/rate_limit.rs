//! The one rate limiter for repeated log lines.
//!
//! A loop that retries every second (a store outage, malformed notifications) would otherwise
//! write a line per attempt. This module owns the rule "at most one line per period, saying how
//! many were held back"; callers keep one [`RateLimited`] per kind of message and log only when
//! [`RateLimited::check`] allows it. It must not log itself: the caller's line keeps its fields.

use std::time::Duration;

use tokio::time::Instant;

/// Lets a repeated message through at most once per period and counts the ones it holds back.
/// Uses tokio's clock, so tests with a paused clock see the periods they advance.
#[derive(Debug, Clone)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last allowed one)` when this occurrence may be logged now.
    pub fn check(&mut self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    /// [`check`](Self::check) at a given instant.
    pub fn check_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_period_are_held_back_and_counted() {
        let every = Duration::from_secs(10);
        let mut r = RateLimited::new(every);
        let t0 = Instant::now();
        assert_eq!(r.check_at(t0), Some(0));
        assert_eq!(r.check_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(11)), Some(2));
        assert_eq!(r.check_at(t0 + Duration::from_secs(12)), None);
        assert_eq!(r.check_at(t0 + Duration::from_secs(21)), Some(1));
    }
}
