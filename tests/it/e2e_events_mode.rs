//! `mcp.subscribe_mode: events` end to end: the real binary subscribes in events mode to a
//! simulator that speaks it (logger `kubernetes/events`), Warning events become incidents keyed
//! by reason + involved object + message pattern, repeats attach, agents run them, and the
//! cluster's `environment` and `labels` reach the agent's prompt, its `incident.json` and
//! `incidents show`.

use crate::support::e2e as e2e_support;

use e2e_support::*;
use nightcrier::fault::ResourceRef;
use nightcrier::mcp::events::event_fault_id;
use serde_yaml_ng::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_events_become_incidents_in_events_mode() {
    let sim = simulator("alpha").await;
    let rig = Rig::sqlite(&[&sim], &format!("{WRITE_REPORT}\n"));
    let mut doc: Value =
        serde_yaml_ng::from_str(&rig.setup.to_yaml(&rig.workspace_root())).unwrap();
    let cluster = &mut doc["clusters"][0];
    cluster["mcp"]["subscribe_mode"] = Value::from("events");
    cluster["environment"] = Value::from("staging");
    cluster["labels"] = serde_yaml_ng::from_str("{team: payments}").unwrap();
    std::fs::write(rig.config_path(), serde_yaml_ng::to_string(&doc).unwrap()).unwrap();

    let _run = rig.start_run();
    subscribed(&sim).await;
    let a = emit(&sim, 0).await;
    let b = emit(&sim, 1).await;
    // The same event again: same reason, object and message pattern, so it attaches.
    emit(&sim, 0).await;

    let store = rig.store().await;
    let finished = all_finished(&store, 2, DEADLINE).await;
    let incidents = all_incidents(&store).await;
    assert_eq!(incidents.len(), 2, "{incidents:#?}");
    for spec in [&a, &b] {
        let object = ResourceRef {
            api_version: spec.api_version.clone(),
            kind: spec.kind.clone(),
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            uid: spec.uid.clone(),
        };
        let inc = incidents
            .iter()
            .find(|i| i.resource_name == spec.name && i.context == spec.context)
            .expect("an incident per event, its message as context");
        // A Kubernetes event reason, not the fault detector's type: only events mode says so.
        assert_ne!(inc.fault_type, spec.fault_type);
        assert_eq!(inc.severity, "warning");
        assert_eq!(
            inc.fault_id,
            event_fault_id("alpha", &inc.fault_type, &object, &spec.context)
        );
    }
    wait_until("the repeated event attached", DEADLINE, || async {
        all_incidents(&store)
            .await
            .into_iter()
            .find(|i| i.resource_name == a.name && i.context == a.context && i.occurrences == 2)
    })
    .await;

    let prompt = std::fs::read_to_string(
        rig.workspace_root()
            .join(finished[0].id.to_string())
            .join("prompt.md"),
    )
    .unwrap();
    assert!(
        prompt.contains("## The cluster")
            && prompt.contains("- Environment: staging")
            && prompt.contains("- team: payments"),
        "{prompt}"
    );

    // The incident as the agent reads it, and as `incidents show` prints it, carry them too.
    let incident_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            rig.workspace_root()
                .join(finished[0].id.to_string())
                .join("incident.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(incident_file["cluster_environment"], "staging");
    assert_eq!(incident_file["cluster_labels"]["team"], "payments");
    let id = finished[0].id.to_string();
    let show = rig.cli(&["incidents", "show", &id, "--json"]).await;
    assert_eq!(show.code(), Some(0), "{}", show.stderr);
    let shown = show.json();
    assert_eq!(shown["cluster_environment"], "staging");
    assert_eq!(shown["cluster_labels"]["team"], "payments");
    let text = rig.cli(&["incidents", "show", &id]).await;
    assert!(
        text.stdout.contains("environment") && text.stdout.contains("team=payments"),
        "{}",
        text.stdout
    );
}
