//! Accounting parsed from outputs captured from the real agent CLIs (tests/fixtures/agent-output).
//!
//! `claude.json`, `codex.jsonl` and `gemini.json` are the final stdout of the real Claude Code,
//! Codex and Gemini CLIs run against scripted fake model APIs on loopback (captured by
//! `tests/agent_mcp_cli.rs`, branch agent-mcp). `claude-cache-tokens.json` is Claude Code's stdout
//! from `tests/agent_claude_cli.rs` (captured with `NIGHTCRIER_CAPTURE_AGENT_OUTPUT=<dir>`), whose
//! fake reports cache reads and writes: 50 input, 1000 cache-read, 200 cache-write and 40 output
//! tokens per request, two requests.

use std::path::PathBuf;

use nightcrier::accounting::{parse_output, Accounting, ModelPrice, Prices, RunUsage};

/// As in agent.log: nightcrier's header line, then the CLI's output.
fn log_of(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-output")
        .join(name);
    let mut log = b"--- nightcrier: attempt 1 of incident x started: agent ---\n".to_vec();
    log.extend(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    log
}

fn prices() -> Prices {
    let p = |input, output, cache_read| ModelPrice {
        input,
        output,
        cache_read,
        cache_write: 0.0,
    };
    Prices::from_map([
        ("gpt-5".to_string(), p(1.25, 10.0, 0.125)),
        ("gemini-2.5-pro".to_string(), p(1.25, 10.0, 0.31)),
    ])
}

#[test]
fn claude_code_reports_its_own_cost() {
    let usage = parse_output(&log_of("claude.json")).priced(&prices(), Some("sonnet"));
    assert_eq!(
        usage,
        RunUsage {
            accounting: Accounting::Reported,
            model: Some("claude-sonnet-5".into()),
            input_tokens: Some(7350),
            output_tokens: Some(636),
            cache_read_tokens: Some(35400),
            cache_write_tokens: Some(0),
            turns: Some(3),
            cost_usd: Some(0.04221),
            agent_error: Some(false),
        }
    );
    let cached = parse_output(&log_of("claude-cache-tokens.json")).priced(&prices(), None);
    assert_eq!(
        (
            cached.input_tokens,
            cached.output_tokens,
            cached.cache_read_tokens,
            cached.cache_write_tokens,
            cached.turns,
            cached.cost_usd,
        ),
        (
            Some(100),
            Some(80),
            Some(2000),
            Some(400),
            Some(2),
            Some(0.0036)
        )
    );
}

#[test]
fn codex_tokens_are_priced_from_the_table() {
    let usage = parse_output(&log_of("codex.jsonl")).priced(&prices(), Some("gpt-5"));
    assert_eq!(
        (
            usage.accounting,
            usage.model.as_deref(),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.turns,
            usage.agent_error,
        ),
        (
            Accounting::Computed,
            Some("gpt-5"),
            Some(17490 - 12288),
            Some(540),
            Some(12288),
            Some(0),
            Some(1),
            Some(false)
        )
    );
    let expected = (5202.0 * 1.25 + 540.0 * 10.0 + 12288.0 * 0.125) / 1e6;
    assert!(
        (usage.cost_usd.unwrap() - expected).abs() < 1e-12,
        "{usage:?}"
    );
    // Without a price for the model the tokens are kept and the cost is unknown.
    let unpriced = parse_output(&log_of("codex.jsonl")).priced(&Prices::default(), Some("gpt-5"));
    assert_eq!(
        (unpriced.accounting, unpriced.cost_usd),
        (Accounting::TokensOnly, None)
    );
}

#[test]
fn gemini_stats_are_summed_and_priced() {
    let usage = parse_output(&log_of("gemini.json")).priced(&prices(), None);
    assert_eq!(
        (
            usage.accounting,
            usage.model.as_deref(),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.turns,
            usage.agent_error,
        ),
        (
            Accounting::Computed,
            Some("gemini-2.5-pro"),
            Some(8316),
            Some(570 + 288),
            Some(6144),
            Some(3),
            Some(false)
        )
    );
    let expected = (8316.0 * 1.25 + 858.0 * 10.0 + 6144.0 * 0.31) / 1e6;
    assert!(
        (usage.cost_usd.unwrap() - expected).abs() < 1e-12,
        "{usage:?}"
    );
}
