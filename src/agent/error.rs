//! Errors of the agent runtime. Most of them end a run as `failed` with the error's text as the
//! reason, so every message names the path or program involved.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("workspace {}: {source}", path.display())]
    Workspace { path: PathBuf, source: io::Error },

    #[error("agent.system_prompt_file {}: {source}", path.display())]
    SystemPrompt { path: PathBuf, source: io::Error },

    #[error("agent.command is empty: preset `command` needs the agent's argv")]
    EmptyCommand,

    #[error("failed to start agent `{program}`: {source}")]
    Spawn { program: String, source: io::Error },

    #[error("waiting for agent process {pid}: {source}")]
    Wait { pid: u32, source: io::Error },

    #[error("refusing to signal process group {0}: not an agent's group id")]
    InvalidGroup(i32),

    #[error("signalling process group {pgid}: {source}")]
    Signal {
        pgid: i32,
        source: nix::errno::Errno,
    },

    #[error("serializing {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

impl AgentError {
    /// True when the machine ran out of something (descriptors, memory, disk, processes) rather
    /// than the run being wrong: the incident should wait and be tried again, not fail for good.
    pub fn is_resource_exhausted(&self) -> bool {
        let source = match self {
            Self::Workspace { source, .. }
            | Self::SystemPrompt { source, .. }
            | Self::Spawn { source, .. } => source,
            _ => return false,
        };
        source.raw_os_error().is_some_and(|code| {
            [
                libc::EMFILE,
                libc::ENFILE,
                libc::ENOSPC,
                libc::ENOMEM,
                libc::EAGAIN,
                libc::EDQUOT,
            ]
            .contains(&code)
        })
    }

    pub(crate) fn workspace(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Workspace { path, source }
    }
}
