//! Issue #13, item 7: one agent cannot fill the disk through `agent.log`. A real agent script
//! writes 20 MB as fast as it can; the log keeps the head and the tail within
//! `agent.max_log_bytes` and says how much was cut.

use crate::support::agent as agent_support;

use std::fs;

use agent_support::{config, incident, occurrences, script_agent};
use nightcrier::agent::AgentRunner;
use nightcrier::incident::IncidentStatus;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_flooding_agent_gets_a_capped_log_with_its_head_tail_and_the_cut_marked() {
    let root = tempfile::tempdir().unwrap();
    let mut agent = script_agent("log_flood.sh");
    let cap: u64 = 1024 * 1024;
    agent.max_log_bytes = cap;
    let config = config(root.path(), agent);
    let inc = incident("prod");
    let runner = AgentRunner::new(&config);
    let report = runner
        .run(
            &inc,
            &occurrences(&inc, 1),
            1,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );

    let log = fs::read(&report.log_path).unwrap();
    assert!(
        log.len() as u64 <= cap,
        "agent.log is {} bytes, cap {cap}",
        log.len()
    );
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.starts_with("--- nightcrier: attempt 1 of incident"),
        "{}",
        &text[..200]
    );
    assert!(text.contains("FIRST-LINE-OF-AGENT-OUTPUT"));
    assert!(text.trim_end().ends_with("LAST-LINE-OF-AGENT-OUTPUT"));
    let marker = text
        .lines()
        .find(|l| l.contains("bytes of agent output cut here"))
        .expect("a line saying what was cut");
    let cut: u64 = marker
        .trim_start_matches("--- nightcrier: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // 20,000,000 x's, the two lines and a newline were written; all but what is kept was cut.
    assert!(cut > 20_000_000 - cap && cut < 20_000_000, "cut {cut}");
    assert!(
        marker.contains(&format!("agent.max_log_bytes: {cap}")),
        "{marker}"
    );

    // A second attempt appends within the same cap.
    let report = runner
        .run(
            &inc,
            &occurrences(&inc, 1),
            2,
            CancellationToken::new(),
            &|_| {},
        )
        .await;
    assert_eq!(
        report.outcome.status,
        IncidentStatus::Succeeded,
        "{report:?}"
    );
    let len = fs::metadata(&report.log_path).unwrap().len();
    assert!(
        len <= cap + 1024,
        "agent.log is {len} bytes after two attempts, cap {cap}"
    );
}
