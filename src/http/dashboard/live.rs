//! The agent's output live: server-sent events that follow `logs/agent.log` as `nightcrier tail`
//! does.
//!
//! Each `chunk` event carries the bytes after the previous event as a JSON string, and its event
//! id is the byte offset where those bytes end. A browser that reconnects sends that id back as
//! `Last-Event-ID`, so the stream resumes at the exact byte: no gap, no repeat. Chunks end at a
//! line end when there is one (lines arrive whole) and never inside a UTF-8 character. When the
//! log is shorter than the offset asked for, a new attempt started it anew: a `reset` event says
//! so and the stream starts over at 0. When the incident has finished and its last bytes are
//! sent, an `end` event carries the final status and the stream closes.

use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use uuid::Uuid;

use super::DashError;
use crate::agent::{FileEntry, Workspace};
use crate::http::HttpState;
use crate::incident::IncidentStatus;
use crate::store::Store;

/// How often the log file is read for new bytes.
const FILE_POLL: Duration = Duration::from_millis(200);
/// How often the incident's status is read while nothing new arrives.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Most bytes in one event.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Most bytes of the log rendered into the page itself (the end of it).
pub const PAGE_TAIL: u64 = 256 * 1024;

/// The end of the log as rendered into the page: bytes `start..end` of the file.
pub(super) struct LogTail {
    pub start: u64,
    pub end: u64,
    pub text: String,
}

/// The last [`PAGE_TAIL`] bytes of the log (cut to whole characters); empty when there is no
/// log yet or it is not a regular file.
pub(super) async fn initial_tail(ws: &Workspace) -> Result<LogTail, DashError> {
    let ws = ws.clone();
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<LogTail> {
        let (mut file, len) = match ws.open_file(&ws.log_file()) {
            Ok(FileEntry::File { file, len }) => (file, len),
            _ => {
                return Ok(LogTail {
                    start: 0,
                    end: 0,
                    text: String::new(),
                })
            }
        };
        let mut start = len.saturating_sub(PAGE_TAIL);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.take(len - start).read_to_end(&mut buf)?;
        // Start after a line end when cutting into the file, so no half line is shown.
        if start > 0 {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                buf.drain(..=nl);
                start += nl as u64 + 1;
            }
        }
        let whole = whole_chars(&buf);
        let end = start + whole as u64;
        buf.truncate(whole);
        Ok(LogTail {
            start,
            end,
            text: String::from_utf8_lossy(&buf).into_owned(),
        })
    })
    .await;
    match read {
        Ok(Ok(tail)) => Ok(tail),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "dashboard: cannot read an agent log");
            Err(DashError::Internal)
        }
        Err(_) => Err(DashError::Internal),
    }
}

/// How many leading bytes of `buf` are whole UTF-8 characters: all of them unless the buffer
/// ends inside one (invalid bytes elsewhere are shown as U+FFFD, not held back).
fn whole_chars(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(4) {
        let i = buf.len() - back;
        let width = match buf[i] {
            0x80..=0xBF => continue, // a continuation byte: look further back
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < width { i } else { buf.len() };
    }
    buf.len()
}

/// Where to start: `Last-Event-ID` (a reconnect) before `?from=` (the offset the page was
/// rendered with).
#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamParams {
    from: Option<String>,
}

pub(super) async fn log_stream(
    State(state): State<HttpState>,
    UrlPath(raw): UrlPath<String>,
    Query(from): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, DashError> {
    let incident = state.store.get(&raw).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let offset = match resume.or(from.from) {
        None => 0,
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            DashError::BadRequest(format!(
                "log offset {v:?} is not a byte offset (a whole number)"
            ))
        })?,
    };
    let follower = Follower {
        store: state.store.clone(),
        ws: Workspace::new(&state.workspace_root, incident.id),
        id: incident.id,
        offset,
        status: incident.status,
        last_status: tokio::time::Instant::now(),
        done: false,
    };
    let stream = futures::stream::unfold(follower, |mut f| async move {
        let event = f.next_event().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Follower {
    store: Store,
    ws: Workspace,
    id: Uuid,
    offset: u64,
    status: IncidentStatus,
    last_status: tokio::time::Instant,
    done: bool,
}

enum Found {
    Bytes(Vec<u8>),
    Restarted,
    Nothing,
}

impl Follower {
    /// Waits for the next thing to say; `None` ends the stream.
    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        loop {
            match self.read().await {
                Found::Restarted => {
                    self.offset = 0;
                    return Some(Event::default().event("reset").id("0").data("restarted"));
                }
                Found::Bytes(bytes) => {
                    self.offset += bytes.len() as u64;
                    let text = String::from_utf8_lossy(&bytes);
                    let data = serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".into());
                    return Some(
                        Event::default()
                            .event("chunk")
                            .id(self.offset.to_string())
                            .data(data),
                    );
                }
                Found::Nothing => {}
            }
            if self.status.is_terminal() {
                // Everything the finished run wrote has been sent (the read above found nothing).
                self.done = true;
                return Some(
                    Event::default()
                        .event("end")
                        .id(self.offset.to_string())
                        .data(self.status.as_str()),
                );
            }
            tokio::time::sleep(FILE_POLL).await;
            if self.last_status.elapsed() >= STATUS_POLL {
                self.last_status = tokio::time::Instant::now();
                match self.store.get(&self.id.to_string()).await {
                    Ok(i) => self.status = i.status,
                    // The page says "reconnecting" and the browser comes back with its offset.
                    Err(e) => {
                        tracing::debug!(error = %e, "dashboard live log: cannot read the status");
                        return None;
                    }
                }
            }
        }
    }

    /// The bytes after the offset, at most [`MAX_CHUNK`], ending at a line end when one is in
    /// them and never inside a character.
    async fn read(&self) -> Found {
        let (ws, offset) = (self.ws.clone(), self.offset);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Found> {
            let (mut file, len) = match ws.open_file(&ws.log_file()) {
                Ok(FileEntry::File { file, len }) => (file, len),
                _ => return Ok(Found::Nothing),
            };
            if len < offset {
                return Ok(Found::Restarted);
            }
            if len == offset {
                return Ok(Found::Nothing);
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(MAX_CHUNK.min((len - offset) as usize));
            file.take((len - offset).min(MAX_CHUNK as u64))
                .read_to_end(&mut buf)?;
            // A line still being written (no line end yet) is sent as far as it goes.
            let keep = match buf.iter().rposition(|b| *b == b'\n') {
                Some(nl) => nl + 1,
                None => whole_chars(&buf),
            };
            buf.truncate(keep);
            Ok(if buf.is_empty() {
                Found::Nothing
            } else {
                Found::Bytes(buf)
            })
        })
        .await;
        match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "dashboard live log: read failed");
                Found::Nothing
            }
            Err(_) => Found::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::whole_chars;

    #[test]
    fn chunks_never_end_inside_a_character() {
        let s = "aé€".as_bytes();
        assert_eq!(whole_chars(s), s.len());
        assert_eq!(whole_chars(&s[..2]), 1);
        assert_eq!(whole_chars(&s[..4]), 3);
        assert_eq!(whole_chars(b"a\xffb"), 3);
    }
}
