//! Turning how the process ended, and what it left in `output/`, into an outcome. A zero exit
//! proves nothing by itself (CLIs exit 0 when a tool call was denied): the report must exist.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use super::process::Ending;
use super::workspace::{read_bounded, Bounded, FileEntry, Workspace, MAX_REPORT_BYTES};
use crate::incident::{RunOutcome, RunStatus};

/// The reason of a run ended by its cancellation token (shutdown, or the incident was
/// cancelled). The worker decides what to record; [`super::RunReport::interrupted`] says the same.
pub const REASON_INTERRUPTED: &str = "interrupted";
pub const REASON_REPORT_MISSING: &str = "report missing";

pub fn evaluate(
    ending: &Ending,
    ws: &Workspace,
    min_report_bytes: u64,
    timeout: Duration,
) -> RunOutcome {
    let failed = |reason: String, exit_code: Option<i32>| RunOutcome {
        status: RunStatus::Failed,
        reason: Some(reason),
        exit_code,
    };
    let status = match ending {
        Ending::Interrupted => return failed(REASON_INTERRUPTED.into(), None),
        Ending::TimedOut => {
            return RunOutcome {
                status: RunStatus::TimedOut,
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
    // One descriptor, opened without following a symlink: what is measured is what the
    // reporter will read, and nothing can be swapped in between (a link to a secret file is
    // not a report).
    let file = match ws.open_file(&ws.report_file()) {
        Ok(FileEntry::File { file, len }) => (file, len),
        Ok(FileEntry::Missing) => return failed(REASON_REPORT_MISSING.into(), Some(0)),
        Ok(FileEntry::NotRegular) => return failed("report is not a regular file".into(), Some(0)),
        Err(e) => return failed(format!("cannot read the report: {e}"), Some(0)),
    };
    let len = match read_bounded(file.0, file.1, MAX_REPORT_BYTES) {
        Ok(Bounded::Content(bytes)) => bytes.len() as u64,
        Ok(Bounded::TooLarge(len)) => {
            return failed(
                format!("report too large ({len} bytes, above the {MAX_REPORT_BYTES}-byte limit)"),
                Some(0),
            )
        }
        Err(e) => return failed(format!("cannot read the report: {e}"), Some(0)),
    };
    if len < min_report_bytes {
        return failed(format!("report too small ({len} bytes)"), Some(0));
    }
    RunOutcome {
        status: RunStatus::Succeeded,
        reason: None,
        exit_code: Some(0),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::process::ExitStatus;

    use super::*;

    fn workspace(dir: &std::path::Path) -> Workspace {
        let ws = Workspace::new(dir, uuid::Uuid::now_v7());
        ws.prepare().unwrap();
        ws
    }

    fn exited(raw_wait_status: i32) -> Ending {
        Ending::Exited(ExitStatus::from_raw(raw_wait_status))
    }

    #[test]
    fn each_ending_has_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let report = ws.report_file();
        let t = Duration::from_secs(900);

        let o = evaluate(&exited(2 << 8), &ws, 100, t);
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.reason.as_deref(), Some("exit code 2"));
        assert_eq!(o.exit_code, Some(2));

        let o = evaluate(&exited(9), &ws, 100, t);
        assert_eq!(o.reason.as_deref(), Some("killed by signal 9"));

        let o = evaluate(&exited(0), &ws, 100, t);
        assert_eq!(o.reason.as_deref(), Some("report missing"));

        fs::write(&report, "x".repeat(12)).unwrap();
        let o = evaluate(&exited(0), &ws, 100, t);
        assert_eq!(o.reason.as_deref(), Some("report too small (12 bytes)"));

        fs::write(&report, "x".repeat(100)).unwrap();
        let o = evaluate(&exited(0), &ws, 100, t);
        assert_eq!(o.status, RunStatus::Succeeded);
        assert_eq!(o.reason, None);

        // Issue #13, item 13: a report nightcrier will not render is not a success.
        let big = MAX_REPORT_BYTES + 1;
        fs::write(&report, "x".repeat(big as usize)).unwrap();
        let o = evaluate(&exited(0), &ws, 100, t);
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(
            o.reason,
            Some(format!(
                "report too large ({big} bytes, above the {MAX_REPORT_BYTES}-byte limit)"
            ))
        );

        let o = evaluate(&Ending::TimedOut, &ws, 100, t);
        assert_eq!(o.status, RunStatus::TimedOut);
        assert_eq!(o.reason.as_deref(), Some("timed out after 15m"));

        let o = evaluate(&Ending::Interrupted, &ws, 100, t);
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.reason.as_deref(), Some(REASON_INTERRUPTED));
    }

    #[test]
    fn a_symlinked_report_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ws = workspace(dir.path());
        let target = dir.path().join("secret");
        fs::write(&target, "x".repeat(500)).unwrap();
        std::os::unix::fs::symlink(&target, ws.report_file()).unwrap();
        let o = evaluate(&exited(0), &ws, 100, Duration::from_secs(1));
        assert_eq!(o.reason.as_deref(), Some("report is not a regular file"));

        // A symlinked `output/` is not followed either: the report is missing.
        fs::remove_dir_all(ws.output_dir()).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("investigation.md"), "x".repeat(500)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, ws.output_dir()).unwrap();
        let o = evaluate(&exited(0), &ws, 100, Duration::from_secs(1));
        assert_eq!(o.reason.as_deref(), Some(REASON_REPORT_MISSING));
    }
}
