//! What a stream reader does while its sink is full: stop reading for a bounded time (so TCP
//! flow control slows the server to the writer's pace), then read on and drop fault
//! notifications without parsing them (their JSON parse is most of a reader's CPU, and spending it
//! on events that are then thrown away is what made overload collapse throughput).
//!
//! This module owns that decision and the cheap test of which events may be dropped unparsed;
//! the counting belongs to the sink ([`FaultSink::shed`]).

use super::sink::FaultSink;
use crate::fault::ReceivedFault;

/// One reader's state: whether it gave up waiting for room and drops fault notifications.
#[derive(Debug, Default)]
pub struct Admission {
    shedding: bool,
}

impl Admission {
    /// Called before the reader takes its next event. True: read and hand it off as usual.
    /// False: the sink stayed full for its bounded wait; drop fault notifications unparsed
    /// (until the sink has room again, without waiting again).
    pub async fn ready(&mut self, sink: &dyn FaultSink) -> bool {
        if sink.has_room() {
            self.shedding = false;
            return true;
        }
        if self.shedding {
            return false;
        }
        if sink.wait_for_room().await {
            return true;
        }
        self.shedding = true;
        false
    }
}

impl Admission {
    /// Hands a parsed fault to the sink. If another reader took the last room between this
    /// reader's check and now, waits for room like [`Admission::ready`] and offers it again,
    /// so a race for room drops nothing; only once the sink stayed full for its bounded wait is
    /// the fault dropped (counted by the sink's `offer`).
    pub async fn hand_off(&mut self, sink: &dyn FaultSink, mut fault: ReceivedFault) {
        loop {
            match sink.try_offer(fault) {
                Ok(()) => return,
                Err(back) => fault = *back,
            }
            if !self.ready(sink).await {
                // Counts the drop (or takes the fault, if room came back just now).
                sink.offer(fault);
                return;
            }
        }
    }
}

/// True when `data` (an SSE event's data, not parsed) is a fault or event notification that may
/// be dropped unparsed. Conservative: anything mentioning a subscription error is parsed (that
/// one ends the session), and what this lets through is still dropped by the sink, only later.
pub fn sheddable(data: &str) -> bool {
    (data.contains("kubernetes/faults\"") || data.contains("kubernetes/events\""))
        && !data.contains("subscription_error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fault_and_event_notifications_are_dropped_unparsed() {
        let fault = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":{"faultId":"ab"},"level":"warning","logger":"kubernetes/faults"}}"#;
        let event = r#"{"method":"notifications/message","params":{"logger":"kubernetes/events","data":{}}}"#;
        let sub_error = r#"{"method":"notifications/message","params":{"logger":"kubernetes/subscription_error","data":{"error":"informer for kubernetes/faults\" failed"}}}"#;
        let diagnostic = r#"{"method":"notifications/message","params":{"logger":"kubernetes-mcp-server","data":"resynced"}}"#;
        assert!(sheddable(fault));
        assert!(sheddable(event));
        assert!(!sheddable(sub_error));
        assert!(!sheddable(diagnostic));
        assert!(!sheddable("not json at all"));
    }
}
