//! A run's accounting read from the agent's own output in `logs/agent.log`: a stub agent (real
//! child process, real log file) prints Codex-shaped `exec --json` events among stderr noise;
//! the tokens are priced from the configured table.

use crate::support::agent as agent_support;

use std::fs;

use agent_support::*;
use nightcrier::accounting::{Accounting, ModelPrice};
use nightcrier::incident::IncidentStatus;

const SCRIPT: &str = r#"
printf '# Investigation\n\n## Summary\nA stub wrote this report, long enough to count as one.\n\n## Root Cause\nnone\n' > "$2"
echo 'codex: starting' >&2
echo '{"type":"thread.started","thread_id":"t-1"}'
echo '{"type":"turn.started"}'
echo '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"done"}}'
echo '{"type":"turn.completed","usage":{"input_tokens":12000,"cached_input_tokens":2000,"output_tokens":3000}}'
echo 'codex: done' >&2
"#;

#[tokio::test]
async fn tokens_from_the_log_are_priced_from_the_table() {
    let root = tempfile::tempdir().unwrap();
    let script = root.path().join("codex-like.sh");
    fs::write(&script, SCRIPT).unwrap();
    let mut agent = script_agent("unused");
    agent.command[1] = script.display().to_string();
    agent.model = Some("gpt-5-codex".into());
    let mut config = config(root.path(), agent);
    config.pricing.models.insert(
        "gpt-5".into(),
        ModelPrice {
            input: 1.0,
            output: 10.0,
            cache_read: 0.1,
            cache_write: 0.0,
        },
    );
    let incident = incident("prod");
    let report = run_once(&config, &incident).await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    let u = &report.usage;
    assert_eq!(u.accounting, Accounting::Computed, "{u:?}");
    assert_eq!(
        u.model.as_deref(),
        Some("gpt-5-codex"),
        "the configured model"
    );
    assert_eq!(
        (
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.turns
        ),
        (Some(10_000), Some(3_000), Some(2_000), Some(1))
    );
    // 10,000 × $1 + 3,000 × $10 + 2,000 × $0.10, per million.
    assert!((u.cost_usd.unwrap() - 0.0402).abs() < 1e-12, "{u:?}");
}

#[tokio::test]
async fn an_agent_that_prints_no_json_still_succeeds_with_unknown_accounting() {
    let root = tempfile::tempdir().unwrap();
    let config = config(root.path(), script_agent("success.sh"));
    let incident = incident("prod");
    let report = run_once(&config, &incident).await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    assert_eq!(report.usage.accounting, Accounting::Unknown);
    assert_eq!(report.usage.cost_usd, None);
}
