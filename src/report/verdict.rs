//! The agent's verdict for machines: `output/verdict.json` (root cause, confidence, category,
//! evidence references), else the report's `**Verdict:**` line. Both are written by the agent,
//! so both are read tolerantly and bounded: wrong types are ignored, strings are clipped, the
//! file is read through no symlink and only up to [`MAX_VERDICT_BYTES`].

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bytes of `verdict.json` read at most.
pub const MAX_VERDICT_BYTES: u64 = 64 * 1024;
/// Characters kept per field, and evidence references kept.
const MAX_FIELD_CHARS: usize = 500;
const MAX_REFS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<String>,
    /// `high`, `medium`, `low` or `inconclusive` (lowercased when it is one of those).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// For an inconclusive verdict: what would settle it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

impl Verdict {
    /// `root cause (confidence: high)`: the one line to show.
    pub fn headline(&self) -> Option<String> {
        let cause = self.root_cause.as_deref()?;
        Some(match &self.confidence {
            Some(c) => format!("{cause} (confidence: {c})"),
            None => cause.to_string(),
        })
    }
}

fn clip(s: &str) -> Option<String> {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_FIELD_CHARS)
        .collect();
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn confidence(s: &str) -> Option<String> {
    let low = s.trim().to_lowercase();
    for level in ["inconclusive", "high", "medium", "low"] {
        if low.starts_with(level) {
            return Some(level.to_string());
        }
    }
    clip(s)
}

/// Parses `verdict.json`; `None` unless it is a JSON object with a root cause or a confidence.
pub fn parse_json(bytes: &[u8]) -> Option<Verdict> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).and_then(clip);
    let evidence = match obj.get("evidence").or_else(|| obj.get("evidence_refs")) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter_map(clip)
            .take(MAX_REFS)
            .collect(),
        Some(Value::String(s)) => clip(s).into_iter().collect(),
        _ => Vec::new(),
    };
    let verdict = Verdict {
        root_cause: text("root_cause"),
        confidence: obj
            .get("confidence")
            .and_then(Value::as_str)
            .and_then(confidence),
        category: text("category"),
        evidence,
        missing: text("missing"),
    };
    (verdict.root_cause.is_some() || verdict.confidence.is_some()).then_some(verdict)
}

/// The report's `**Verdict:** ... (confidence: high)` line, when there is one.
pub fn from_report(markdown: &str) -> Option<Verdict> {
    let line = markdown
        .lines()
        .map(|l| l.trim().trim_start_matches(['>', '-', '*', ' ']))
        .find_map(|l| {
            let low = l.to_lowercase();
            let at = low.find("verdict:")?;
            (at < 4).then(|| l[at + "verdict:".len()..].to_string())
        })?;
    let line = line.trim().trim_start_matches('*').trim();
    let low = line.to_lowercase();
    if low.starts_with("inconclusive") {
        let missing = line["inconclusive".len()..].trim_start_matches([':', ' ', '-', '—']);
        return Some(Verdict {
            confidence: Some("inconclusive".into()),
            missing: clip(missing),
            ..Verdict::default()
        });
    }
    let (cause, conf) = match low.rfind("(confidence:") {
        Some(at) => (
            &line[..at],
            confidence(line[at + "(confidence:".len()..].trim_end_matches(')')),
        ),
        None => (line, None),
    };
    Some(Verdict {
        root_cause: clip(cause.trim_end_matches(['.', ' '])).map(|c| c + "."),
        confidence: conf,
        ..Verdict::default()
    })
    .filter(|v| v.root_cause.is_some())
}

/// The verdict of a workspace: `output/verdict.json`, else the report's verdict line.
pub fn read(workspace: &Path) -> Option<Verdict> {
    let bounded = |path: &Path| -> Option<Vec<u8>> {
        let f = OpenOptions::new()
            .read(true)
            // NONBLOCK: a FIFO the agent planted must not hang the reader.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        let mut buf = Vec::new();
        f.take(MAX_VERDICT_BYTES).read_to_end(&mut buf).ok()?;
        Some(buf)
    };
    let ws = crate::agent::Workspace::from_dir(workspace);
    if let Some(v) = bounded(&ws.verdict_file()).and_then(|b| parse_json(&b)) {
        return Some(v);
    }
    let report = bounded(&ws.report_file())?;
    from_report(&String::from_utf8_lossy(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_read_tolerantly() {
        let v = parse_json(br#"{"root_cause":"DATABASE_URL is not set","confidence":"High","category":"configuration","evidence":["evidence/03-log-previous.txt",7]}"#).unwrap();
        assert_eq!(v.root_cause.as_deref(), Some("DATABASE_URL is not set"));
        assert_eq!(v.confidence.as_deref(), Some("high"));
        assert_eq!(v.evidence, vec!["evidence/03-log-previous.txt"]);
        assert_eq!(parse_json(b"[1,2]"), None);
        assert_eq!(parse_json(b"{\"root_cause\": 5}"), None);
        assert_eq!(parse_json(b"not json"), None);
        let long = format!("{{\"root_cause\":\"{}\"}}", "x\\n".repeat(2000));
        let clipped = parse_json(long.as_bytes()).unwrap().root_cause.unwrap();
        assert!(clipped.chars().count() <= MAX_FIELD_CHARS && !clipped.contains('\n'));
    }

    #[test]
    fn the_report_line_is_a_fallback() {
        let v = from_report("# T\n\n**Verdict:** The image tag v2 does not exist (confidence: medium)\n\n## Summary\n").unwrap();
        assert_eq!(
            v.root_cause.as_deref(),
            Some("The image tag v2 does not exist.")
        );
        assert_eq!(v.confidence.as_deref(), Some("medium"));
        let v = from_report("**Verdict:** inconclusive: no logs were readable").unwrap();
        assert_eq!(v.confidence.as_deref(), Some("inconclusive"));
        assert_eq!(v.missing.as_deref(), Some("no logs were readable"));
        assert_eq!(
            from_report("# no verdict here\n\nThe verdict: is out there."),
            None
        );
    }
}
