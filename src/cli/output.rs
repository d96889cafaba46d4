//! Human output helpers: aligned tables and durations.

use chrono::{DateTime, SecondsFormat, Utc};

/// Renders rows under a header with columns padded to their widest cell.
/// Cells hold cluster data: each is escaped ([`crate::escape::control_chars`]) before it is
/// measured, so a newline or an escape sequence in a name cannot break or forge a row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escaped(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Untrusted text made safe for a terminal (one owner: [`crate::escape`]).
pub fn escaped(s: &str) -> String {
    crate::escape::control_chars(s).into_owned()
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map_or_else(|| "-".to_string(), time)
}

/// `3m12s`-style, whole seconds.
pub fn duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs))
        .to_string()
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "pending".into()],
                vec!["abcdef".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID      STATUS\na       pending\nabcdef  x\n");
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(duration(chrono::TimeDelta::seconds(192)), "3m12s");
        assert_eq!(duration(chrono::TimeDelta::seconds(-5)), "0s");
    }
}
