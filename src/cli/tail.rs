//! `nightcrier tail <incident-id>`: one agent's log, live.
//!
//! The log bytes go to stdout untouched (pipe-friendly); notices (waiting, final status) go to
//! stderr. Works from another terminal: it reads only the database and the workspace files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::incident::{Incident, IncidentStatus};
use crate::store::Store;

/// How often the log file is read for new bytes: new lines show within this.
const FILE_POLL: Duration = Duration::from_millis(200);
/// How often the incident's status is read from the database.
const STATUS_POLL: Duration = Duration::from_millis(500);

pub fn log_path(workspace_root: &Path, incident: &Incident) -> PathBuf {
    workspace_root
        .join(incident.id.to_string())
        .join("logs")
        .join("agent.log")
}

pub async fn run(
    workspace_root: &Path,
    store: &Store,
    id: &str,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let mut incident = store.get(id).await?;
    let path = log_path(workspace_root, &incident);
    let mut offset = 0u64;
    let mut stdout = std::io::stdout();

    if !follow {
        copy_new(&path, &mut offset, &mut stdout).await?;
        notice(&format!(
            "incident {} is {}{}",
            incident.id,
            incident.status,
            reason_suffix(&incident)
        ));
        return Ok(ExitCode::SUCCESS);
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
        copy_new(&path, &mut offset, &mut stdout).await?;
        if incident.status.is_terminal() {
            // The run ended: whatever it wrote last is on disk now.
            copy_new(&path, &mut offset, &mut stdout).await?;
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
/// attempt): it is read from the beginning.
async fn copy_new(path: &Path, offset: &mut u64, out: &mut impl Write) -> anyhow::Result<()> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let len = file.metadata().await?.len();
    if len < *offset {
        notice("the log was restarted (a new attempt); reading it from the beginning");
        *offset = 0;
    }
    if len == *offset {
        return Ok(());
    }
    file.seek(std::io::SeekFrom::Start(*offset)).await?;
    let mut buf = Vec::with_capacity((len - *offset).min(1 << 20) as usize);
    let mut limited = file.take(len - *offset);
    limited.read_to_end(&mut buf).await?;
    *offset += buf.len() as u64;
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}
