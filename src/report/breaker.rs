//! The failure circuit breaker: failed runs send no message each; a streak of them sends one
//! "triage degraded" message, and the next success one "recovered" message.
//!
//! State is fed in finish order by the reporter and lives in memory: after a restart a streak
//! starts again from zero (at worst one more degraded message, never a lost recovery after one).

use std::collections::VecDeque;

use uuid::Uuid;

/// Reasons kept for the degraded message.
pub const MAX_REASONS: usize = 5;

/// One failed run, as the degraded message lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRun {
    pub incident_id: Uuid,
    pub cluster: String,
    pub reason: String,
}

/// What the breaker asks the reporter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `threshold` consecutive failures: the last ones, oldest first.
    Degraded {
        consecutive: u32,
        last: Vec<FailedRun>,
    },
    /// The first success after a degraded message.
    Recovered { failures: u32 },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    consecutive: u32,
    open: bool,
    last: VecDeque<FailedRun>,
}

impl Breaker {
    /// `threshold` is at least 1 (validated config); 0 is treated as 1.
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            consecutive: 0,
            open: false,
            last: VecDeque::with_capacity(MAX_REASONS),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    pub fn on_failure(&mut self, run: FailedRun) -> Option<Transition> {
        self.consecutive = self.consecutive.saturating_add(1);
        if self.last.len() == MAX_REASONS {
            self.last.pop_front();
        }
        self.last.push_back(run);
        if !self.open && self.consecutive >= self.threshold {
            self.open = true;
            return Some(Transition::Degraded {
                consecutive: self.consecutive,
                last: self.last.iter().cloned().collect(),
            });
        }
        None
    }

    pub fn on_success(&mut self) -> Option<Transition> {
        let failures = std::mem::take(&mut self.consecutive);
        self.last.clear();
        if std::mem::take(&mut self.open) {
            return Some(Transition::Recovered { failures });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: u32) -> FailedRun {
        FailedRun {
            incident_id: Uuid::nil(),
            cluster: "c".into(),
            reason: format!("r{n}"),
        }
    }

    #[test]
    fn opens_once_and_recovers_once() {
        let mut b = Breaker::new(3);
        assert_eq!(b.on_failure(run(1)), None);
        assert_eq!(b.on_success(), None, "closed breaker: no recovery message");
        assert_eq!(b.on_failure(run(2)), None);
        assert_eq!(b.on_failure(run(3)), None);
        match b.on_failure(run(4)) {
            Some(Transition::Degraded { consecutive, last }) => {
                assert_eq!(consecutive, 3);
                let reasons: Vec<_> = last.iter().map(|r| r.reason.as_str()).collect();
                assert_eq!(reasons, ["r2", "r3", "r4"]);
            }
            other => panic!("expected degraded, got {other:?}"),
        }
        for n in 5..20 {
            assert_eq!(b.on_failure(run(n)), None);
        }
        assert_eq!(b.on_success(), Some(Transition::Recovered { failures: 18 }));
        assert_eq!(b.on_success(), None);
        assert!(!b.is_open());
    }
}
