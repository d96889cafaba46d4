//! Accounting: what one agent run cost, in tokens, turns and US dollars.
//!
//! This module owns the vocabulary of a run's usage ([`RunUsage`], [`Accounting`]), reading it
//! from what each agent CLI prints about itself ([`parse_output`]) and pricing tokens from the
//! operator's table ([`Prices`]). It must not do I/O beyond what it is handed (the agent module
//! reads the log's tail; the store records the result) and it trusts nothing it parses: every
//! number is range-checked and every text bounded.
//!
//! Token kinds are normalised across CLIs so that sums mean the same thing for every agent:
//! `input_tokens` are input tokens read at the full price (cache reads excluded, as Claude
//! reports them; Codex and Gemini include cached tokens in their input count, so those are
//! subtracted), `output_tokens` include reasoning ("thoughts") tokens.

mod parse;
mod prices;

use serde::{Deserialize, Serialize};

pub use parse::{parse_output, TAIL_BYTES};
pub use prices::{ModelPrice, Prices};

/// Longest model name kept; a CLI could print anything there.
pub const MAX_MODEL_LEN: usize = 128;

/// Where a run's cost figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// The CLI reported its own cost (Claude Code's `total_cost_usd`).
    Reported,
    /// Computed from reported tokens and the configured price of the model.
    Computed,
    /// Tokens were reported but the model has no configured price: cost unknown.
    TokensOnly,
    /// Nothing parseable: tokens and cost unknown.
    #[default]
    Unknown,
}

impl Accounting {
    pub const ALL: [Accounting; 4] = [
        Self::Reported,
        Self::Computed,
        Self::TokensOnly,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Computed => "computed",
            Self::TokensOnly => "tokens_only",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one agent run consumed, as far as its CLI said. `None` means "not reported".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunUsage {
    pub accounting: Accounting,
    pub model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    /// Model turns (Claude `num_turns`, Codex turns, Gemini API requests).
    pub turns: Option<i64>,
    pub cost_usd: Option<f64>,
    /// The CLI said its own run ended in error (Claude `is_error`, Gemini `error`). The outcome
    /// is still judged by the report; this is shown beside it.
    pub agent_error: Option<bool>,
}

impl RunUsage {
    /// True when any token count is known.
    pub fn has_tokens(&self) -> bool {
        self.tokens().iter().any(|(_, n)| n.is_some())
    }

    /// `(kind, count)` for the token metrics and tables: input, output, cache_read, cache_write.
    pub fn tokens(&self) -> [(&'static str, Option<i64>); 4] {
        [
            ("input", self.input_tokens),
            ("output", self.output_tokens),
            ("cache_read", self.cache_read_tokens),
            ("cache_write", self.cache_write_tokens),
        ]
    }

    /// Fills in the cost from `prices` when the CLI reported tokens only, and sets
    /// [`RunUsage::accounting`] accordingly. A reported cost is kept as reported.
    pub fn priced(mut self, prices: &Prices, configured_model: Option<&str>) -> Self {
        if self.model.is_none() {
            self.model = configured_model.map(|m| bounded_text(m, MAX_MODEL_LEN));
        }
        self.accounting = if self.cost_usd.is_some() {
            Accounting::Reported
        } else if !self.has_tokens() {
            Accounting::Unknown
        } else {
            match self.model.as_deref().and_then(|m| prices.for_model(m)) {
                Some(price) => {
                    self.cost_usd = Some(price.cost(&self));
                    Accounting::Computed
                }
                None => Accounting::TokensOnly,
            }
        };
        self
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, without control characters.
pub(crate) fn bounded_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Start of the UTC clock hour holding `t`: the window of the hourly budgets and `status`.
pub fn hour_start(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// Start of the UTC day holding `t`: the window of the daily spend budgets and `status`.
pub fn day_start(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::days(1)).unwrap_or(t)
}

/// `$0.0123`, `$1.23`, `-` when unknown: for tables and messages.
pub fn format_usd(cost: Option<f64>) -> String {
    match cost {
        None => "-".into(),
        Some(c) if c.abs() < 1.0 => format!("${c:.4}"),
        Some(c) => format!("${c:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pricing_marks_where_the_cost_comes_from() {
        let prices = Prices::from_map([(
            "gpt-5".to_string(),
            ModelPrice {
                input: 1.0,
                output: 10.0,
                cache_read: 0.1,
                cache_write: 0.0,
            },
        )]);
        let tokens = RunUsage {
            input_tokens: Some(1_000_000),
            output_tokens: Some(100_000),
            cache_read_tokens: Some(1_000_000),
            ..RunUsage::default()
        };
        let computed = tokens.clone().priced(&prices, Some("gpt-5-codex"));
        assert_eq!(computed.accounting, Accounting::Computed);
        assert_eq!(computed.model.as_deref(), Some("gpt-5-codex"));
        assert!((computed.cost_usd.unwrap() - 2.1).abs() < 1e-9);

        let unpriced = tokens.clone().priced(&prices, Some("gemini-2.5-pro"));
        assert_eq!(unpriced.accounting, Accounting::TokensOnly);
        assert_eq!(unpriced.cost_usd, None);

        let reported = RunUsage {
            cost_usd: Some(0.5),
            ..tokens
        }
        .priced(&prices, Some("gpt-5"));
        assert_eq!(reported.accounting, Accounting::Reported);
        assert_eq!(reported.cost_usd, Some(0.5));

        let nothing = RunUsage::default().priced(&prices, None);
        assert_eq!(nothing.accounting, Accounting::Unknown);
        for a in Accounting::ALL {
            assert_eq!(Accounting::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn texts_are_bounded_and_clean() {
        assert_eq!(bounded_text("a\u{1b}[31mb\nc", 100), "a[31mbc");
        assert_eq!(bounded_text("ééé", 5), "éé");
        assert_eq!(format_usd(Some(0.01234)), "$0.0123");
        assert_eq!(format_usd(Some(12.345)), "$12.35");
        assert_eq!(format_usd(None), "-");
    }
}
