//! The spill file: where received faults go once the database has been found corrupt, and
//! where the next start takes them from.
//!
//! A corrupt database is not a passing outage: retrying cannot help, and faults held in memory
//! would be lost at shutdown. The writer appends them here instead (one JSON object per line,
//! the file created 0600, never followed through a symlink) up to a byte bound
//! (`ingest.buffer_bytes`); what does not fit is dropped and counted like any other drop. This
//! module owns the file's format and bound; it must not talk to the store.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fault::{Fault, ReceivedFault};

#[derive(Debug, thiserror::Error)]
#[error("spill file {}: {source}", path.display())]
pub struct SpillError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// One line of the file: a [`ReceivedFault`] as data.
#[derive(Serialize, Deserialize)]
struct Line {
    cluster: String,
    received_at: DateTime<Utc>,
    triage_enabled: bool,
    fault: Fault,
    raw: serde_json::Value,
}

/// The spill file's place and bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillFile {
    path: PathBuf,
    max_bytes: u64,
}

impl SpillFile {
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            path: path.into(),
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl FnOnce(io::Error) -> SpillError + '_ {
        move |source| SpillError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `faults` in order while they fit under the bound; returns how many were written
    /// (the rest are the caller's to count as dropped).
    pub fn append(&self, faults: &[ReceivedFault]) -> Result<usize, SpillError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(self.err())?;
        let mut len = file.metadata().map_err(self.err())?.len();
        let mut written = 0;
        let mut buf = Vec::new();
        for f in faults {
            buf.clear();
            let line = Line {
                cluster: f.cluster.clone(),
                received_at: f.received_at,
                triage_enabled: f.triage_enabled,
                fault: f.fault.clone(),
                raw: f.raw.clone(),
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| (self.err())(e.into()))?;
            buf.push(b'\n');
            if len + buf.len() as u64 > self.max_bytes {
                break;
            }
            file.write_all(&buf).map_err(self.err())?;
            len += buf.len() as u64;
            written += 1;
        }
        file.sync_data().map_err(self.err())?;
        Ok(written)
    }

    /// Reads the faults a previous run spilled and removes the file; `None` when there is none.
    /// Lines that do not parse are skipped and counted (second value).
    pub fn take(&self) -> Result<Option<(Vec<ReceivedFault>, usize)>, SpillError> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err((self.err())(e)),
        };
        let faults = read_lines(file, self.max_bytes).map_err(self.err())?;
        std::fs::remove_file(&self.path).map_err(self.err())?;
        Ok(Some(faults))
    }
}

fn read_lines(file: File, max_bytes: u64) -> io::Result<(Vec<ReceivedFault>, usize)> {
    // The file is ours and bounded when written; reading is bounded as well in case it was not.
    let reader = BufReader::new(file.take(max_bytes));
    let (mut faults, mut bad) = (Vec::new(), 0);
    for line in reader.lines() {
        match serde_json::from_str::<Line>(&line?) {
            Ok(l) => faults.push(ReceivedFault {
                cluster: l.cluster,
                fault: l.fault,
                received_at: l.received_at,
                raw: l.raw,
                triage_enabled: l.triage_enabled,
            }),
            Err(_) => bad += 1,
        }
    }
    Ok((faults, bad))
}

/// At start: offers the faults a previous run spilled to `sender`, before any session starts,
/// so they keep their place ahead of new ones; says so in the log.
pub fn reingest(spill: &SpillFile, sender: &super::IngestSender) {
    match spill.take() {
        Ok(None) => {}
        Ok(Some((faults, bad))) => {
            let total = faults.len();
            let kept = faults
                .into_iter()
                .filter(|f| sender.offer(f.clone()))
                .count();
            tracing::warn!(
                path = %spill.path().display(),
                faults = total,
                buffered = kept,
                unreadable = bad,
                "re-ingesting faults a previous run spilled when its database was corrupt"
            );
        }
        Err(e) => tracing::error!(error = %e, "cannot re-ingest the spill file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_and_the_bound_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = SpillFile::new(dir.path().join("spill.jsonl"), 2048);
        let data = r#"{"subscriptionId":"s","cluster":"c","faultId":"f","faultType":"CrashLoop","severity":"critical","resource":{"kind":"Pod","name":"p","uid":"u"},"context":"x","timestamp":"t"}"#;
        let fault: Fault = serde_json::from_str(data).expect("parses");
        let f = ReceivedFault {
            cluster: "c".into(),
            raw: serde_json::to_value(&fault).expect("json"),
            fault,
            received_at: Utc::now(),
            triage_enabled: true,
        };
        let written = spill.append(&vec![f.clone(); 10]).expect("append");
        assert!(written > 0 && written < 10, "{written}");
        let (back, bad) = spill.take().expect("take").expect("a file");
        assert_eq!((back.len(), bad), (written, 0));
        assert_eq!(back[0], f);
        assert!(spill.take().expect("take").is_none(), "removed");
    }
}
