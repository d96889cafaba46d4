//! The agent's stdout and stderr, through a pipe, into `logs/agent.log`, capped in bytes
//! (`agent.max_log_bytes`): an agent that prints gigabytes cannot fill the disk the database
//! lives on (issue #13, item 7).
//!
//! The log keeps the head of the output (written as it comes, so `nightcrier tail` and the log
//! page show it live) and the tail (held in memory, at most [`MAX_TAIL_BYTES`], written when the
//! output ends), with one line between them saying how many bytes were cut. The cap covers the
//! whole file: attempts append to it, and a later attempt gets what earlier ones left.
//!
//! The pipe cannot block the agent forever: this task reads until every writer has closed it,
//! and the run stops it (after killing the agent's processes) within a bound.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

/// The tail kept in memory while output is being cut: the end of a run (the error that ended
/// it) matters most, but a run must not hold much memory.
pub const MAX_TAIL_BYTES: u64 = 4 * 1024 * 1024;
/// Room left in the cap for the line that says what was cut.
const MARKER_ROOM: u64 = 256;
const CHUNK: usize = 64 * 1024;

/// What a capture did, for the run's log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Captured {
    /// Bytes the agent wrote.
    pub received: u64,
    /// Of those, bytes not kept.
    pub cut: u64,
}

/// Copies one run's output into the log. Built with [`LogCapture::new`], which also returns
/// the pipe's write end for the child's stdout and stderr.
pub struct LogCapture {
    reader: pipe::Receiver,
    log: File,
    /// Bytes of output written straight to the log before the rest goes to `tail`.
    head_left: u64,
    tail_max: usize,
    max_log_bytes: u64,
}

impl LogCapture {
    /// `log` is the opened `agent.log` (appending). The file's current size counts against
    /// `max_log_bytes`.
    pub fn new(log: File, max_log_bytes: u64) -> io::Result<(Self, File)> {
        let (sender, reader) = pipe::pipe()?;
        let writer = File::from(sender.into_blocking_fd()?);
        let used = log.metadata()?.len();
        let budget = max_log_bytes
            .saturating_sub(used)
            .saturating_sub(MARKER_ROOM);
        let tail = (budget / 2).min(MAX_TAIL_BYTES);
        let capture = Self {
            reader,
            log,
            head_left: budget - tail,
            tail_max: usize::try_from(tail).unwrap_or(usize::MAX),
            max_log_bytes,
        };
        Ok((capture, writer))
    }

    /// Copies until every writer has closed the pipe, or `stop` fires; then writes the kept
    /// tail (after the cut line, when something was cut).
    pub async fn run(mut self, stop: CancellationToken) -> io::Result<Captured> {
        let mut captured = Captured::default();
        let mut tail: VecDeque<u8> = VecDeque::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = tokio::select! {
                r = self.reader.read(&mut buf) => r?,
                () = stop.cancelled() => break,
            };
            if n == 0 {
                break;
            }
            captured.received += n as u64;
            let mut chunk = &buf[..n];
            if self.head_left > 0 {
                let k = chunk
                    .len()
                    .min(usize::try_from(self.head_left).unwrap_or(usize::MAX));
                self.log.write_all(&chunk[..k])?;
                self.head_left -= k as u64;
                chunk = &chunk[k..];
            }
            tail.extend(chunk);
            if tail.len() > self.tail_max {
                let drop = tail.len() - self.tail_max;
                tail.drain(..drop);
                captured.cut += drop as u64;
            }
        }
        if captured.cut > 0 {
            writeln!(
                self.log,
                "\n--- nightcrier: {} bytes of agent output cut here (agent.max_log_bytes: {}) ---",
                captured.cut, self.max_log_bytes
            )?;
        }
        let (a, b) = tail.as_slices();
        self.log.write_all(a)?;
        self.log.write_all(b)?;
        Ok(captured)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[tokio::test]
    async fn keeps_head_and_tail_and_says_what_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        let log = File::create(&path).unwrap();
        let max = 64 * 1024;
        let (capture, mut writer) = LogCapture::new(log, max).unwrap();
        let task = tokio::spawn(capture.run(CancellationToken::new()));
        let total = 1024 * 1024;
        // Off the test's runtime thread: the capture must run while the pipe is full.
        let writing = tokio::task::spawn_blocking(move || {
            let mut data = vec![b'h'; 1000];
            data.extend(std::iter::repeat_n(b'm', total - 2000));
            data.extend(std::iter::repeat_n(b't', 1000));
            writer.write_all(&data).unwrap();
        });
        writing.await.unwrap();
        let captured = task.await.unwrap().unwrap();
        assert_eq!(captured.received, total as u64);
        let mut text = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.len() as u64 <= max, "{} bytes", text.len());
        assert!(text.starts_with(&"h".repeat(1000)));
        assert!(text.ends_with(&"t".repeat(1000)));
        assert!(text.contains(&format!(
            "--- nightcrier: {} bytes of agent output cut here (agent.max_log_bytes: {max}) ---",
            captured.cut
        )));
        assert_eq!(
            captured.cut + text.len() as u64 - marker_len(&text),
            total as u64
        );
    }

    fn marker_len(text: &str) -> u64 {
        let start = text.find("\n--- nightcrier:").unwrap();
        let end = text[start + 1..].find('\n').unwrap() + start + 2;
        (end - start) as u64
    }
}
