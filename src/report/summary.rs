//! A short summary of a report for notifications: the root cause and the confidence when the
//! report states them, else its first meaningful paragraph.
//!
//! Agents write in many styles (`## Root Cause`, `### 3. Root Cause Analysis`,
//! `**Root cause:** ...`, a table row), so the report is parsed into blocks of plain text first
//! and the labels are matched on that text, not on the Markdown.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use super::render::markdown_options;

/// Longest summary text, in characters.
pub const MAX_SUMMARY_CHARS: usize = 300;
/// A paragraph shorter than this is not "meaningful" for the fallback (a byline, a label), unless
/// the report has nothing longer.
const MIN_PARAGRAPH_CHARS: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// The stated root cause, truncated.
    pub root_cause: Option<String>,
    /// As stated: `High`, `Medium (70%)`, `85%`...
    pub confidence: Option<String>,
    /// The first meaningful paragraph, when no root cause was found.
    pub excerpt: Option<String>,
}

impl Summary {
    /// The one line to show: the root cause, else the excerpt.
    pub fn headline(&self) -> Option<&str> {
        self.root_cause.as_deref().or(self.excerpt.as_deref())
    }
}

#[derive(Debug, PartialEq)]
enum Block {
    Heading(HeadingLevel, String),
    /// A paragraph or a list item.
    Text(String),
    /// A table row's cells.
    Row(Vec<String>),
}

pub fn summarize(markdown: &str) -> Summary {
    let blocks = blocks(markdown);
    let root_cause = find_labelled(&blocks, is_root_cause_label).map(|t| truncate(&t));
    let confidence = find_labelled(&blocks, is_confidence_label).and_then(|t| confidence_level(&t));
    let excerpt = if root_cause.is_none() {
        let texts = || {
            blocks.iter().filter_map(|b| match b {
                Block::Text(t) => Some(t),
                _ => None,
            })
        };
        texts()
            .find(|t| t.chars().count() >= MIN_PARAGRAPH_CHARS)
            .or_else(|| texts().next())
            .map(|t| truncate(t))
    } else {
        None
    };
    Summary {
        root_cause,
        confidence,
        excerpt,
    }
}

/// The text a label introduces: `Label: text` in a paragraph or item, a `Label | text` table
/// row, or the first text under a heading that is the label.
fn find_labelled(blocks: &[Block], is_label: fn(&str) -> bool) -> Option<String> {
    let mut under_heading = false;
    for block in blocks {
        match block {
            Block::Heading(_, text) => under_heading = is_label(text),
            Block::Text(text) => {
                if let Some((label, rest)) = split_label(text) {
                    if is_label(label) && !rest.is_empty() {
                        return Some(rest.to_string());
                    }
                }
                if under_heading && !text.trim().is_empty() {
                    return Some(text.trim().to_string());
                }
            }
            Block::Row(cells) => {
                if let [label, value, ..] = cells.as_slice() {
                    if is_label(label) && !value.trim().is_empty() {
                        return Some(value.trim().to_string());
                    }
                }
            }
        }
    }
    None
}

/// `Root cause: text` → (`Root cause`, `text`); the label must be short.
fn split_label(text: &str) -> Option<(&str, &str)> {
    let (label, rest) = text.split_once([':', '—', '–'])?;
    (label.chars().count() <= 40).then(|| (label, rest.trim()))
}

fn normalise(label: &str) -> String {
    label
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        // Numbering ("3.", "iv") and emphasis are not part of the label.
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_root_cause_label(label: &str) -> bool {
    let l = normalise(label);
    let l = l.strip_prefix("the ").unwrap_or(&l);
    let l = [
        "probable ",
        "likely ",
        "most likely ",
        "identified ",
        "suspected ",
    ]
    .iter()
    .fold(l, |l, p| l.strip_prefix(p).unwrap_or(l));
    l.starts_with("root cause") && l.split_whitespace().count() <= 4
}

fn is_confidence_label(label: &str) -> bool {
    let l = normalise(label);
    l.starts_with("confidence") && l.split_whitespace().count() <= 3
}

/// `High — the events show...` → `High`; `80%` → `80%`; `medium (70%)` → `Medium (70%)`.
fn confidence_level(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '%')
        .filter(|w| !w.is_empty())
        .take(12)
        .collect();
    let level = ["very high", "high", "medium", "moderate", "low"]
        .into_iter()
        .find(|lv| {
            let parts: Vec<&str> = lv.split(' ').collect();
            words.windows(parts.len()).any(|w| w == parts.as_slice())
        });
    let percent = words.iter().find(|w| {
        w.strip_suffix('%')
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    match (level, percent) {
        (Some(l), Some(p)) => Some(format!("{} ({p})", capitalise(l))),
        (Some(l), None) => Some(capitalise(l)),
        (None, Some(p)) => Some((*p).to_string()),
        (None, None) => None,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// At most [`MAX_SUMMARY_CHARS`]: whole sentences when they fit, else whole words and `…`.
pub fn truncate(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= MAX_SUMMARY_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_SUMMARY_CHARS).collect();
    if let Some(end) = cut.rfind(". ").filter(|&i| i >= MAX_SUMMARY_CHARS / 2) {
        return cut[..=end].to_string();
    }
    let words = match cut.rfind(' ') {
        Some(i) if i >= MAX_SUMMARY_CHARS / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", words.trim_end_matches([',', ';', ':', ' ']))
}

/// Headings, paragraphs/list items and table rows as plain text; code blocks are left out.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut row: Vec<String> = Vec::new();
    let mut heading: Option<HeadingLevel> = None;
    let mut in_code = false;
    let mut in_table = false;
    let flush = |text: &mut String, out: &mut Vec<Block>| {
        let t = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !t.is_empty() {
            out.push(Block::Text(t));
        }
        text.clear();
    };
    for event in Parser::new_ext(markdown, markdown_options()) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut text, &mut out);
                heading = Some(level);
            }
            Event::End(TagEnd::Heading(_)) => {
                let t = text.trim().to_string();
                out.push(Block::Heading(
                    heading.take().unwrap_or(HeadingLevel::H1),
                    t,
                ));
                text.clear();
            }
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Start(Tag::Table(_)) => in_table = true,
            Event::End(TagEnd::Table) => in_table = false,
            Event::End(TagEnd::TableCell) => {
                row.push(text.trim().to_string());
                text.clear();
            }
            Event::End(TagEnd::TableRow | TagEnd::TableHead) => {
                out.push(Block::Row(std::mem::take(&mut row)));
            }
            // A nested list ends its parent item's own text.
            Event::Start(Tag::List(_)) | Event::End(TagEnd::Paragraph | TagEnd::Item)
                if !in_table =>
            {
                flush(&mut text, &mut out);
            }
            Event::Text(t) | Event::Code(t) if !in_code => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            _ => {}
        }
    }
    flush(&mut text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_in_many_styles() {
        for (md, want) in [
            ("## Root Cause\n\nThe pod OOMs.\n", "The pod OOMs."),
            (
                "### 3. Root Cause Analysis\n\nThe pod OOMs.\n",
                "The pod OOMs.",
            ),
            ("**Root cause:** The pod OOMs.\n", "The pod OOMs."),
            (
                "- **Probable root cause** — The pod OOMs.\n",
                "The pod OOMs.",
            ),
            (
                "| Field | Value |\n|---|---|\n| Root cause | The pod OOMs. |\n",
                "The pod OOMs.",
            ),
        ] {
            assert_eq!(summarize(md).root_cause.as_deref(), Some(want), "{md}");
        }
    }

    #[test]
    fn confidence_levels() {
        for (md, want) in [
            ("**Confidence:** High\n", "High"),
            (
                "Confidence level: medium (70%) because...\n",
                "Medium (70%)",
            ),
            ("## Confidence\n\n85% — logs are conclusive\n", "85%"),
        ] {
            assert_eq!(summarize(md).confidence.as_deref(), Some(want), "{md}");
        }
        assert_eq!(summarize("We are confident it is fine.\n").confidence, None);
    }

    #[test]
    fn truncates_at_a_sentence_or_a_word() {
        let sentence = "The deployment was scaled to zero by an HPA misconfiguration. ";
        let long = sentence.repeat(10);
        let t = truncate(&long);
        assert!(t.chars().count() <= MAX_SUMMARY_CHARS);
        assert!(t.ends_with("misconfiguration."), "{t}");
        let words = "word ".repeat(100);
        let t = truncate(&words);
        assert!(t.ends_with("word…"), "{t}");
        assert!(t.chars().count() <= MAX_SUMMARY_CHARS + 1);
    }
}
