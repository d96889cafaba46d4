//! Escaping of untrusted text for human-facing output: the text system log, `incidents`,
//! `status` and `tail` notices.
//!
//! Fault fields, resource names, error messages and agent output come from a cluster or an
//! agent. A newline in them would forge a whole log line, and ANSI/OSC escape sequences or NUL
//! bytes would reach a terminal raw (rewriting what is shown, setting the window title,
//! hyperlinks...). This module owns the one rule for all of those outputs: every control
//! character becomes a visible escape. It must not be used on machine output (JSON is escaped
//! by its serializer) nor on the stored data itself, which stays as received.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a log line or a terminal as is: C0 controls (newline, CR, tab,
/// NUL, ESC...), DEL, C1 controls (0x80-0x9F, which include the 8-bit CSI and OSC), and the
/// Unicode bidirectional overrides that reorder what a reader sees.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character replaced by a visible escape (`\n`, `\r`, `\t`, `\0`,
/// `\u{1b}`...). Text without one is returned as is, without a copy.
pub fn control_chars(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if is_unsafe(c) => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched_and_not_copied() {
        assert!(matches!(
            control_chars("api-0/payments é ✓"),
            Cow::Borrowed("api-0/payments é ✓")
        ));
    }

    #[test]
    fn every_control_character_becomes_visible() {
        let hostile = "pod\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31mred\u{1b}]0;title\u{7}\0\u{9b}x\u{202e}";
        let out = control_chars(hostile);
        assert_eq!(
            out,
            "pod\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31mred\\u{1b}]0;title\\u{7}\\0\\u{9b}x\\u{202e}"
        );
        assert!(!out.chars().any(is_unsafe));
    }
}
