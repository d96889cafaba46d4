//! Ingest: the bounded channel between the MCP readers and the database, the group-committing
//! writer, and the outage buffer.
//!
//! This module owns the hand-off of received faults and connection states to the store. It must
//! not know about agents, and its sending side must never wait: a reader that waits stalls fault
//! detection on the server for every client.
//!
//! NOTE(skeleton): signatures are the contract the MCP supervisor codes against.
#![allow(unused_variables)]

use crate::fault::ReceivedFault;
use crate::incident::ConnectionState;

/// The readers' side of the channel. Cheap to clone: one per cluster supervisor.
#[derive(Clone)]
pub struct IngestSender {}

impl IngestSender {
    /// Queues a fault without waiting. When the buffer is full the fault is dropped, counted in
    /// `nightcrier_events_dropped_total{cluster}` and logged (rate-limited); returns false then.
    pub fn offer(&self, fault: ReceivedFault) -> bool {
        todo!()
    }

    /// Publishes the latest connection state of a cluster; the writer persists the newest one
    /// per cluster (older unsaved ones are superseded, never queued).
    pub fn report_state(&self, state: ConnectionState) {
        todo!()
    }
}
