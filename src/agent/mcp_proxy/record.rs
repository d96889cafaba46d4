//! The call log: `evidence/tool-calls.jsonl` (one line per call) and `evidence/agent-call-NNN-
//! <tool>.txt` (the text the agent got), so that a report can cite "tool call 3".
//!
//! The agent writes into its workspace while these are written, and may put a symlink where
//! they go: every file goes through [`WorkspaceDir`] (directory descriptors from the workspace
//! root, never following a symlink; a symlinked `evidence/` is replaced by a real directory).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::agent::{AgentError, WorkspaceDir};

use serde::Serialize;

/// Arguments longer than this are cut in the log (they come from the model).
const MAX_ARGUMENTS_BYTES: usize = 4096;
pub const CALLS_FILE: &str = "tool-calls.jsonl";

/// One line of `tool-calls.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// 1-based, in the order the agent made the calls.
    pub n: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub duration_ms: u64,
    /// Bytes of the result as handed to the agent (0 when refused or failed).
    pub result_bytes: usize,
    /// The tool's own `isError`.
    pub is_error: bool,
    /// Why the call was refused or failed before a result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file holding the result text, relative to the workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_file: Option<String>,
}

pub struct CallLog {
    dir: PathBuf,
    /// std lock: held only for a write, never across an await.
    file: Mutex<Option<File>>,
}

impl CallLog {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            file: Mutex::new(None),
        }
    }

    /// Writes the result text (when any) and appends the record. Failures are logged: the log
    /// must never fail the agent's call.
    pub fn record(&self, mut rec: CallRecord, result_text: Option<&str>) {
        rec.arguments = bounded_arguments(rec.arguments);
        if let Some(text) = result_text {
            let name = format!("agent-call-{:03}-{}.txt", rec.n, file_safe(&rec.tool));
            match self
                .evidence_dir()
                .and_then(|d| d.write_file(&name, text.as_bytes()))
            {
                Ok(()) => rec.result_file = Some(format!("evidence/{name}")),
                Err(e) => tracing::warn!(error = %e, file = %name, "cannot record a tool result"),
            }
        }
        let mut line = match serde_json::to_vec(&rec) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            match self.evidence_dir().and_then(|d| d.open_append(CALLS_FILE)) {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %self.dir.display(), "cannot open the tool call log");
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write_all(&line) {
                tracing::warn!(error = %e, "cannot append to the tool call log");
            }
        }
    }

    /// The evidence directory, opened through the workspace's descriptors: the agent runs
    /// meanwhile and may have put a symlink there; it is replaced, never followed.
    fn evidence_dir(&self) -> Result<WorkspaceDir, AgentError> {
        let (Some(ws), Some(name)) = (self.dir.parent(), self.dir.file_name()) else {
            return Err(AgentError::workspace(&self.dir)(std::io::Error::other(
                "not a directory inside a workspace",
            )));
        };
        WorkspaceDir::create_workspace(ws)?.create_dir(name)
    }
}

fn file_safe(tool: &str) -> String {
    tool.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

fn bounded_arguments(args: serde_json::Value) -> serde_json::Value {
    let text = args.to_string();
    if text.len() <= MAX_ARGUMENTS_BYTES {
        return args;
    }
    let mut cut = MAX_ARGUMENTS_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::Value::String(format!("{}… (truncated)", &text[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32, tool: &str) -> CallRecord {
        CallRecord {
            n,
            at: chrono::Utc::now(),
            tool: tool.into(),
            arguments: serde_json::json!({"name": "x".repeat(10_000)}),
            duration_ms: 1,
            result_bytes: 5,
            is_error: false,
            error: None,
            result_file: None,
        }
    }

    #[test]
    fn appends_lines_and_result_files_but_never_through_a_symlink() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("evidence");
        let log = CallLog::new(dir.clone());
        log.record(rec(1, "pods_log/../x"), Some("panic: CONFIG_URL"));
        log.record(rec(2, "pods_get"), None);
        let lines = std::fs::read_to_string(dir.join(CALLS_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0]["result_file"],
            "evidence/agent-call-001-pods_logx.txt"
        );
        assert!(lines[0]["arguments"]
            .as_str()
            .unwrap()
            .ends_with("(truncated)"));
        let text = std::fs::read_to_string(dir.join("agent-call-001-pods_logx.txt")).unwrap();
        assert_eq!(text, "panic: CONFIG_URL");

        // A planted symlink in place of the log is not followed.
        let other = tempfile::tempdir().unwrap();
        let target = other.path().join("stolen");
        let ws2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws2.path().join("evidence")).unwrap();
        std::os::unix::fs::symlink(&target, ws2.path().join("evidence").join(CALLS_FILE)).unwrap();
        CallLog::new(ws2.path().join("evidence")).record(rec(1, "pods_get"), None);
        assert!(!target.exists());

        // Nor is a symlink in place of the directory: a real one replaces it.
        let ws3 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), ws3.path().join("evidence")).unwrap();
        CallLog::new(ws3.path().join("evidence")).record(rec(1, "pods_get"), Some("x"));
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
        let real = std::fs::symlink_metadata(ws3.path().join("evidence")).unwrap();
        assert!(real.is_dir());
        assert!(ws3.path().join("evidence").join(CALLS_FILE).is_file());
    }
}
