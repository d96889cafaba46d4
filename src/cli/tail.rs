//! `nightcrier tail <incident-id>`: one agent's log, live.
//!
//! The log bytes go to stdout untouched (pipe-friendly); notices (waiting, final status) go to
//! stderr. Works from another terminal: it reads only the database and the workspace files.
//!
//! The log is opened through the workspace's directory descriptors, like the HTTP log route: a
//! `logs/agent.log` (or `logs/`) the agent replaced by a symlink is refused, never followed.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::agent::{FileEntry, Workspace};
use crate::incident::{Incident, IncidentStatus};
use crate::store::Store;

/// How often the log file is read for new bytes: new lines show within this.
const FILE_POLL: Duration = Duration::from_millis(200);
/// How often the incident's status is read from the database.
const STATUS_POLL: Duration = Duration::from_millis(500);
/// Bytes copied per read: a big log is streamed, not held whole.
const CHUNK: u64 = 1 << 20;

pub async fn run(
    workspace_root: &Path,
    store: &Store,
    id: &str,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let mut incident = store.get(id).await?;
    let ws = Workspace::new(workspace_root, incident.id);
    let path = ws.log_file();
    let mut offset = 0u64;
    let mut stdout = std::io::stdout();

    if !follow {
        if incident.status != IncidentStatus::Pending {
            say_where_the_log_is(store, &ws, &path, &incident).await;
        }
        copy_new(&ws, &path, &mut offset, &mut stdout).await?;
        notice(&format!(
            "incident {} is {}{}",
            incident.id,
            incident.status,
            reason_suffix(&incident)
        ));
        return Ok(ExitCode::SUCCESS);
    }

    if incident.status != IncidentStatus::Pending {
        say_where_the_log_is(store, &ws, &path, &incident).await;
    }
    let mut announced_pending = false;
    let mut last_status_check = tokio::time::Instant::now();
    loop {
        if incident.status == IncidentStatus::Pending && !announced_pending {
            notice(&format!(
                "incident {} is pending; waiting for an agent to start (Ctrl-C to stop)",
                incident.id
            ));
            announced_pending = true;
        }
        copy_new(&ws, &path, &mut offset, &mut stdout).await?;
        if incident.status.is_terminal() {
            // The run ended: whatever it wrote last is on disk now.
            copy_new(&ws, &path, &mut offset, &mut stdout).await?;
            notice(&format!(
                "incident {} finished: {}{}",
                incident.id,
                incident.status,
                reason_suffix(&incident)
            ));
            return Ok(if incident.status == IncidentStatus::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::from(130)),
        }
        if last_status_check.elapsed() >= STATUS_POLL {
            last_status_check = tokio::time::Instant::now();
            let before = incident.status;
            incident = store
                .get(&incident.id.to_string())
                .await
                .context("reading the incident's status")?;
            if before != IncidentStatus::Pending && incident.status == IncidentStatus::Pending {
                announced_pending = false;
            }
        }
    }
}

/// In a fleet with separate workspaces, a run's log is on the host of the process that ran it:
/// when it is not here, say which process and host has it (from the run's lease owner and the
/// fleet registry) instead of printing nothing.
async fn say_where_the_log_is(store: &Store, ws: &Workspace, path: &Path, incident: &Incident) {
    if !matches!(ws.open_file(path), Ok(FileEntry::Missing)) || store.backend() != "postgres" {
        return;
    }
    let Some(run) = store
        .agent_runs(incident.id)
        .await
        .ok()
        .and_then(|runs| runs.into_iter().last())
    else {
        return;
    };
    // Only who and where matter here, not liveness: any TTL will do.
    let instance = match store.fleet_status(Duration::from_secs(60)).await {
        Ok((instances, _)) => instances.into_iter().find(|i| i.id == run.worker),
        Err(_) => None,
    };
    match instance {
        Some(i) => notice(&format!(
            "the agent log is not in this workspace_root: attempt {} ran on fleet instance {} \
             (host {}, HTTP {}); read it there, or share workspace_root between the fleet's hosts",
            run.attempt,
            i.id,
            i.host,
            i.http_addr.as_deref().unwrap_or("off"),
        )),
        None => notice(&format!(
            "the agent log is not in this workspace_root: attempt {} ran on {}",
            run.attempt, run.worker
        )),
    }
}

fn reason_suffix(i: &Incident) -> String {
    i.failure_reason
        .as_ref()
        .map_or_else(String::new, |r| format!(" ({r})"))
}

fn notice(msg: &str) {
    // The message carries the failure reason, which may quote agent output.
    eprintln!("nightcrier: {}", super::output::escaped(msg));
}

/// Copies bytes past `offset` to `out`. A file shorter than `offset` was started anew (a new
/// attempt): it is read from the beginning. A log that is not a regular file (a symlink the
/// agent planted) is an error.
async fn copy_new(
    ws: &Workspace,
    path: &Path,
    offset: &mut u64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (mut file, len) = match ws.open_file(path)? {
        FileEntry::File { file, len } => (file, len),
        FileEntry::Missing => return Ok(()),
        FileEntry::NotRegular => anyhow::bail!(
            "{} is not a regular file (a symlink?): refusing to read it",
            path.display()
        ),
    };
    if len < *offset {
        notice("the log was restarted (a new attempt); reading it from the beginning");
        *offset = 0;
    }
    file.seek(std::io::SeekFrom::Start(*offset))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut limited = file.take(len - *offset);
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let n = limited
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        *offset += n as u64;
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    Ok(())
}
