//! One incident's workspace: `<workspace_root>/<incident-id>/`, private to nightcrier's user
//! (directories 0700, files 0600), shared by every attempt at that incident.
//!
//! The agent may plant anything in it, so every file operation nightcrier does there goes
//! through [`safe`] (directory descriptors, no symlink ever followed); the path getters below
//! are for the agent's argv, messages and links, never for opening files.

mod safe;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use safe::{read_bounded, Bounded, FileEntry, WorkspaceDir};

use serde::Serialize;
use uuid::Uuid;

use super::error::AgentError;
use crate::config::ClusterConfig;
use crate::incident::{FaultOccurrence, Incident};

/// Occurrences written to `incident.json`: a fault that repeats for days must not make the file
/// (and the agent's context) unbounded. The first one (the trigger) and the most recent ones are
/// kept; the count of the others is recorded.
pub const MAX_OCCURRENCES_IN_FILE: usize = 200;

/// The largest report nightcrier reads, renders or summarises (an agent gone wild). A run whose
/// report is larger fails with that reason; pages say it is too large instead of rendering it.
pub const MAX_REPORT_BYTES: u64 = 5 * 1024 * 1024;

/// The agent's output directory, the report in it, and the agent's log directory and file.
const OUTPUT_DIR: &str = "output";
const REPORT_FILE: &str = "investigation.md";
/// Rendered by the reporter next to the report; never served from here (the agent could have
/// written it).
const HTML_REPORT_FILE: &str = "investigation.html";
/// Where codex keeps its final message (`-o`).
const LAST_MESSAGE_FILE: &str = "last-message.txt";
const LOG_DIR: &str = "logs";
const LOG_FILE: &str = "agent.log";
const STATE_DIR: &str = "agent-state";
/// The agent's machine-readable verdict, relative to the workspace (the prompt names it so),
/// and its name in `output/`.
pub const VERDICT_FILE: &str = "output/verdict.json";
const VERDICT_NAME: &str = "verdict.json";

/// The paths of one incident's workspace: the only place that knows its layout (the agent,
/// the reporter, `tail`, the HTTP pages and the dashboard ask it). Creating it is
/// [`Workspace::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    pub fn new(root: &Path, incident_id: Uuid) -> Self {
        Self {
            dir: root.join(incident_id.to_string()),
        }
    }

    /// The workspace at `dir`, for code handed a workspace path.
    pub fn from_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn incident_file(&self) -> PathBuf {
        self.dir.join("incident.json")
    }
    pub fn prompt_file(&self) -> PathBuf {
        self.dir.join("prompt.md")
    }
    pub fn permissions_file(&self) -> PathBuf {
        self.dir.join("cluster_permissions.json")
    }
    pub fn output_dir(&self) -> PathBuf {
        self.dir.join(OUTPUT_DIR)
    }
    pub fn report_file(&self) -> PathBuf {
        self.output_dir().join(REPORT_FILE)
    }
    /// `output/investigation.html`, written by the reporter.
    pub fn html_report_file(&self) -> PathBuf {
        self.output_dir().join(HTML_REPORT_FILE)
    }
    pub fn verdict_file(&self) -> PathBuf {
        self.dir.join(VERDICT_FILE)
    }
    pub fn last_message_file(&self) -> PathBuf {
        self.output_dir().join(LAST_MESSAGE_FILE)
    }
    /// The evidence bundle (its inside is [`crate::evidence`]'s).
    pub fn evidence_dir(&self) -> PathBuf {
        self.dir.join(crate::evidence::EVIDENCE_DIR)
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_DIR).join(LOG_FILE)
    }
    /// Where presets keep the CLI's own state (config dirs, caches): inside the workspace so it
    /// is mounted into a container too, but in a subdirectory so CLIs that read settings from
    /// their working directory (gemini's `.gemini/`) do not pick it up.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR)
    }

    /// Creates the directories with their modes and removes what a previous attempt left that
    /// would make this attempt's outcome a lie (its report) or be served as nightcrier's (an
    /// `investigation.html`). A symlink or file where one of these directories belongs is
    /// removed, never followed.
    pub fn prepare(&self) -> Result<(), AgentError> {
        let dir = WorkspaceDir::create_workspace(&self.dir)?;
        let output = dir.create_dir(OUTPUT_DIR)?;
        dir.create_dir(LOG_DIR)?;
        dir.create_dir(STATE_DIR)?;
        for stale in [
            REPORT_FILE,
            HTML_REPORT_FILE,
            LAST_MESSAGE_FILE,
            VERDICT_NAME,
        ] {
            output.remove(stale)?;
        }
        Ok(())
    }

    /// Opens the workspace directory, `Ok(None)` when it does not exist (or is not a
    /// directory). For reading: nothing is created.
    pub fn open(&self) -> Result<Option<WorkspaceDir>, AgentError> {
        WorkspaceDir::open_workspace(&self.dir)
    }

    /// Replaces the file at `path` (inside the workspace, absolute or relative to it) with
    /// `content`, creating its directories.
    pub fn write(&self, path: &Path, content: &[u8]) -> Result<(), AgentError> {
        let (dir, name) = self.parent_of(path)?;
        dir.write_file(name, content)
    }

    /// [`Workspace::write`] for the run's own inputs (prompt, `incident.json`, preset files):
    /// no `fsync`, as every attempt writes them again (see
    /// [`WorkspaceDir::write_file_unsynced`]); an `fsync` each cost milliseconds per run on a
    /// busy disk.
    pub fn write_input(&self, path: &Path, content: &[u8]) -> Result<(), AgentError> {
        let (dir, name) = self.parent_of(path)?;
        dir.write_file_unsynced(name, content)
    }

    /// The directory of the file at `path` (created), and the file's name.
    fn parent_of<'a>(&self, path: &'a Path) -> Result<(WorkspaceDir, &'a str), AgentError> {
        let rel = self.relative(path)?;
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| outside(path))?;
        let dir = WorkspaceDir::create_workspace(&self.dir)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((dir.create_dir(parent)?, name))
    }

    /// Creates the directory at `path` (inside the workspace) and those above it, 0700.
    pub fn create_dir(&self, path: &Path) -> Result<WorkspaceDir, AgentError> {
        let rel = self.relative(path)?;
        WorkspaceDir::create_workspace(&self.dir)?.create_dir(rel)
    }

    /// Reads the regular file at `path` (inside the workspace), at most `max` bytes; `Ok(None)`
    /// when it, or a directory above it, is missing, a symlink or not a regular file.
    pub fn read(&self, path: &Path, max: u64) -> Result<Option<Bounded>, AgentError> {
        match self.open_file(path)? {
            FileEntry::File { file, len } => read_bounded(file, len, max)
                .map(Some)
                .map_err(AgentError::workspace(path)),
            FileEntry::Missing | FileEntry::NotRegular => Ok(None),
        }
    }

    /// Opens the file at `path` (inside the workspace) for reading through descriptors only.
    pub fn open_file(&self, path: &Path) -> Result<FileEntry, AgentError> {
        let rel = self.relative(path)?;
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| outside(path))?;
        let Some(dir) = self.open()? else {
            return Ok(FileEntry::Missing);
        };
        match dir.open_dir(rel.parent().unwrap_or(Path::new("")))? {
            Some(parent) => parent.open_file(name),
            None => Ok(FileEntry::Missing),
        }
    }

    /// `path` relative to the workspace directory.
    fn relative<'a>(&self, path: &'a Path) -> Result<&'a Path, AgentError> {
        if path.is_absolute() {
            path.strip_prefix(&self.dir).map_err(|_| outside(path))
        } else {
            Ok(path)
        }
    }

    /// Writes `incident.json`: the incident, the fault that opened it and the occurrences so far.
    pub fn write_incident(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
        cluster: Option<&ClusterConfig>,
    ) -> Result<(), AgentError> {
        let mut sorted: Vec<&FaultOccurrence> = occurrences.iter().collect();
        sorted.sort_by_key(|o| o.id);
        let kept = bounded_occurrences(&sorted);
        let doc = IncidentFile {
            incident,
            cluster_environment: cluster.and_then(|c| c.environment.as_deref()),
            cluster_labels: cluster.map(|c| &c.labels).filter(|l| !l.is_empty()),
            attempt,
            triggering_fault: sorted.first().copied(),
            occurrences_omitted: sorted.len() - kept.len(),
            occurrences: kept,
        };
        let json = serde_json::to_vec_pretty(&doc).map_err(|source| AgentError::Json {
            what: "incident.json",
            source,
        })?;
        self.write_input(Path::new("incident.json"), &json)
    }

    /// Opens `logs/agent.log` for appending (a symlink planted there is replaced by a file).
    pub fn open_log(&self) -> Result<File, AgentError> {
        WorkspaceDir::create_workspace(&self.dir)?
            .create_dir(LOG_DIR)?
            .open_append(LOG_FILE)
    }
}

fn outside(path: &Path) -> AgentError {
    AgentError::workspace(path)(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "not a file path inside the incident's workspace",
    ))
}

#[derive(Serialize)]
struct IncidentFile<'a> {
    incident: &'a Incident,
    /// The operator's description of the cluster (`clusters[].environment`, `labels`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_environment: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_labels: Option<&'a std::collections::BTreeMap<String, String>>,
    attempt: i32,
    triggering_fault: Option<&'a FaultOccurrence>,
    occurrences: Vec<&'a FaultOccurrence>,
    occurrences_omitted: usize,
}

fn bounded_occurrences<'a>(sorted: &[&'a FaultOccurrence]) -> Vec<&'a FaultOccurrence> {
    if sorted.len() <= MAX_OCCURRENCES_IN_FILE {
        return sorted.to_vec();
    }
    let tail = &sorted[sorted.len() - (MAX_OCCURRENCES_IN_FILE - 1)..];
    std::iter::once(sorted[0])
        .chain(tail.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_one_set_of_names() {
        let ws = Workspace::from_dir("/ws/i1");
        assert_eq!(
            ws.verdict_file(),
            ws.output_dir().join(VERDICT_NAME),
            "VERDICT_FILE is in OUTPUT_DIR"
        );
        assert_eq!(
            ws.report_file(),
            Path::new("/ws/i1/output/investigation.md")
        );
        assert_eq!(ws.log_file(), Path::new("/ws/i1/logs/agent.log"));
        assert_eq!(ws.evidence_dir(), Path::new("/ws/i1/evidence"));
    }

    fn occurrence(id: i64) -> FaultOccurrence {
        FaultOccurrence {
            id,
            incident_id: Uuid::nil(),
            cluster: "c".into(),
            fault_id: "f".into(),
            fault_type: "CrashLoop".into(),
            severity: "warning".into(),
            namespace: None,
            resource_kind: "Pod".into(),
            resource_name: "p".into(),
            resource_uid: "u".into(),
            context: format!("occurrence {id}"),
            server_timestamp: "2026-01-01T00:00:00Z".into(),
            received_at: chrono::Utc::now(),
            raw: serde_json::Value::Null,
        }
    }

    #[test]
    fn keeps_the_trigger_and_the_latest_occurrences() {
        let all: Vec<FaultOccurrence> = (1..=500).map(occurrence).collect();
        let refs: Vec<&FaultOccurrence> = all.iter().collect();
        let kept = bounded_occurrences(&refs);
        assert_eq!(kept.len(), MAX_OCCURRENCES_IN_FILE);
        assert_eq!(kept[0].id, 1);
        assert_eq!(kept[1].id, 302);
        assert_eq!(kept.last().map(|o| o.id), Some(500));

        let few = &refs[..3];
        assert_eq!(bounded_occurrences(few).len(), 3);
    }
}
