//! Turning how the process ended, and what it left in `output/`, into an outcome. A zero exit
//! proves nothing by itself (CLIs exit 0 when a tool call was denied): the report must exist.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use super::process::Ending;
use crate::incident::{IncidentStatus, RunOutcome};

/// The reason of a run ended by its cancellation token (shutdown, or the incident was
/// cancelled). The worker decides what to record; [`super::RunReport::interrupted`] says the same.
pub const REASON_INTERRUPTED: &str = "interrupted";
pub const REASON_REPORT_MISSING: &str = "report missing";

pub fn evaluate(
    ending: &Ending,
    report_file: &Path,
    min_report_bytes: u64,
    timeout: Duration,
) -> RunOutcome {
    let failed = |reason: String, exit_code: Option<i32>| RunOutcome {
        status: IncidentStatus::Failed,
        reason: Some(reason),
        exit_code,
    };
    let status = match ending {
        Ending::Interrupted => return failed(REASON_INTERRUPTED.into(), None),
        Ending::TimedOut => {
            return RunOutcome {
                status: IncidentStatus::TimedOut,
                reason: Some(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                )),
                exit_code: None,
            }
        }
        Ending::Exited(status) => status,
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => {}
        (Some(code), _) => return failed(format!("exit code {code}"), Some(code)),
        (None, Some(sig)) => return failed(format!("killed by signal {sig}"), None),
        (None, None) => return failed(format!("ended abnormally ({status})"), None),
    }
    // symlink_metadata: a report that is a link (say, to a secret file) is not a report.
    match fs::symlink_metadata(report_file) {
        Err(_) => failed(REASON_REPORT_MISSING.into(), Some(0)),
        Ok(meta) if !meta.file_type().is_file() => {
            failed("report is not a regular file".into(), Some(0))
        }
        Ok(meta) if meta.len() < min_report_bytes => {
            failed(format!("report too small ({} bytes)", meta.len()), Some(0))
        }
        Ok(_) => RunOutcome {
            status: IncidentStatus::Succeeded,
            reason: None,
            exit_code: Some(0),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitStatus;

    use super::*;

    fn exited(raw_wait_status: i32) -> Ending {
        Ending::Exited(ExitStatus::from_raw(raw_wait_status))
    }

    #[test]
    fn each_ending_has_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("investigation.md");
        let t = Duration::from_secs(900);

        let o = evaluate(&exited(2 << 8), &report, 100, t);
        assert_eq!(o.status, IncidentStatus::Failed);
        assert_eq!(o.reason.as_deref(), Some("exit code 2"));
        assert_eq!(o.exit_code, Some(2));

        let o = evaluate(&exited(9), &report, 100, t);
        assert_eq!(o.reason.as_deref(), Some("killed by signal 9"));

        let o = evaluate(&exited(0), &report, 100, t);
        assert_eq!(o.reason.as_deref(), Some("report missing"));

        fs::write(&report, "x".repeat(12)).unwrap();
        let o = evaluate(&exited(0), &report, 100, t);
        assert_eq!(o.reason.as_deref(), Some("report too small (12 bytes)"));

        fs::write(&report, "x".repeat(100)).unwrap();
        let o = evaluate(&exited(0), &report, 100, t);
        assert_eq!(o.status, IncidentStatus::Succeeded);
        assert_eq!(o.reason, None);

        let o = evaluate(&Ending::TimedOut, &report, 100, t);
        assert_eq!(o.status, IncidentStatus::TimedOut);
        assert_eq!(o.reason.as_deref(), Some("timed out after 15m"));

        let o = evaluate(&Ending::Interrupted, &report, 100, t);
        assert_eq!(o.status, IncidentStatus::Failed);
        assert_eq!(o.reason.as_deref(), Some(REASON_INTERRUPTED));
    }

    #[test]
    fn a_symlinked_report_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("secret");
        fs::write(&target, "x".repeat(500)).unwrap();
        let report = dir.path().join("investigation.md");
        std::os::unix::fs::symlink(&target, &report).unwrap();
        let o = evaluate(&exited(0), &report, 100, Duration::from_secs(1));
        assert_eq!(o.reason.as_deref(), Some("report is not a regular file"));
    }
}
