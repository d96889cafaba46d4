//! A bounded Server-Sent Events parser.
//!
//! Why our own: the maintained Rust SSE crates (`eventsource-stream`, which `reqwest-eventsource`
//! and `sse-stream` build on) buffer an unterminated line or an event without a blank line
//! without any bound, so one misbehaving server could make nightcrier grow without limit. Here an
//! event is bounded by `max_event_bytes`: past it, the rest of the event is skipped up to its end
//! (keeping only a byte count) and reported as [`SseItem::Oversized`], and the stream goes on.
//!
//! Line endings `\r\n`, `\n` and `\r` are all accepted, in any chunking. Invalid UTF-8 in an
//! event is reported as [`SseItem::InvalidUtf8`] instead of being replaced, so the caller can
//! count it as malformed.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when absent (which SSE means as `message`).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// An event larger than the bound was skipped; `bytes` is its size up to the bound or more.
    Oversized {
        bytes: usize,
    },
    /// An event whose fields are not valid UTF-8 was skipped.
    InvalidUtf8,
}

/// Incremental parser: feed it the body chunk by chunk.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The current, unterminated line.
    line: Vec<u8>,
    /// Raw bytes of the current event's completed lines (terminators excluded).
    event_bytes: usize,
    data: Vec<u8>,
    has_data: bool,
    event: Vec<u8>,
    id: Option<Vec<u8>>,
    /// The last byte seen was `\r`: a `\n` right after it belongs to the same line ending, even
    /// when it arrives in the next chunk.
    after_cr: bool,
    /// Skipping an oversized event until its blank line; holds its size so far.
    discarding: Option<usize>,
    /// Length of the current line while discarding (its content is not kept).
    discard_line_len: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            event_bytes: 0,
            data: Vec::new(),
            has_data: false,
            event: Vec::new(),
            id: None,
            after_cr: false,
            discarding: None,
            discard_line_len: 0,
        }
    }

    /// Parses one chunk, calling `emit` for each complete item in order.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(SseItem)) {
        if chunk.is_empty() {
            return;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.append(chunk);
                    return;
                }
                Some(pos) => {
                    self.append(&chunk[..pos]);
                    self.end_line(emit);
                    let is_cr = chunk[pos] == b'\r';
                    chunk = &chunk[pos + 1..];
                    if is_cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.discarding.is_some() {
            self.discard_line_len += bytes.len();
            return;
        }
        if self.event_bytes + self.line.len() + bytes.len() > self.max_event_bytes {
            self.start_discarding(bytes.len());
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn start_discarding(&mut self, extra: usize) {
        let so_far = self.event_bytes + self.line.len();
        self.discarding = Some(so_far);
        self.discard_line_len = extra;
        self.line = Vec::new();
        self.data = Vec::new();
        self.event = Vec::new();
        self.id = None;
        self.has_data = false;
        self.event_bytes = 0;
    }

    fn end_line(&mut self, emit: &mut impl FnMut(SseItem)) {
        if let Some(size) = self.discarding {
            if self.discard_line_len == 0 {
                self.discarding = None;
                emit(SseItem::Oversized { bytes: size });
            } else {
                self.discarding = Some(size + self.discard_line_len);
                self.discard_line_len = 0;
            }
            return;
        }
        if self.line.is_empty() {
            self.dispatch(emit);
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.event_bytes += line.len();
        self.field(&line);
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn field(&mut self, line: &[u8]) {
        if line[0] == b':' {
            return; // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"id" if !value.contains(&0) => self.id = Some(value.to_vec()),
            // `retry` and unknown fields are ignored, as the SSE spec says.
            _ => {}
        }
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(SseItem)) {
        self.event_bytes = 0;
        let event = std::mem::take(&mut self.event);
        let id = self.id.take();
        if !std::mem::take(&mut self.has_data) {
            // An event without data is not dispatched (SSE spec).
            self.data.clear();
            return;
        }
        let data = std::mem::take(&mut self.data);
        let parsed = (|| {
            Some(SseEvent {
                event: String::from_utf8(event).ok()?,
                data: String::from_utf8(data).ok()?,
                id: match id {
                    Some(i) => Some(String::from_utf8(i).ok()?),
                    None => None,
                },
            })
        })();
        emit(match parsed {
            Some(ev) => SseItem::Event(ev),
            None => SseItem::InvalidUtf8,
        });
    }

    /// True while an event has begun and not ended: a partial line, a field of an event that
    /// has not seen its blank line yet, or an oversized event being skipped. Comment lines alone
    /// do not begin an event.
    pub fn in_event(&self) -> bool {
        !self.line.is_empty()
            || self.has_data
            || !self.event.is_empty()
            || self.id.is_some()
            || self.discarding.is_some()
    }

    /// Bytes held right now (for tests of the memory bound).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len() + self.id.as_ref().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new(max);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut |i| out.push(i));
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.into(),
            data: data.into(),
            id: None,
        })
    }

    const STREAM: &[u8] = b": comment\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\nid: 7\nevent:message\ndata:x\ndata: y\n\n\revent: message\rdata: z\r\r";

    fn expected() -> Vec<SseItem> {
        vec![
            ev("message", "{\"a\":1}"),
            SseItem::Event(SseEvent {
                event: "message".into(),
                data: "x\ny".into(),
                id: Some("7".into()),
            }),
            ev("message", "z"),
        ]
    }

    #[test]
    fn parses_mixed_line_endings_comments_and_multiline_data() {
        assert_eq!(parse_chunks(1024, &[STREAM]), expected());
    }

    #[test]
    fn every_split_position_gives_the_same_events() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let got = parse_chunks(1024, &[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]);
                assert_eq!(got, expected(), "split at {i},{j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_feeding_works() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_chunks(1024, &chunks), expected());
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert_eq!(
            parse_chunks(64, &[b"event: ping\n\ndata: a\n\n"]),
            vec![ev("", "a")]
        );
    }

    #[test]
    fn oversized_event_is_skipped_and_the_next_one_delivered() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let stream = format!("data: ok1\n\n{big}data: ok2\n\n");
        for i in 0..=stream.len() {
            let (a, b) = stream.as_bytes().split_at(i);
            let got = parse_chunks(50, &[a, b]);
            assert_eq!(got.len(), 3, "split at {i}: {got:?}");
            assert_eq!(got[0], ev("", "ok1"));
            assert!(matches!(got[1], SseItem::Oversized { bytes } if bytes > 50));
            assert_eq!(got[2], ev("", "ok2"));
        }
    }

    #[test]
    fn many_small_data_lines_count_towards_the_bound() {
        let stream = format!("{}\ndata: after\n\n", "data: 0123456789\n".repeat(20));
        let got = parse_chunks(100, &[stream.as_bytes()]);
        assert!(matches!(got[0], SseItem::Oversized { .. }), "{got:?}");
        assert_eq!(got[1], ev("", "after"));
    }

    #[test]
    fn a_frame_that_never_ends_keeps_memory_bounded() {
        let mut p = SseParser::new(1000);
        let mut out = Vec::new();
        p.feed(b"data: ", &mut |i| out.push(i));
        let chunk = vec![b'a'; 4096];
        for _ in 0..1000 {
            p.feed(&chunk, &mut |i| out.push(i));
            assert!(p.buffered_bytes() <= 1000);
        }
        assert!(out.is_empty());
        p.feed(b"\n\ndata: next\n\n", &mut |i| out.push(i));
        assert!(matches!(out[0], SseItem::Oversized { bytes } if bytes > 4_000_000));
        assert_eq!(out[1], ev("", "next"));
    }

    #[test]
    fn in_event_is_true_only_between_an_events_first_byte_and_its_end() {
        let mut p = SseParser::new(16);
        let mut items = Vec::new();
        assert!(!p.in_event());
        p.feed(b": comment only\n", &mut |i| items.push(i));
        assert!(!p.in_event(), "a comment line does not begin an event");
        p.feed(b"event: message\n", &mut |i| items.push(i));
        assert!(p.in_event());
        p.feed(b"data: {}\n\n", &mut |i| items.push(i));
        assert!(!p.in_event());
        p.feed(b"da", &mut |i| items.push(i));
        assert!(p.in_event(), "a partial line is part of an event");
        p.feed(b"ta: 0123456789abcdefghij\n", &mut |i| items.push(i));
        assert!(p.in_event(), "an oversized event being skipped");
        p.feed(b"\n", &mut |i| items.push(i));
        assert!(!p.in_event());
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn invalid_utf8_is_reported_and_the_stream_continues() {
        let got = parse_chunks(1024, &[b"data: \xff\xfe\n\n", b"data: fine\n", b"\n"]);
        assert_eq!(got, vec![SseItem::InvalidUtf8, ev("", "fine")]);
    }

    #[test]
    fn utf8_split_across_chunks_is_fine() {
        let s = "data: héllo\n\n".as_bytes();
        for i in 0..=s.len() {
            assert_eq!(parse_chunks(64, &[&s[..i], &s[i..]]), vec![ev("", "héllo")]);
        }
    }
}
