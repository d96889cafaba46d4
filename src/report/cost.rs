//! A run's usage as the report page and the Slack message show it.

use serde_json::Value;

use crate::accounting::{format_usd, RunUsage};

/// `(label, value)` lines for the page header and the message fields: cost (with where it comes
/// from), tokens, model and turns. Empty when the run is not accounted.
pub fn usage_rows(usage: Option<&RunUsage>) -> Vec<(&'static str, String)> {
    let Some(u) = usage else {
        return Vec::new();
    };
    let n = |v: Option<i64>| v.map_or_else(|| "?".into(), |v| v.to_string());
    let cost = match u.cost_usd {
        Some(_) => format!("{} ({})", format_usd(u.cost_usd), u.accounting),
        None => format!("unknown ({})", u.accounting),
    };
    let mut rows = vec![("Agent cost", cost)];
    if u.has_tokens() {
        rows.push((
            "Tokens",
            format!(
                "{} in, {} out, {} cache read, {} cache write",
                n(u.input_tokens),
                n(u.output_tokens),
                n(u.cache_read_tokens),
                n(u.cache_write_tokens)
            ),
        ));
    }
    if let Some(m) = &u.model {
        rows.push(("Model", m.clone()));
    }
    if let Some(t) = u.turns {
        rows.push(("Turns", t.to_string()));
    }
    rows
}

/// Appends the cost and token lines to the first `fields` section of a Slack message (Slack
/// allows ten fields per section; the success message has seven).
pub fn add_to_message(message: &mut Value, usage: Option<&RunUsage>) {
    let Some(fields) = message["blocks"]
        .as_array_mut()
        .and_then(|blocks| blocks.iter_mut().find_map(|b| b["fields"].as_array_mut()))
    else {
        return;
    };
    for (k, v) in usage_rows(usage).into_iter().take(2) {
        if fields.len() >= 10 {
            break;
        }
        fields.push(serde_json::json!({
            "type": "mrkdwn",
            "text": format!("*{k}*\n{}", super::message::escape(&v)),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Accounting;

    #[test]
    fn rows_and_message_fields() {
        assert!(usage_rows(None).is_empty());
        let u = RunUsage {
            accounting: Accounting::Reported,
            model: Some("claude-sonnet-4-5".into()),
            input_tokens: Some(10),
            output_tokens: Some(20),
            turns: Some(3),
            cost_usd: Some(0.25),
            ..RunUsage::default()
        };
        let rows = usage_rows(Some(&u));
        assert_eq!(rows[0], ("Agent cost", "$0.2500 (reported)".to_string()));
        assert_eq!(rows[1].1, "10 in, 20 out, ? cache read, ? cache write");
        let mut msg =
            serde_json::json!({"blocks": [{"type": "header"}, {"type": "section", "fields": []}]});
        add_to_message(&mut msg, Some(&u));
        let fields = msg["blocks"][1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 2);
        assert!(fields[0]["text"].as_str().unwrap().contains("$0.2500"));
    }
}
