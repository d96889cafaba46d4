//! Coming from the Go nightcrier (github.com/randybias/nightcrier): translating its
//! configuration (`config import-go`) and the names it used.
//!
//! This module owns the knowledge of the Go program's configuration keys, environment variable
//! names, model aliases and status names, and how each maps onto nightcrier. It must not touch
//! the network; reading a Go database is the store's job (`store::gosqlite`), which takes the
//! status mapping from here.

mod config_import;

pub use config_import::{
    import_config, resolve_model, GoImport, GoImportError, Note, GO_ENV_VARS, MAX_GO_CONFIG_BYTES,
};

use crate::incident::IncidentStatus;

/// The Go program's incident statuses (its `chk_incidents_status`) as nightcrier states.
/// `resolved` meant "investigation finished", hence `succeeded`; an incident the Go program left
/// `pending` or `investigating` will never finish there, and re-running old faults now would
/// page people about the past, hence `expired`.
pub fn status_from_go(go: &str) -> Option<IncidentStatus> {
    match go {
        "resolved" => Some(IncidentStatus::Succeeded),
        "failed" | "agent_failed" => Some(IncidentStatus::Failed),
        "pending" | "investigating" => Some(IncidentStatus::Expired),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_go_status_has_a_nightcrier_state() {
        for s in [
            "pending",
            "investigating",
            "resolved",
            "failed",
            "agent_failed",
        ] {
            assert!(status_from_go(s).is_some(), "{s}");
        }
        assert_eq!(status_from_go("resolved"), Some(IncidentStatus::Succeeded));
        assert_eq!(
            status_from_go("investigating"),
            Some(IncidentStatus::Expired)
        );
        assert_eq!(status_from_go("weird"), None);
    }
}
