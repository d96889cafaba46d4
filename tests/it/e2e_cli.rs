//! The operator's commands through the real binary, against a live `nightcrier run`: `tail`,
//! `incidents list/show/retry/cancel`, and `demo`.

use crate::support::e2e as e2e_support;

use std::collections::HashSet;

use e2e_support::*;
use nightcrier::incident::IncidentStatus;
use uuid::Uuid;

/// One stub for the CLI tests; what it does depends on the fault (read from incident.json).
/// `$D` is the rig directory, where the test drops the files the stub waits for.
const STUB: &str = r#"D="$INCIDENT_WORKSPACE/../.."
if grep -q NodeUnhealthy "$INCIDENT_FILE"; then
  # The blocker: holds the cluster until released.
  while [ ! -f "$D/release" ]; do sleep 0.05; done
elif grep -q DeploymentFailure "$INCIDENT_FILE"; then
  echo "tail-line-one"
  while [ ! -f "$D/go" ]; do sleep 0.05; done
  echo "tail-line-two"
elif grep -q JobFailure "$INCIDENT_FILE"; then
  echo "about to fail"
  exit 2
elif grep -q CrashLoop "$INCIDENT_FILE" && [ ! -f "$D/fixed" ]; then
  echo "broken until fixed"
  exit 2
fi
printf '# Report\n%0200d\n' 0 > "$REPORT_FILE"
"#;

/// Faults by type (see `FaultSpec::generate`): 0 CrashLoop, 1 PodCrash, 2 NodeUnhealthy,
/// 3 DeploymentFailure, 4 JobFailure.
const CRASHLOOP: usize = 0;
const PODCRASH: usize = 1;
const BLOCKER: usize = 2;
const TWO_LINES: usize = 3;
const FAILING: usize = 4;

async fn incident_of(rig: &Rig, cluster: &str, i: usize) -> nightcrier::incident::Incident {
    let store = rig.store().await;
    let fid = nightcrier::simulate::FaultSpec::generate(i, 7).fault_id(cluster);
    let found = wait_until(&format!("the incident of fault {i}"), DEADLINE, || async {
        all_incidents(&store)
            .await
            .into_iter()
            .find(|x| x.fault_id == fid)
    })
    .await;
    store.close().await;
    found
}

async fn wait_status(rig: &Rig, id: Uuid, want: IncidentStatus) {
    let store = rig.store().await;
    wait_until(&format!("incident {id} {want}"), DEADLINE, || async {
        (status_of(&store, id).await == want).then_some(())
    })
    .await;
    store.close().await;
}

fn tail(rig: &Rig, args: &[&str]) -> Proc {
    let mut all = vec!["tail"];
    all.extend_from_slice(args);
    let config = rig.config_path().display().to_string();
    all.extend_from_slice(&["--config", &config]);
    Proc::spawn(&all)
}

/// Waits until `p`'s output (stdout or stderr) contains `needle`.
async fn wait_output(p: &mut Proc, needle: &str, stderr: bool) {
    wait_until(&format!("{needle:?} from tail"), DEADLINE, || async {
        let out = if stderr { p.stderr() } else { p.stdout() };
        out.contains(needle).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_waits_follows_and_exits_with_the_final_status() {
    let sim = simulator("tl").await;
    let rig = Rig::sqlite(&[&sim], STUB);
    let _run = rig.start_run();
    subscribed(&sim).await;

    // A blocker holds the cluster, so the next incident stays pending.
    emit(&sim, BLOCKER).await;
    let blocker = incident_of(&rig, "tl", BLOCKER).await;
    wait_status(&rig, blocker.id, IncidentStatus::Running).await;
    emit(&sim, TWO_LINES).await;
    let two = incident_of(&rig, "tl", TWO_LINES).await;
    assert_eq!(two.status, IncidentStatus::Pending);

    // Another terminal: tail by full id while it is pending.
    let mut t = tail(&rig, &[&two.id.to_string()]);
    wait_output(&mut t, "is pending; waiting", true).await;
    assert_eq!(
        t.stderr().lines().filter(|l| l.contains("pending")).count(),
        1,
        "the pending notice is one line: {}",
        t.stderr()
    );
    assert!(t.stdout().is_empty());

    std::fs::write(rig.path().join("release"), "").unwrap();
    // The first line shows while the agent is still blocked on `go`: tail is following.
    wait_output(&mut t, "tail-line-one", false).await;
    assert_eq!(
        status_of(&rig.store().await, two.id).await,
        IncidentStatus::Running
    );
    assert!(!t.stdout().contains("tail-line-two"));
    t.assert_alive();

    // `--no-follow` on the running incident prints what exists and exits at once.
    let nf = rig.cli(&["tail", "--no-follow", &two.id.to_string()]).await;
    assert_eq!(nf.code(), Some(0), "{}", nf.stderr);
    assert!(nf.stdout.contains("tail-line-one") && !nf.stdout.contains("tail-line-two"));
    assert!(nf.stderr.contains("is running"), "{}", nf.stderr);

    std::fs::write(rig.path().join("go"), "").unwrap();
    let code = t.wait_exit(DEADLINE).await;
    assert_eq!(code.code(), Some(0), "stderr: {}", t.stderr());
    let out = t.stdout();
    let (one, two_at) = (
        out.find("tail-line-one").unwrap(),
        out.find("tail-line-two"),
    );
    assert!(two_at.is_some_and(|p| p > one), "{out}");
    assert_eq!(
        out.matches("tail-line-one").count(),
        1,
        "printed once: {out}"
    );
    assert!(t
        .stderr()
        .contains(&format!("incident {} finished: succeeded", two.id)));

    // A failing agent (exit 2): non-zero exit; followed by an unambiguous prefix.
    emit(&sim, FAILING).await;
    let failing = incident_of(&rig, "tl", FAILING).await;
    let ids: Vec<String> = all_incidents(&rig.store().await)
        .await
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    let prefix = unique_prefix(&failing.id.to_string(), &ids);
    let mut t = tail(&rig, &[&prefix]);
    let code = t.wait_exit(DEADLINE).await;
    assert_ne!(code.code(), Some(0), "a failed run exits non-zero");
    assert!(code.code().is_some());
    assert!(t.stdout().contains("about to fail"), "{}", t.stdout());
    assert!(
        t.stderr()
            .contains(&format!("incident {} finished: failed", failing.id)),
        "{}",
        t.stderr()
    );

    // `--no-follow` on the finished one: the whole log, exit 0.
    let nf = rig.cli(&["tail", "--no-follow", &two.id.to_string()]).await;
    assert_eq!(nf.code(), Some(0));
    assert!(nf.stdout.contains("tail-line-one") && nf.stdout.contains("tail-line-two"));
}

/// The shortest prefix of `id` (at least 8 characters) that no other id in `all` starts with.
fn unique_prefix(id: &str, all: &[String]) -> String {
    (8..=id.len())
        .map(|n| &id[..n])
        .find(|p| all.iter().filter(|o| o.starts_with(p)).count() == 1)
        .unwrap()
        .to_string()
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

const FIELDS: [&str; 15] = [
    "id",
    "cluster",
    "fault_id",
    "fault_type",
    "severity",
    "namespace",
    "resource_kind",
    "resource_name",
    "status",
    "failure_reason",
    "occurrences",
    "attempt",
    "created_at",
    "started_at",
    "finished_at",
];

fn check_rfc3339_utc(v: &serde_json::Value, what: &str) {
    if v.is_null() {
        return;
    }
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.ends_with('Z'), "{what} is not UTC: {s}");
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{what}: {s}: {e}"));
}

/// Every column starts at its header's position in every row.
fn check_aligned(table: &str) {
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| *c != ' ' && (*i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    assert!(starts.len() >= 5, "{table}");
    for row in &lines[1..] {
        let b = row.as_bytes();
        for &p in &starts[1..] {
            assert!(
                p < b.len() && b[p] != b' ' && b[p - 1] == b' ',
                "row not aligned with the header at column {p}:\n{table}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_list_show_retry_and_cancel() {
    let inc = simulator("inc").await;
    let blk = simulator("blk").await;
    let rig = Rig::sqlite(&[&inc, &blk], STUB);
    let _run = rig.start_run();
    subscribed(&inc).await;
    subscribed(&blk).await;

    // One incident so far: its 8-character prefix is unique.
    emit(&inc, CRASHLOOP).await;
    let broken = incident_of(&rig, "inc", CRASHLOOP).await;
    wait_status(&rig, broken.id, IncidentStatus::Failed).await;
    let id8 = &broken.id.to_string()[..8];
    let show = rig.cli(&["incidents", "show", id8]).await;
    assert_eq!(show.code(), Some(0), "{}", show.stderr);
    assert!(show.stdout.contains(&broken.id.to_string()));
    assert!(show
        .stdout
        .lines()
        .any(|l| l.starts_with("status") && l.contains("failed")));
    assert!(show.stdout.contains("attempts:"), "{}", show.stdout);

    emit(&inc, PODCRASH).await;
    emit(&blk, BLOCKER).await; // runs until released
    let blocker = incident_of(&rig, "blk", BLOCKER).await;
    wait_status(&rig, blocker.id, IncidentStatus::Running).await;
    emit(&blk, TWO_LINES).await; // stays pending behind the blocker
    let queued = incident_of(&rig, "blk", TWO_LINES).await;
    let ok = incident_of(&rig, "inc", PODCRASH).await;
    wait_status(&rig, ok.id, IncidentStatus::Succeeded).await;
    assert_eq!(
        status_of(&rig.store().await, queued.id).await,
        IncidentStatus::Pending
    );

    // list --json: the fields, RFC 3339 UTC times.
    let list = rig.cli(&["incidents", "list", "--json"]).await;
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    let arr = list.json();
    let arr = arr.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 4, "{arr:?}");
    for obj in arr {
        for f in FIELDS {
            assert!(obj.get(f).is_some(), "field {f} missing: {obj}");
        }
        for f in ["created_at", "started_at", "finished_at"] {
            check_rfc3339_utc(&obj[f], f);
        }
    }
    let by_id = |id: Uuid| {
        arr.iter()
            .find(|o| o["id"] == id.to_string())
            .unwrap()
            .clone()
    };
    let b = by_id(broken.id);
    assert_eq!(b["status"], "failed");
    assert_eq!(b["cluster"], "inc");
    assert_eq!(b["fault_type"], "CrashLoop");
    assert_eq!(b["resource_kind"], "Pod");
    assert_eq!(b["attempt"], 1);
    assert_eq!(b["occurrences"], 1);
    assert!(
        b["failure_reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{b}"
    );
    assert!(b["finished_at"].is_string());
    let q = by_id(queued.id);
    assert_eq!(q["status"], "pending");
    assert!(q["started_at"].is_null() && q["finished_at"].is_null());

    // Filters.
    let ids_of = |out: &CliOutput| -> HashSet<String> {
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect()
    };
    let failed = rig
        .cli(&["incidents", "list", "--status", "failed", "--json"])
        .await;
    assert_eq!(ids_of(&failed), HashSet::from([broken.id.to_string()]));
    let blk_only = rig
        .cli(&["incidents", "list", "--cluster", "blk", "--json"])
        .await;
    assert_eq!(
        ids_of(&blk_only),
        HashSet::from([blocker.id.to_string(), queued.id.to_string()])
    );
    let both = rig
        .cli(&[
            "incidents",
            "list",
            "--cluster",
            "inc",
            "--status",
            "succeeded",
            "--json",
        ])
        .await;
    assert_eq!(ids_of(&both), HashSet::from([ok.id.to_string()]));
    let one = rig
        .cli(&["incidents", "list", "--limit", "1", "--json"])
        .await;
    assert_eq!(ids_of(&one).len(), 1);
    let bad = rig.cli(&["incidents", "list", "--status", "nope"]).await;
    assert_ne!(bad.code(), Some(0));
    assert!(bad.stderr.contains("nope"), "{}", bad.stderr);

    // Human list: an aligned table, one row per incident.
    let human = rig.cli(&["incidents", "list"]).await;
    assert_eq!(human.code(), Some(0));
    assert!(human.stdout.starts_with("ID "), "{}", human.stdout);
    assert_eq!(human.stdout.lines().count(), 5, "{}", human.stdout);
    check_aligned(&human.stdout);

    // Bad ids: clear errors, non-zero exits.
    let short = rig
        .cli(&["incidents", "show", &broken.id.to_string()[..7]])
        .await;
    assert_ne!(short.code(), Some(0));
    assert!(
        short.stderr.contains("at least 8 characters"),
        "{}",
        short.stderr
    );
    let unknown = rig.cli(&["incidents", "show", "ffffffff-ffff"]).await;
    assert_ne!(unknown.code(), Some(0));
    assert!(unknown.stderr.contains("not found"), "{}", unknown.stderr);
    let all: Vec<String> = arr
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    // Four ids made within seconds: at least two share 8 characters (UUIDv7 starts with time).
    let shared = all
        .iter()
        .enumerate()
        .flat_map(|(i, a)| all[i + 1..].iter().map(move |b| common_prefix(a, b)))
        .max_by_key(String::len)
        .unwrap();
    assert!(shared.len() >= 8, "{all:?}");
    let amb = rig.cli(&["incidents", "show", &shared]).await;
    assert_ne!(amb.code(), Some(0));
    assert!(amb.stderr.contains("ambiguous"), "{}", amb.stderr);
    let garbage = rig.cli(&["incidents", "show", "not-an-id!"]).await;
    assert_ne!(garbage.code(), Some(0));
    assert!(garbage.stderr.contains("not-an-id!"), "{}", garbage.stderr);

    // Cancel the pending one; it never runs. Cancelling it again is refused.
    let cancel = rig
        .cli(&[
            "incidents",
            "cancel",
            &unique_prefix(&queued.id.to_string(), &all),
        ])
        .await;
    assert_eq!(cancel.code(), Some(0), "{}", cancel.stderr);
    assert!(cancel.stdout.contains("cancelled"));
    let again = rig
        .cli(&["incidents", "cancel", &queued.id.to_string()])
        .await;
    assert_ne!(again.code(), Some(0));
    assert!(!again.stderr.is_empty());
    // Retrying something still running is refused.
    let busy = rig
        .cli(&["incidents", "retry", &blocker.id.to_string()])
        .await;
    assert_ne!(busy.code(), Some(0));
    assert!(!busy.stderr.is_empty());

    // Retry of the failed one, now fixed: it runs again and succeeds.
    std::fs::write(rig.path().join("fixed"), "").unwrap();
    let retry = rig
        .cli(&["incidents", "retry", &broken.id.to_string()])
        .await;
    assert_eq!(retry.code(), Some(0), "{}", retry.stderr);
    assert!(retry.stdout.contains("pending"), "{}", retry.stdout);
    wait_status(&rig, broken.id, IncidentStatus::Succeeded).await;
    let show = rig
        .cli(&["incidents", "show", "--json", &broken.id.to_string()])
        .await;
    let v = show.json();
    let runs = v["agent_runs"].as_array().expect("agent_runs");
    assert_eq!(runs.len(), 2, "{v}");
    assert_eq!(runs[0]["outcome"], "failed");
    assert_eq!(runs[1]["outcome"], "succeeded");
    assert!(v["failure_reason"].is_null(), "{v}");

    // Releasing the blocker frees the cluster; the cancelled incident stays cancelled.
    std::fs::write(rig.path().join("release"), "").unwrap();
    wait_status(&rig, blocker.id, IncidentStatus::Succeeded).await;
    let q = rig.store().await.get(&queued.id.to_string()).await.unwrap();
    assert_eq!(q.status, IncidentStatus::Cancelled);
    assert_eq!(q.attempt, 0, "a cancelled pending incident never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = cli(&[
        "demo".into(),
        "--duration".into(),
        "9s".into(),
        "--dir".into(),
        demo_dir.display().to_string(),
        "--http-listen".into(),
        "127.0.0.1:0".into(),
        "--agent-think".into(),
        "200ms".into(),
        "--clusters".into(),
        "2".into(),
        "--faults".into(),
        "2".into(),
    ])
    .await;
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let s = &out.stdout;
    for needle in [
        "Watch it from another terminal",
        " status",
        " incidents list",
        " tail <incident-id>",
        "/metrics",
        "demo finished:",
        "an example report:",
    ] {
        assert!(s.contains(needle), "no {needle:?} in:\n{s}");
    }
    let summary = s.lines().find(|l| l.contains("demo finished:")).unwrap();
    let succeeded: usize = summary
        .split(';')
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no succeeded count in {summary:?}"));
    assert!(succeeded >= 1, "{summary}");

    // The database agrees, and every succeeded incident has its report.
    let config = demo_dir.join("nightcrier.yaml");
    let list = cli(&[
        "incidents".into(),
        "list".into(),
        "--json".into(),
        "--config".into(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(list.code(), Some(0), "{}", list.stderr);
    let arr = list.json();
    let done: Vec<&serde_json::Value> = arr
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "succeeded")
        .collect();
    assert_eq!(done.len(), succeeded);
    assert!(
        arr.as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] != "failed" && o["status"] != "running"),
        "{arr}"
    );
    for o in done {
        let report = demo_dir
            .join("incidents")
            .join(o["id"].as_str().unwrap())
            .join("output/investigation.md");
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
        assert!(text.len() > 100);
    }
}
