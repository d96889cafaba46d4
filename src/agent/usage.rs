//! A finished run's usage: the tail of its log, parsed by `accounting`, priced from the table.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::accounting::{self, Prices, RunUsage};

/// What the agent whose output is in `log` reported about itself, priced when it gave tokens
/// only. An unreadable log means unknown accounting, never a failed run.
pub(super) fn of_run(log: &Path, prices: &Prices, configured_model: Option<&str>) -> RunUsage {
    let usage = match read_tail(log, accounting::TAIL_BYTES) {
        Ok(tail) => accounting::parse_output(&tail),
        Err(e) => {
            tracing::debug!(log = %log.display(), error = %e, "cannot read the agent log for accounting");
            RunUsage::default()
        }
    };
    usage.priced(prices, configured_model)
}

/// The last `max` bytes of the file (all of it when shorter): the final JSON is at the end, and
/// a chatty agent's log can be large.
fn read_tail(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut tail = Vec::new();
    file.take(max).read_to_end(&mut tail)?;
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tail_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let result = "{\"type\":\"result\",\"num_turns\":2,\"total_cost_usd\":0.5,\"usage\":{}}\n";
        let mut text = "x".repeat(3 * accounting::TAIL_BYTES);
        text.push('\n');
        text.push_str(result);
        std::fs::write(&log, &text).unwrap();
        let tail = read_tail(&log, 100).unwrap();
        assert_eq!(tail.len(), 100);
        let u = of_run(&log, &Prices::default(), Some("sonnet"));
        assert_eq!((u.turns, u.cost_usd), (Some(2), Some(0.5)));
        assert_eq!(u.accounting, accounting::Accounting::Reported);
        let missing = of_run(&dir.path().join("none"), &Prices::default(), None);
        assert_eq!(missing.accounting, accounting::Accounting::Unknown);
    }
}
