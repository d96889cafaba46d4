//! One incident's workspace: `<workspace_root>/<incident-id>/`, private to nightcrier's user
//! (directories 0700, files 0600), shared by every attempt at that incident.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use super::error::AgentError;
use crate::incident::{FaultOccurrence, Incident};

/// Occurrences written to `incident.json`: a fault that repeats for days must not make the file
/// (and the agent's context) unbounded. The first one (the trigger) and the most recent ones are
/// kept; the count of the others is recorded.
pub const MAX_OCCURRENCES_IN_FILE: usize = 200;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The paths of one incident's workspace. Creating it is [`Workspace::prepare`].
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
        self.dir.join("output")
    }
    pub fn report_file(&self) -> PathBuf {
        self.output_dir().join("investigation.md")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("logs").join("agent.log")
    }
    /// Where presets keep the CLI's own state (config dirs, caches): inside the workspace so it
    /// is mounted into a container too, but in a subdirectory so CLIs that read settings from
    /// their working directory (gemini's `.gemini/`) do not pick it up.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("agent-state")
    }

    /// Creates the directories with their modes and removes what a previous attempt left that
    /// would make this attempt's outcome a lie (its report).
    pub fn prepare(&self) -> Result<(), AgentError> {
        if let Some(root) = self.dir.parent() {
            fs::create_dir_all(root).map_err(AgentError::workspace(root))?;
        }
        for dir in [
            self.dir.clone(),
            self.output_dir(),
            self.dir.join("logs"),
            self.state_dir(),
        ] {
            private_dir(&dir)?;
        }
        for stale in [
            self.report_file(),
            self.output_dir().join("last-message.txt"),
            self.output_dir().join("verdict.json"),
        ] {
            match fs::remove_file(&stale) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::workspace(stale)(e)),
            }
        }
        Ok(())
    }

    /// Writes `incident.json`: the incident, the fault that opened it and the occurrences so far.
    pub fn write_incident(
        &self,
        incident: &Incident,
        occurrences: &[FaultOccurrence],
        attempt: i32,
    ) -> Result<(), AgentError> {
        let mut sorted: Vec<&FaultOccurrence> = occurrences.iter().collect();
        sorted.sort_by_key(|o| o.id);
        let kept = bounded_occurrences(&sorted);
        let doc = IncidentFile {
            incident,
            attempt,
            triggering_fault: sorted.first().copied(),
            occurrences_omitted: sorted.len() - kept.len(),
            occurrences: kept,
        };
        let json = serde_json::to_vec_pretty(&doc).map_err(|source| AgentError::Json {
            what: "incident.json",
            source,
        })?;
        write_private(&self.incident_file(), &json)
    }

    /// Opens `logs/agent.log` for appending; the same description serves stdout and stderr.
    pub fn open_log(&self) -> Result<File, AgentError> {
        let path = self.log_file();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(AgentError::workspace(&path))?;
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(AgentError::workspace(&path))?;
        Ok(file)
    }
}

#[derive(Serialize)]
struct IncidentFile<'a> {
    incident: &'a Incident,
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

/// Creates `dir` (0700) or tightens an existing one.
pub(crate) fn private_dir(dir: &Path) -> Result<(), AgentError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(AgentError::workspace(dir)(e)),
    }
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(AgentError::workspace(dir))
}

/// Writes a whole file with mode 0600, replacing its content. Refuses to follow a symlink a
/// previous agent may have planted in its place.
pub(crate) fn write_private(path: &Path, content: &[u8]) -> Result<(), AgentError> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(AgentError::workspace(path))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(AgentError::workspace(path))?;
    file.write_all(content).map_err(AgentError::workspace(path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
