//! The Slack messages: `text` (the notification preview and fallback) plus Block Kit `blocks`.
//!
//! Everything that comes from a cluster or an agent is escaped for Slack's mrkdwn (`&`, `<`, `>`),
//! so a resource name or a report cannot forge links or mentions.

use std::time::Duration;

use serde_json::{json, Value};

use super::breaker::FailedRun;
use super::summary::Summary;
use crate::incident::Incident;

/// Where a message points to; each is left out when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The incident's page on the HTTP endpoint.
    pub page: Option<String>,
    /// The rendered report on the HTTP endpoint.
    pub report: Option<String>,
    /// The uploaded HTML report in object storage.
    pub artifact: Option<String>,
}

impl Links {
    /// Links on the HTTP endpoint at `base_url` (no trailing slash needed).
    pub fn for_incident(base_url: Option<&str>, incident: &Incident) -> Self {
        let base = base_url.map(|b| b.trim_end_matches('/'));
        Self {
            page: base.map(|b| format!("{b}/incidents/{}", incident.id)),
            report: base.map(|b| format!("{b}/incidents/{}/report", incident.id)),
            artifact: None,
        }
    }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn resource(i: &Incident) -> String {
    format!("{}/{}", i.resource_kind, i.resource_name)
}

/// How long the run took, to the second (`3m 12s`); `None` before it started or finished.
pub fn run_duration(i: &Incident) -> Option<Duration> {
    let took = i.finished_at? - i.started_at?;
    took.to_std().ok().map(|d| Duration::from_secs(d.as_secs()))
}

pub fn success(i: &Incident, summary: &Summary, links: &Links) -> Value {
    let ns = i.namespace.as_deref().unwrap_or("-");
    let headline = summary
        .headline()
        .unwrap_or("(the report states no summary)");
    let duration = run_duration(i).map_or_else(
        || "-".to_string(),
        |d| humantime::format_duration(d).to_string(),
    );
    let text = format!(
        "Triage done: {} {} on {}/{}: {} (incident {})",
        i.fault_type,
        resource(i),
        i.cluster,
        ns,
        headline,
        crate::incident::short_id(i.id)
    );
    let field =
        |k: &str, v: &str| json!({ "type": "mrkdwn", "text": format!("*{k}*\n{}", escape(v)) });
    let mut summary_text = format!(
        "*{}*\n{}",
        if summary.root_cause.is_some() {
            "Root cause"
        } else {
            "Summary"
        },
        escape(headline)
    );
    if let Some(c) = &summary.confidence {
        summary_text.push_str(&format!("\n*Confidence:* {}", escape(c)));
    }
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text",
            "text": format!("Triage done: {} on {}", i.fault_type, i.cluster).chars().take(150).collect::<String>() } }),
        json!({ "type": "section", "fields": [
            field("Cluster", &i.cluster),
            field("Namespace", ns),
            field("Resource", &resource(i)),
            field("Fault", &i.fault_type),
            field("Severity", &i.severity),
            field("Occurrences", &i.occurrences.to_string()),
            field("Duration", &duration),
        ] }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": summary_text } }),
    ];
    if let Some(t) = i.resolved_at {
        blocks.push(json!({ "type": "context", "elements": [
            { "type": "mrkdwn", "text": format!("The alert resolved at {} while the agent ran.", t.to_rfc3339()) } ] }));
    }
    let mut link_parts = Vec::new();
    if let Some(r) = &links.report {
        link_parts.push(format!("<{r}|Report>"));
    }
    if let Some(p) = &links.page {
        link_parts.push(format!("<{p}|Incident>"));
    }
    if let Some(a) = &links.artifact {
        link_parts.push(format!("<{a}|Archived report>"));
    }
    if !link_parts.is_empty() {
        blocks.push(json!({ "type": "context", "elements": [
            { "type": "mrkdwn", "text": link_parts.join(" · ") } ] }));
    }
    json!({ "text": escape(&text), "blocks": blocks })
}

/// Appends the cluster's `environment` and `labels` (operator configuration) as a context line.
pub fn add_cluster_context(msg: &mut Value, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let line = pairs
        .iter()
        .map(|(k, v)| format!("*{}:* {}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(" · ");
    if let Some(blocks) = msg.get_mut("blocks").and_then(Value::as_array_mut) {
        // After the header and the fields.
        let at = blocks.len().min(2);
        blocks.insert(
            at,
            json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": line }] }),
        );
    }
}

pub fn degraded(consecutive: u32, last: &[FailedRun], base_url: Option<&str>) -> Value {
    let text = format!(
        "Triage degraded: the last {consecutive} agent runs failed. No per-incident messages until a run succeeds."
    );
    let mut lines = Vec::new();
    for run in last {
        let id = match base_url {
            Some(b) => format!(
                "<{}/incidents/{}|{}>",
                b.trim_end_matches('/'),
                run.incident_id,
                crate::incident::short_id(run.incident_id)
            ),
            None => crate::incident::short_id(run.incident_id),
        };
        lines.push(format!(
            "• {} on {}: {}",
            id,
            escape(&run.cluster),
            escape(&run.reason)
        ));
    }
    json!({
        "text": text,
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": "Triage degraded" } },
            { "type": "section", "text": { "type": "mrkdwn", "text": escape(&text) } },
            { "type": "section", "text": { "type": "mrkdwn",
                "text": format!("*Last reasons*\n{}", lines.join("\n")) } },
        ]
    })
}

pub fn recovered(failures: u32, i: &Incident) -> Value {
    let text = format!(
        "Triage recovered: an agent run succeeded ({} {} on {}) after {failures} failed runs.",
        i.fault_type,
        resource(i),
        i.cluster
    );
    json!({
        "text": escape(&text),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!(":white_check_mark: {}", escape(&text)) } },
        ]
    })
}

#[cfg(test)]
mod cluster_context_tests {
    use super::*;

    #[test]
    fn environment_and_labels_become_one_escaped_context_line() {
        let mut msg = json!({"text": "t", "blocks": [{"type": "header"}, {"type": "section"}, {"type": "section"}]});
        add_cluster_context(
            &mut msg,
            &[
                ("environment".into(), "prod".into()),
                ("team".into(), "a<b".into()),
            ],
        );
        let blocks = msg["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks[2]["type"], "context");
        assert_eq!(
            blocks[2]["elements"][0]["text"],
            "*environment:* prod · *team:* a&lt;b"
        );
    }
}
