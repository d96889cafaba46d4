//! The Block Kit messages of Slack app mode: an incident's parent message (updated in place) and
//! the replies in its thread. Every text is escaped for mrkdwn (it comes from a cluster or an
//! agent) and cut to Slack's limits *after* escaping, so Slack never rejects a message for its
//! size: a long report is split over several sections and, past a budget, trimmed with a link to
//! the full report.
//!
//! This module only builds JSON; posting is `slack_app`'s.

use serde_json::{json, Value};

use super::message::{escape, run_duration, Links};
use super::summary::Summary;
use crate::incident::{Incident, IncidentStatus};

// Slack's documented limits. Block Kit reference (api.slack.com/reference/block-kit/blocks,
// docs.slack.dev/reference/block-kit/blocks): "You can include up to 50 blocks in each message";
// section `text`: "Maximum length for the text in this field is 3000 characters"; section
// `fields`: "Maximum number of items is 10. Maximum length for the text in each item is 2000
// characters"; header `text`: "Maximum length for the text in this field is 150 characters";
// context `elements`: "Maximum number of items is 10". chat.postMessage `text`: "Slack API will
// truncate messages containing more than 40,000 characters".
/// Blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Characters of a section's `text`.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Items of a section's `fields`.
pub const MAX_FIELDS: usize = 10;
/// Characters of one section field.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Characters of a header's `text`.
pub const MAX_HEADER_TEXT: usize = 150;
/// Elements of a context block.
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
/// Characters of a message's top-level `text` (Slack truncates beyond; the fallback stays far
/// below, as it is only the notification preview).
pub const MAX_MESSAGE_TEXT: usize = 40_000;
/// Characters of the fallback `text` we send.
pub const MAX_FALLBACK_TEXT: usize = 3000;
/// Characters of all blocks' texts together. Not in the reference, but Slack answers
/// `msg_blocks_too_long` from about 13,000 (slackapi/bolt-js#2509): stay below.
pub const MAX_BLOCKS_TEXT: usize = 12_000;

/// What a finished run adds to the parent and its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFacts {
    pub summary: Summary,
    /// The run's cost as shown (`$0.2500 (reported)`).
    pub cost: Option<String>,
    /// Why the run failed or timed out.
    pub failure: Option<String>,
    /// The report (markdown), shown in the thread as far as the limits allow.
    pub report: Option<String>,
    /// Evidence references from the agent's verdict.
    pub evidence: Vec<String>,
    /// The related faults this investigation covered (`N: Fault Kind ns/name, ...`).
    pub related: Option<String>,
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `raw` escaped, cut to `max` characters of escaped text without splitting an entity.
fn escaped_clip(raw: &str, max: usize) -> String {
    let mut out = String::new();
    let mut len = 0;
    let total = escape(raw).chars().count();
    if total <= max {
        return escape(raw);
    }
    for c in raw.chars() {
        let e = escape(c.encode_utf8(&mut [0; 4]));
        let n = e.chars().count();
        if len + n > max.saturating_sub(1) {
            break;
        }
        out.push_str(&e);
        len += n;
    }
    out.push('…');
    out
}

/// `raw` escaped and split into chunks of at most `max` escaped characters, at line ends where
/// possible (a longer line is split inside), never inside an entity.
pub fn escaped_chunks(raw: &str, max: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    for line in raw.split_inclusive('\n') {
        let e = escape(line);
        let n = e.chars().count();
        if cur_len + n <= max {
            cur.push_str(&e);
            cur_len += n;
            continue;
        }
        if !cur.is_empty() {
            chunks.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if n <= max {
            cur = e;
            cur_len = n;
            continue;
        }
        for c in line.chars() {
            let ec = escape(c.encode_utf8(&mut [0; 4]));
            let cn = ec.chars().count();
            if cur_len + cn > max {
                chunks.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            cur.push_str(&ec);
            cur_len += cn;
        }
    }
    if !cur.trim().is_empty() {
        chunks.push(cur);
    }
    chunks.retain(|c| !c.trim().is_empty());
    chunks
}

fn header(text: &str) -> Value {
    json!({ "type": "header", "text": { "type": "plain_text", "text": clip(text, MAX_HEADER_TEXT), "emoji": true } })
}

/// A section of already-escaped mrkdwn, cut to the limit.
fn section(mrkdwn: String) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&mrkdwn, MAX_SECTION_TEXT) } })
}

fn context(mrkdwn: &[String]) -> Value {
    let elements: Vec<Value> = mrkdwn
        .iter()
        .take(MAX_CONTEXT_ELEMENTS)
        .map(|t| json!({ "type": "mrkdwn", "text": clip(t, MAX_SECTION_TEXT) }))
        .collect();
    json!({ "type": "context", "elements": elements })
}

fn field(k: &str, v: &str) -> Value {
    json!({ "type": "mrkdwn", "text": format!("*{k}*\n{}", escaped_clip(v, MAX_FIELD_TEXT - k.len() - 4)) })
}

fn message(text: &str, blocks: Vec<Value>) -> Value {
    json!({ "text": escaped_clip(text, MAX_FALLBACK_TEXT), "blocks": blocks })
}

fn status_word(i: &Incident) -> &'static str {
    match i.status {
        IncidentStatus::Pending => "Open",
        IncidentStatus::Running => "Investigating",
        IncidentStatus::Succeeded => "Triaged",
        IncidentStatus::Failed => "Triage failed",
        IncidentStatus::TimedOut => "Triage timed out",
        IncidentStatus::Cancelled => "Cancelled",
        IncidentStatus::Skipped => "Not investigated",
        IncidentStatus::Resolved => "Resolved",
        IncidentStatus::Expired => "Expired",
    }
}

fn resource(i: &Incident) -> String {
    format!("{}/{}", i.resource_kind, i.resource_name)
}

fn link_line(links: &Links) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(a) = &links.artifact {
        parts.push(format!("<{a}|View report>"));
    }
    if let Some(r) = &links.report {
        parts.push(format!("<{r}|Report>"));
    }
    if let Some(p) = &links.page {
        parts.push(format!("<{p}|Incident>"));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// The full report's address: the archived copy first, else the endpoint's page.
fn full_report(links: &Links) -> Option<&str> {
    links.artifact.as_deref().or(links.report.as_deref())
}

/// The parent message: what, where, status and (once the run ended) the verdict, updated in
/// place as the incident moves on.
pub fn parent(
    i: &Incident,
    facts: Option<&RunFacts>,
    links: &Links,
    cluster_context: &[(String, String)],
) -> Value {
    let ns = i.namespace.as_deref().unwrap_or("-");
    let status = status_word(i);
    let duration = run_duration(i).map_or_else(
        || "-".to_string(),
        |d| humantime::format_duration(d).to_string(),
    );
    let mut fields = vec![
        field("Status", status),
        field("Cluster", &i.cluster),
        field("Namespace", ns),
        field("Resource", &resource(i)),
        field("Fault", &i.fault_type),
        field("Severity", &i.severity),
        field("Occurrences", &i.occurrences.to_string()),
        field("Duration", &duration),
    ];
    let mut headline = None;
    let mut blocks = vec![header(&format!(
        "{status}: {} on {}",
        i.fault_type, i.cluster
    ))];
    if let Some(f) = facts {
        if let Some(c) = &f.summary.confidence {
            fields.push(field("Confidence", c));
        }
        if let Some(c) = &f.cost {
            fields.push(field("Cost", c));
        }
        fields.truncate(MAX_FIELDS);
        blocks.push(json!({ "type": "section", "fields": fields }));
        if let Some(reason) = &f.failure {
            blocks.push(section(format!("*Reason*\n{}", escape(reason))));
            headline = Some(reason.clone());
        } else if let Some(h) = f.summary.headline() {
            let label = if f.summary.root_cause.is_some() {
                "Root cause"
            } else {
                "Summary"
            };
            blocks.push(section(format!("*{label}*\n{}", escape(h))));
            headline = Some(h.to_string());
        }
    } else {
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    if !cluster_context.is_empty() {
        let line = cluster_context
            .iter()
            .map(|(k, v)| format!("*{}:* {}", escape(k), escape(v)))
            .collect::<Vec<_>>()
            .join(" · ");
        blocks.push(context(&[line]));
    }
    if let Some(l) = link_line(links) {
        blocks.push(context(&[l]));
    }
    let text = format!(
        "{status}: {} {} on {}/{}{}",
        i.fault_type,
        resource(i),
        i.cluster,
        ns,
        headline.map(|h| format!(": {h}")).unwrap_or_default()
    );
    message(&text, blocks)
}

/// The thread reply of a finished run: the report (split over sections, trimmed past the
/// budget with a link to the full report), evidence highlights, or the failure's reason.
pub fn run_reply(i: &Incident, facts: &RunFacts, links: &Links) -> Value {
    if let Some(reason) = &facts.failure {
        let text = format!("{} (run {}): {reason}", status_word(i), i.attempt.max(1));
        let mut blocks = vec![section(format!(
            "*{}* (run {})\n{}",
            status_word(i),
            i.attempt.max(1),
            escape(reason)
        ))];
        if let Some(l) = link_line(links) {
            blocks.push(context(&[l]));
        }
        return message(&text, blocks);
    }
    let mut blocks = vec![section("*Report*".to_string())];
    // Room left for the trailer (evidence and links) within the blocks and characters budget.
    let mut budget = MAX_BLOCKS_TEXT - 2 * MAX_SECTION_TEXT.min(1500);
    let max_sections = MAX_BLOCKS - 4;
    let body = facts
        .report
        .as_deref()
        .or(facts.summary.headline())
        .unwrap_or("(the report states no summary)");
    let mut trimmed = false;
    for chunk in escaped_chunks(body, MAX_SECTION_TEXT) {
        let n = chunk.chars().count();
        if blocks.len() >= max_sections || n > budget {
            trimmed = true;
            break;
        }
        budget -= n;
        blocks.push(section(chunk));
    }
    if trimmed {
        let more = match full_report(links) {
            Some(url) => format!("_The report is longer than Slack allows: <{url}|read it all>._"),
            None => "_The report is longer than Slack allows; the rest is in the workspace._"
                .to_string(),
        };
        blocks.push(context(&[more]));
    }
    if !facts.evidence.is_empty() {
        let lines: Vec<String> = facts
            .evidence
            .iter()
            .take(10)
            .map(|e| format!("• {}", escaped_clip(e, 140)))
            .collect();
        blocks.push(section(format!("*Evidence*\n{}", lines.join("\n"))));
    }
    if let Some(r) = &facts.related {
        blocks.push(section(format!("*Related faults*\n{}", escape(r))));
    }
    if let Some(l) = link_line(links) {
        blocks.push(context(&[l]));
    }
    let headline = facts.summary.headline().unwrap_or("report ready");
    message(&format!("Report: {headline}"), blocks)
}

/// A reply for occurrences seen since the thread last told.
pub fn occurrences_reply(i: &Incident, told: i64) -> Value {
    let more = i.occurrences.saturating_sub(told).max(1);
    let text = format!(
        "Seen again: {more} more occurrence(s), {} in all, the last at {}.",
        i.occurrences,
        i.last_seen.format("%Y-%m-%d %H:%M:%S UTC")
    );
    message(&text, vec![section(escape(&text))])
}

/// A reply saying that the incident resolved.
pub fn resolved_reply(i: &Incident) -> Value {
    let when = i
        .resolved_at
        .or(i.finished_at)
        .map(|t| format!(" at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
        .unwrap_or_default();
    let text = format!("Resolved: the source reported the fault over{when}.");
    message(
        &text,
        vec![section(format!(":white_check_mark: {}", escape(&text)))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_limit_and_keep_entities_whole() {
        let raw = format!("{}\n{}", "a<b ".repeat(2000), "short line\n");
        let chunks = escaped_chunks(&raw, 100);
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert!(c.chars().count() <= 100, "{}", c.chars().count());
            // Every `&` starts a whole entity.
            for (at, _) in c.match_indices('&') {
                assert!(
                    c[at..].starts_with("&lt;")
                        || c[at..].starts_with("&amp;")
                        || c[at..].starts_with("&gt;")
                );
            }
        }
        assert_eq!(chunks.concat(), escape(&raw));
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo!", 5), "héll…");
        assert_eq!(escaped_clip("<<<<", 9), "&lt;&lt;…");
    }
}
