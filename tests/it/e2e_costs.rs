//! Cost accounting and a spend budget through the real binary: a stub agent prints Claude Code's
//! JSON result ($0.25 a run); with `budgets.max_spend_per_day_usd: 0.4` two runs go through and
//! the third incident stays pending with the reason. `costs`, `status`, `incidents list/show`
//! and `/metrics` show the spend.

use crate::support::e2e as e2e_support;

use std::time::Duration;

use e2e_support::*;
use nightcrier::incident::IncidentStatus;

const STUB: &str = r#"printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
echo 'some progress on stderr' >&2
echo '{"type":"result","subtype":"success","is_error":false,"num_turns":4,"result":"done","total_cost_usd":0.25,"usage":{"input_tokens":1000,"cache_creation_input_tokens":10,"cache_read_input_tokens":5000,"output_tokens":200},"modelUsage":{"claude-sonnet-5":{"outputTokens":200,"costUSD":0.25}}}'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_is_accounted_shown_and_held_to_its_daily_budget() {
    let sim = simulator("costs").await;
    let rig = Rig::sqlite(&[&sim], STUB);
    let mut config = std::fs::read_to_string(rig.config_path()).unwrap();
    config.push_str("budgets:\n  max_spend_per_day_usd: 0.4\n");
    std::fs::write(rig.config_path(), config).unwrap();
    let mut run = rig.start_run();
    let addr = run.http_addr().await;
    subscribed(&sim).await;

    // One cluster runs one agent at a time, so each run is accounted before the next claim.
    for i in [0, 1, 3] {
        emit(&sim, i).await;
    }
    let store = rig.store().await;
    let held = wait_until(
        "two runs done and one held",
        Duration::from_secs(60),
        || async {
            let all = all_incidents(&store).await;
            let done = all
                .iter()
                .filter(|i| i.status == IncidentStatus::Succeeded)
                .count();
            let held = all
                .iter()
                .find(|i| i.status == IncidentStatus::Pending && i.failure_reason.is_some());
            (all.len() == 3 && done == 2)
                .then(|| held.cloned())
                .flatten()
        },
    )
    .await;
    let reason = held.failure_reason.clone().unwrap();
    assert!(
        reason.starts_with("daily spend budget of all clusters reached ($0.50 of $0.40)"),
        "{reason}"
    );

    let costs = rig.cli(&["costs", "--json"]).await;
    assert_eq!(costs.code(), Some(0), "{}", costs.stderr);
    let costs = costs.json();
    assert_eq!(costs["total"]["runs"], 2, "{costs}");
    assert_eq!(costs["total"]["cost_usd"], 0.5, "{costs}");
    assert_eq!(costs["total"]["input_tokens"], 2000, "{costs}");
    assert_eq!(costs["groups"][0]["key"], "costs", "{costs}");
    let by_model = rig.cli(&["costs", "--by", "model"]).await;
    assert!(
        by_model.stdout.contains("claude-sonnet-5"),
        "{}",
        by_model.stdout
    );

    let status = rig.cli(&["status", "--json"]).await.json();
    assert_eq!(status["spend"]["today_total"]["cost_usd"], 0.5, "{status}");
    let text = rig.cli(&["status"]).await.stdout;
    assert!(text.contains("agent spend"), "{text}");

    let list = rig.cli(&["incidents", "list"]).await.stdout;
    assert!(list.lines().next().unwrap().ends_with("COST"), "{list}");
    assert!(list.contains("$0.2500"), "{list}");
    let done = all_incidents(&store)
        .await
        .into_iter()
        .find(|i| i.status == IncidentStatus::Succeeded)
        .unwrap();
    let show = rig
        .cli(&["incidents", "show", &done.id.to_string(), "--json"])
        .await
        .json();
    let usage = &show["agent_runs"][0]["usage"];
    assert_eq!(usage["accounting"], "reported", "{show}");
    assert_eq!(usage["cache_read_tokens"], 5000, "{show}");
    assert_eq!(usage["turns"], 4, "{show}");
    let shown = rig
        .cli(&["incidents", "show", &held.id.to_string()])
        .await
        .stdout;
    assert!(shown.contains("daily spend budget"), "{shown}");

    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("nightcrier_agent_cost_usd_total{cluster=\"costs\"} 0.5"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("nightcrier_agent_tokens_total{cluster=\"costs\",kind=\"cache_read\"} 10000"),
        "{metrics}"
    );
    run.signal(nix::sys::signal::Signal::SIGTERM);
    run.wait_exit(Duration::from_secs(30)).await;
}
