//! The bundle on disk: `evidence/` in the incident's workspace, one file per tool call plus
//! `index.json` (what was asked, when, how long it took, how many bytes came back, what failed).
//!
//! Files are created, never opened if they exist: a previous attempt's agent may have planted a
//! symlink where we write. [`write_new`] is the one place that does this, easy to swap for the
//! workspace's own safe-write API.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The bundle's directory inside a workspace.
pub const EVIDENCE_DIR: &str = "evidence";
/// The bundle's index inside [`EVIDENCE_DIR`].
pub const INDEX_FILE: &str = "index.json";
/// Bytes of `index.json` read back at most (it lists a dozen calls).
const MAX_INDEX_BYTES: u64 = 1024 * 1024;

/// One tool call (or one that could not be made).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub seq: usize,
    /// What the call is for: `object`, `pod`, `events`, `log`, `log-previous`, `owner-1`, ...
    pub label: String,
    pub tool: String,
    pub arguments: Value,
    /// The answer's file in the bundle (also for a tool error, whose text is the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub bytes: usize,
    /// The server answered with an error result (`isError`), e.g. no previous container.
    #[serde(default)]
    pub tool_error: bool,
    /// No answer: the call failed, timed out, was refused or was not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CallRecord {
    /// True when the call brought back something other than an error.
    pub fn answered(&self) -> bool {
        self.error.is_none() && !self.tool_error
    }
}

/// `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub cluster: String,
    pub fault_type: String,
    /// `Kind namespace/name` or `Kind name`.
    pub resource: String,
    pub started_at: String,
    pub duration_ms: u64,
    /// Why no call could be made at all (server down, bad endpoint), when that happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_error: Option<String>,
    pub calls: Vec<CallRecord>,
}

impl Index {
    /// Calls without an answer (failed, timed out, tool errors), for "what is missing".
    pub fn gaps(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter().filter(|c| !c.answered())
    }
}

/// A gathered bundle: the index and each answered call's text by label.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub dir: PathBuf,
    pub index: Index,
    pub texts: HashMap<String, String>,
}

impl Bundle {
    pub fn text(&self, label: &str) -> Option<&str> {
        self.texts.get(label).map(String::as_str)
    }
}

/// Empties (or creates) the bundle's directory, mode 0700. A symlink in its place is removed,
/// not followed.
pub(crate) fn reset_dir(dir: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(dir)?,
        Ok(_) => fs::remove_file(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    DirBuilder::new().mode(0o700).create(dir)
}

/// Creates `dir/name` (mode 0600) and writes `content`; fails if anything exists there, a
/// symlink included.
pub(crate) fn write_new(dir: &Path, name: &str, content: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(name))?;
    f.write_all(content)
}

/// Bytes of one evidence file read back at most.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a workspace's bundle back (index and answered files, bounded); `None` without index.
pub fn load_bundle(workspace: &Path) -> Option<Bundle> {
    let index = load_index(workspace)?;
    let dir = workspace.join(EVIDENCE_DIR);
    let mut texts = HashMap::new();
    for c in index.calls.iter().filter(|c| c.answered()) {
        let Some(name) = c.file.as_deref().filter(|n| !n.contains('/')) else {
            continue;
        };
        let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(name))
        else {
            continue;
        };
        let mut buf = Vec::new();
        if f.take(MAX_FILE_BYTES).read_to_end(&mut buf).is_ok() {
            texts.insert(c.label.clone(), String::from_utf8_lossy(&buf).into_owned());
        }
    }
    Some(Bundle { dir, index, texts })
}

/// Reads `index.json` of a workspace's bundle, bounded; `None` when there is none or it is not
/// an index (the agent could have overwritten it).
pub fn load_index(workspace: &Path) -> Option<Index> {
    let path = workspace.join(EVIDENCE_DIR).join(INDEX_FILE);
    let file = OpenOptions::new()
        .read(true)
        // NONBLOCK: a FIFO the agent planted must not hang the reader.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = Vec::new();
    file.take(MAX_INDEX_BYTES).read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}
