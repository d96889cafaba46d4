//! The prompt: a built-in template filled from the incident. It tells the agent what happened,
//! that it may only read the cluster, and exactly where and in what shape to write its report.

use std::fmt::Write as _;
use std::path::Path;

use crate::incident::{FaultOccurrence, Incident};

/// Occurrences listed inline; the rest are in `incident.json`.
const OCCURRENCES_IN_PROMPT: usize = 10;
/// Longest description quoted (the fault context is free text from the cluster).
const MAX_CONTEXT_CHARS: usize = 4000;
/// The report's sections, in order. The reporting side may rely on these headings.
pub const REPORT_SECTIONS: [&str; 5] = [
    "Summary",
    "Root Cause",
    "Evidence",
    "Recommended Actions",
    "Confidence",
];

/// Renders the prompt for one incident. `appended_instructions` (the system prompt file) is added
/// as a last section, for agents that have no separate system-prompt option.
pub fn render(
    incident: &Incident,
    occurrences: &[FaultOccurrence],
    workspace: &Path,
    report_file: &Path,
    appended_instructions: Option<&str>,
) -> String {
    let mut p = String::with_capacity(4096);
    let resource = match &incident.namespace {
        Some(ns) => format!("{} {ns}/{}", incident.resource_kind, incident.resource_name),
        None => format!("{} {}", incident.resource_kind, incident.resource_name),
    };
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        p,
        "You are the on-call triage engineer for the Kubernetes cluster `{}`. A fault was \
         detected there. Find out why it happened and write a report. Investigate only: do not \
         try to fix anything.\n",
        incident.cluster
    );
    let _ = writeln!(p, "## The fault\n");
    let _ = writeln!(p, "- Incident: `{}`", incident.id);
    let _ = writeln!(
        p,
        "- Fault: {} (severity: {})",
        incident.fault_type, incident.severity
    );
    let _ = writeln!(
        p,
        "- Resource: {resource} (uid `{}`)",
        incident.resource_uid
    );
    let _ = writeln!(
        p,
        "- Seen {} time(s), first at {}, last at {}",
        incident.occurrences,
        incident.first_seen.to_rfc3339(),
        incident.last_seen.to_rfc3339()
    );
    let _ = writeln!(
        p,
        "- Description reported by the cluster:\n\n```text\n{}\n```\n",
        truncate(&incident.context, MAX_CONTEXT_CHARS)
    );
    if occurrences.len() > 1 {
        let _ = writeln!(p, "Most recent occurrences:\n");
        let start = occurrences.len().saturating_sub(OCCURRENCES_IN_PROMPT);
        for o in &occurrences[start..] {
            let line = truncate(&o.context, 300).replace('\n', " ");
            let _ = writeln!(p, "- {}: {line}", o.server_timestamp);
        }
        let _ = writeln!(p);
    }
    let _ = writeln!(
        p,
        "Your working directory is `{}`. It holds `incident.json` (the incident and every \
         occurrence recorded so far) and `cluster_permissions.json` (what your cluster \
         credentials were found to allow).\n",
        workspace.display()
    );
    let _ = writeln!(p, "## Rules\n");
    let _ = writeln!(
        p,
        "- Read-only. Use `kubectl` (already configured through the `KUBECONFIG` environment \
         variable) with read commands only: `get`, `describe`, `logs`, `events`, `top`, \
         `auth can-i`. Never create, apply, edit, patch, label, annotate, scale, rollout, \
         restart, delete, cordon, drain or `exec` into anything."
    );
    let _ = writeln!(
        p,
        "- Write files only inside your working directory; the report is the only file required."
    );
    let _ = writeln!(
        p,
        "- If a command is denied or fails, say so in the report and continue with what you can \
         read.\n"
    );
    let _ = writeln!(p, "## The report\n");
    let _ = writeln!(
        p,
        "Write a Markdown report to `output/investigation.md` (absolute path: `{}`) with a \
         title line and exactly these sections:\n",
        report_file.display()
    );
    let _ = writeln!(
        p,
        "- `## Summary`: two or three sentences: what is broken, since when, and the impact."
    );
    let _ = writeln!(
        p,
        "- `## Root Cause`: the most likely cause, and why you believe it."
    );
    let _ = writeln!(
        p,
        "- `## Evidence`: the commands you ran and the output lines that support the cause."
    );
    let _ = writeln!(
        p,
        "- `## Recommended Actions`: concrete steps for a human operator, most important first."
    );
    let _ = writeln!(
        p,
        "- `## Confidence`: high, medium or low, with what would raise it.\n"
    );
    let _ = writeln!(
        p,
        "Write the report even when you could not find the cause: then say what you checked and \
         what remains unknown."
    );
    if let Some(extra) = appended_instructions
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(p, "\n## Additional instructions\n\n{extra}");
    }
    p
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}… (truncated)", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::IncidentStatus;
    use chrono::Utc;
    use uuid::Uuid;

    fn incident() -> Incident {
        Incident {
            id: Uuid::nil(),
            cluster: "prod-eu".into(),
            fault_id: "670b5093e8ce7fc6".into(),
            fault_type: "CrashLoop".into(),
            severity: "critical".into(),
            namespace: Some("shop".into()),
            resource_kind: "Pod".into(),
            resource_name: "cart-7d9f".into(),
            resource_uid: "3f0c1a52".into(),
            context: "Container entered CrashLoopBackOff state, restart count: 3".into(),
            status: IncidentStatus::Running,
            failure_reason: None,
            occurrences: 1,
            first_seen: Utc::now(),
            last_seen: Utc::now(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            attempt: 1,
            lease_owner: None,
            lease_expires_at: None,
            resolved_at: None,
        }
    }

    #[test]
    fn names_the_fault_the_rules_and_every_report_section() {
        let p = render(
            &incident(),
            &[],
            Path::new("/ws/x"),
            Path::new("/ws/x/output/investigation.md"),
            Some("Answer in French."),
        );
        assert!(p.contains("`prod-eu`"));
        assert!(p.contains("CrashLoop (severity: critical)"));
        assert!(p.contains("Pod shop/cart-7d9f"));
        assert!(p.contains("restart count: 3"));
        assert!(p.contains("Read-only"));
        assert!(p.contains("/ws/x/output/investigation.md"));
        for section in REPORT_SECTIONS {
            assert!(p.contains(&format!("`## {section}`")), "{section}");
        }
        assert!(p.ends_with("## Additional instructions\n\nAnswer in French.\n"));
    }

    #[test]
    fn truncates_long_context_on_a_char_boundary() {
        assert_eq!(truncate("ééé", 2), "éé… (truncated)");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
