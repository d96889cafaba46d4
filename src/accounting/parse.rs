//! Reading an agent CLI's own account of its run from the end of its output.
//!
//! Every preset asks its CLI for JSON, and each prints a different shape:
//! - Claude Code (`--output-format json`): one object `{"type":"result", "is_error",
//!   "num_turns", "total_cost_usd", "usage": {input_tokens, output_tokens,
//!   cache_read_input_tokens, cache_creation_input_tokens}, "modelUsage": {<model>: {..}}}`.
//! - Codex (`exec --json`): JSON lines; each `{"type":"turn.completed","usage":{input_tokens,
//!   cached_input_tokens, cache_write_input_tokens, output_tokens, reasoning_output_tokens}}`
//!   counts one turn (input includes the cached part, output the reasoning part);
//!   `turn.failed` / `error` events mark an error. Older versions sent
//!   `{"msg":{"type":"token_count","info":{"total_token_usage":{..}}}}`.
//! - Gemini CLI (`-o json`): one pretty-printed object `{"response", "stats": {"models":
//!   {<model>: {"api": {totalRequests}, "tokens": {prompt, candidates, cached, thoughts}}}},
//!   "error"?}` (prompt includes the cached part).
//! - Goose (`--output-format json`): a `metadata` (or `usage`) object with token counts, where
//!   its version prints one; no cost, no model.
//!
//! The shape is recognised, not assumed from the preset, so a `command` agent wrapping one of
//! these CLIs is accounted too. The log also holds stderr and anything else the agent printed:
//! only objects starting a line are considered, anything unparseable is skipped, and an output
//! with nothing recognisable gives an empty [`RunUsage`] (accounting unknown).

use serde_json::{Deserializer, Map, Value};

use super::{bounded_text, RunUsage, MAX_MODEL_LEN};

/// How much of the end of an agent's log is read for its final JSON: the result objects are
/// small, but Gemini's includes the whole response text and Codex prints one line per event.
pub const TAIL_BYTES: usize = 1024 * 1024;

/// Objects looked at in one output, newest kept: bounds the work on a hostile log.
const MAX_VALUES: usize = 20_000;

/// Token counts above this are nonsense, not usage (and would overflow sums).
const MAX_TOKENS: i64 = 1_000_000_000_000;
const MAX_COST_USD: f64 = 1_000_000.0;

/// The usage an agent's output reports, as far as it can be recognised. `output` is the tail of
/// the agent's log (it may start in the middle of a line or of a character).
pub fn parse_output(output: &[u8]) -> RunUsage {
    let text = String::from_utf8_lossy(output);
    let values = json_objects(&text);
    if let Some(result) = values.iter().rev().find(|v| is_claude_result(v)) {
        return claude(result);
    }
    if let Some(stats) = values
        .iter()
        .rev()
        .find(|v| v["stats"]["models"].is_object())
    {
        return gemini(stats);
    }
    let codex = codex(&values);
    if codex.has_tokens() || codex.agent_error.is_some() {
        return codex;
    }
    values.iter().rev().find_map(goose).unwrap_or_default()
}

/// Every JSON object that starts at the beginning of a line, in order.
fn json_objects(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let line_end = rest.find('\n').map_or(text.len(), |i| pos + i + 1);
        if rest.starts_with('{') {
            let mut values = Deserializer::from_str(rest).into_iter::<Value>();
            if let Some(Ok(value)) = values.next() {
                let consumed = values.byte_offset();
                if value.is_object() {
                    if out.len() == MAX_VALUES {
                        out.remove(0);
                    }
                    out.push(value);
                }
                // Skip past the object (it may span lines), to the next line start.
                let after = pos + consumed;
                pos = text[after..]
                    .find('\n')
                    .map_or(text.len(), |i| after + i + 1);
                continue;
            }
        }
        pos = line_end;
    }
    out
}

fn is_claude_result(v: &Value) -> bool {
    v["type"] == "result" && (v.get("usage").is_some() || v.get("total_cost_usd").is_some())
}

fn tokens(v: &Value) -> Option<i64> {
    v.as_i64().filter(|n| (0..=MAX_TOKENS).contains(n))
}

fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(
            a.unwrap_or(0)
                .saturating_add(b.unwrap_or(0))
                .min(MAX_TOKENS),
        ),
    }
}

fn model_name(name: &str) -> Option<String> {
    let name = bounded_text(name, MAX_MODEL_LEN);
    (!name.is_empty()).then_some(name)
}

/// The model that did most of the work: several can appear (a small model for titles).
fn main_model(models: &Map<String, Value>, weight: impl Fn(&Value) -> f64) -> Option<&str> {
    models
        .iter()
        .max_by(|a, b| weight(a.1).total_cmp(&weight(b.1)))
        .map(|(name, _)| name.as_str())
}

fn claude(v: &Value) -> RunUsage {
    let usage = &v["usage"];
    let model = v["modelUsage"].as_object().and_then(|m| {
        main_model(m, |u| {
            u["costUSD"].as_f64().unwrap_or(0.0) * 1e6 + u["outputTokens"].as_f64().unwrap_or(0.0)
        })
    });
    RunUsage {
        model: model.and_then(model_name),
        input_tokens: tokens(&usage["input_tokens"]),
        output_tokens: tokens(&usage["output_tokens"]),
        cache_read_tokens: tokens(&usage["cache_read_input_tokens"]),
        cache_write_tokens: tokens(&usage["cache_creation_input_tokens"]),
        turns: tokens(&v["num_turns"]),
        cost_usd: v["total_cost_usd"]
            .as_f64()
            .filter(|c| c.is_finite() && (0.0..=MAX_COST_USD).contains(c)),
        agent_error: v["is_error"].as_bool(),
        ..RunUsage::default()
    }
}

fn gemini(v: &Value) -> RunUsage {
    let mut usage = RunUsage::default();
    let Some(models) = v["stats"]["models"].as_object() else {
        return usage;
    };
    for m in models.values() {
        let t = &m["tokens"];
        let cached = tokens(&t["cached"]);
        // Newer versions report the uncached part as `input`; older ones only `prompt`.
        let input = tokens(&t["input"])
            .or_else(|| tokens(&t["prompt"]).map(|p| p.saturating_sub(cached.unwrap_or(0)).max(0)));
        usage.input_tokens = add(usage.input_tokens, input);
        usage.output_tokens = add(
            usage.output_tokens,
            add(tokens(&t["candidates"]), tokens(&t["thoughts"])),
        );
        usage.cache_read_tokens = add(usage.cache_read_tokens, cached);
        usage.turns = add(usage.turns, tokens(&m["api"]["totalRequests"]));
    }
    usage.model =
        main_model(models, |m| m["tokens"]["total"].as_f64().unwrap_or(0.0)).and_then(model_name);
    usage.agent_error = Some(!v["error"].is_null());
    usage
}

fn codex(values: &[Value]) -> RunUsage {
    let mut usage = RunUsage::default();
    let mut legacy_total = None;
    for v in values {
        match v["type"].as_str() {
            Some("turn.completed") => {
                let u = &v["usage"];
                let cached = tokens(&u["cached_input_tokens"]);
                let input = tokens(&u["input_tokens"])
                    .map(|i| i.saturating_sub(cached.unwrap_or(0)).max(0));
                usage.input_tokens = add(usage.input_tokens, input);
                usage.output_tokens = add(usage.output_tokens, tokens(&u["output_tokens"]));
                usage.cache_read_tokens = add(usage.cache_read_tokens, cached);
                usage.cache_write_tokens = add(
                    usage.cache_write_tokens,
                    tokens(&u["cache_write_input_tokens"]),
                );
                usage.turns = add(usage.turns, Some(1));
                usage.agent_error.get_or_insert(false);
            }
            Some("turn.failed") | Some("error") => usage.agent_error = Some(true),
            _ => {}
        }
        let msg = &v["msg"];
        if msg["type"] == "token_count" && msg["info"]["total_token_usage"].is_object() {
            legacy_total = Some(&msg["info"]["total_token_usage"]);
        }
    }
    if let (false, Some(u)) = (usage.has_tokens(), legacy_total) {
        let cached = tokens(&u["cached_input_tokens"]);
        usage.input_tokens =
            tokens(&u["input_tokens"]).map(|i| i.saturating_sub(cached.unwrap_or(0)).max(0));
        usage.output_tokens = tokens(&u["output_tokens"]);
        usage.cache_read_tokens = cached;
    }
    usage
}

fn goose(v: &Value) -> Option<RunUsage> {
    let m = ["metadata", "usage"].iter().map(|k| &v[*k]).find(|m| {
        m.is_object() && (m.get("input_tokens").is_some() || m.get("total_tokens").is_some())
    })?;
    let input = tokens(&m["input_tokens"]);
    let output = tokens(&m["output_tokens"]);
    let usage = RunUsage {
        // Only a total: count it as input, the cheaper and more common kind, rather than lose it.
        input_tokens: input.or_else(|| {
            output
                .is_none()
                .then(|| tokens(&m["total_tokens"]))
                .flatten()
        }),
        output_tokens: output,
        ..RunUsage::default()
    };
    usage.has_tokens().then_some(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_result_among_stderr_noise() {
        let log = "--- nightcrier: attempt 1 started ---\nwarning: something {not json}\n\
            {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"num_turns\":3,\
            \"total_cost_usd\":0.0421,\"usage\":{\"input_tokens\":120,\"cache_creation_input_tokens\":900,\
            \"cache_read_input_tokens\":4000,\"output_tokens\":300},\"modelUsage\":{\
            \"claude-haiku-4-5\":{\"outputTokens\":10,\"costUSD\":0.0001},\
            \"claude-sonnet-4-5-20250929\":{\"outputTokens\":290,\"costUSD\":0.042}}}\n";
        let u = parse_output(log.as_bytes());
        assert_eq!(u.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (Some(120), Some(300), Some(4000), Some(900))
        );
        assert_eq!(
            (u.turns, u.cost_usd, u.agent_error),
            (Some(3), Some(0.0421), Some(false))
        );
    }

    #[test]
    fn codex_turns_are_summed_and_cached_input_split_out() {
        let log = "{\"type\":\"thread.started\",\"thread_id\":\"t\"}\n{\"type\":\"turn.started\"}\n\
            {\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":1000,\"cached_input_tokens\":400,\"output_tokens\":50}}\n\
            {\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":10,\"cached_input_tokens\":0,\"output_tokens\":5}}\n";
        let u = parse_output(log.as_bytes());
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.turns
            ),
            (Some(610), Some(55), Some(400), Some(2))
        );
        assert_eq!(
            (u.model, u.cost_usd, u.agent_error),
            (None, None, Some(false))
        );
    }

    #[test]
    fn gemini_pretty_printed_stats() {
        let log = "Loaded cached credentials.\n{\n  \"response\": \"done {\\n}\",\n  \"stats\": {\n    \"models\": {\n      \
            \"gemini-2.5-pro\": {\"api\": {\"totalRequests\": 3}, \"tokens\": {\"prompt\": 5000, \"candidates\": 200, \
            \"total\": 5300, \"cached\": 1000, \"thoughts\": 100}}\n    }\n  }\n}\n";
        let u = parse_output(log.as_bytes());
        assert_eq!(u.model.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.turns
            ),
            (Some(4000), Some(300), Some(1000), Some(3))
        );
        assert_eq!(u.agent_error, Some(false));
    }

    #[test]
    fn no_json_hostile_numbers_and_cut_tails_give_unknown_or_bounded() {
        assert_eq!(parse_output(b"plain text only\n"), RunUsage::default());
        assert_eq!(
            parse_output(b"{\"type\":\"result\",\"usage\":{\"inp"),
            RunUsage::default()
        );
        let u = parse_output(
            b"{\"type\":\"result\",\"total_cost_usd\":-5,\"num_turns\":1e30,\"usage\":{\"input_tokens\":-1}}\n",
        );
        assert_eq!((u.cost_usd, u.turns, u.input_tokens), (None, None, None));
        let long = format!(
            "{{\"type\":\"result\",\"usage\":{{}},\"modelUsage\":{{\"{}\":{{}}}}}}\n",
            "m".repeat(10_000)
        );
        assert_eq!(
            parse_output(long.as_bytes()).model.unwrap().len(),
            MAX_MODEL_LEN
        );
    }
}
