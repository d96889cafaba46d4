//! Accounting parsed from outputs captured from the real agent CLIs (tests/fixtures/agent-output).
//!
//! `claude.json` is Claude Code's stdout from `tests/agent_claude_cli.rs` against its scripted
//! fake Messages API (captured with `NIGHTCRIER_CAPTURE_AGENT_OUTPUT=<dir>`): the token counts are
//! the fake's (50 input, 1000 cache reads, 200 cache writes, 40 output per request, two requests)
//! and the cost is the CLI's own price for them.

use std::path::PathBuf;

use nightcrier::accounting::{parse_output, Accounting, Prices, RunUsage};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-output")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn claude_code_result_from_the_real_cli() {
    // As in agent.log: nightcrier's header line, then the CLI's stdout.
    let mut log = b"--- nightcrier: attempt 1 of incident x started: claude ---\n".to_vec();
    log.extend(fixture("claude.json"));
    let usage = parse_output(&log).priced(&Prices::default(), Some("sonnet"));
    assert_eq!(
        usage,
        RunUsage {
            accounting: Accounting::Reported,
            model: Some("claude-sonnet-5".into()),
            input_tokens: Some(100),
            output_tokens: Some(80),
            cache_read_tokens: Some(2000),
            cache_write_tokens: Some(400),
            turns: Some(2),
            cost_usd: Some(0.0036),
            agent_error: Some(false),
        }
    );
}
