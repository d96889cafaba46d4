//! The stub agent (a shell script run by the real agent runner) and its timeline, for the tests
//! that run real agents.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nightcrier::agent::AgentRunner;
use nightcrier::config::{AgentPreset, Config};
use nightcrier::incident::Incident;
use nightcrier::store::Store;
use nightcrier::worker::{PoolSettings, WorkerPool};
use tokio_util::sync::CancellationToken;

use super::worker::all_terminal;

pub const LONG: Duration = Duration::from_secs(30);

/// One stub agent for every test; what it does depends on the incident's cluster name.
/// Arguments: report file, cluster, timeline file (start/end lines, nanoseconds).
const STUB: &str = r#"
report="$1"; cluster="$2"; timeline="$3"
echo "$cluster start $(date +%s%N)" >> "$timeline"
case "$cluster" in
  ok*)      printf '%0200d\n' 0 > "$report" ;;
  exit2*)   echo "failing on purpose" >&2; exit 2 ;;
  missing*) exit 0 ;;
  tiny*)    echo tiny > "$report" ;;
  slow*)    sleep 60 ;;
  stubborn*) trap '' TERM; sleep 60 ;;
  crash*)   flag="$(dirname "$timeline")/$cluster.crashed"
            if [ -e "$flag" ]; then printf '%0200d\n' 0 > "$report"
            else touch "$flag"; sleep 60; fi ;;
  brief*)   sleep 0.05; printf '%0200d\n' 0 > "$report" ;;
  *)        exit 9 ;;
esac
echo "$cluster end $(date +%s%N)" >> "$timeline"
"#;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub config: Config,
}

impl Rig {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = super::worker::sqlite_store(&dir).await;
        Self::with_store(dir, store)
    }

    pub fn with_store(dir: tempfile::TempDir, store: Store) -> Self {
        let script = dir.path().join("agent.sh");
        std::fs::write(&script, STUB).unwrap();
        let mut config = Config {
            workspace_root: dir.path().join("incidents"),
            ..Config::default()
        };
        config.agent.preset = AgentPreset::Command;
        config.agent.command = vec![
            "/bin/sh".into(),
            script.display().to_string(),
            "{report_file}".into(),
            "{cluster}".into(),
            dir.path().join("timeline").display().to_string(),
        ];
        config.agent.timeout = Duration::from_millis(700);
        config.agent.kill_grace = Duration::from_millis(300);
        config.worker.instance_name = Some("host-1".into());
        Self { dir, store, config }
    }

    pub fn settings(&self) -> PoolSettings {
        PoolSettings::from_config(&self.config)
    }

    pub fn pool(&self, settings: PoolSettings) -> WorkerPool<AgentRunner> {
        WorkerPool::new(
            self.store.clone(),
            Arc::new(AgentRunner::new(&self.config)),
            settings,
        )
    }

    pub fn timeline(&self) -> Vec<(String, String, u128)> {
        read_timeline(&self.dir.path().join("timeline"))
    }
}

fn read_timeline(path: &Path) -> Vec<(String, String, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

pub async fn run_until_done(
    rig: &Rig,
    settings: PoolSettings,
    ids: &[uuid::Uuid],
) -> Vec<Incident> {
    let (soft, hard) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(rig.pool(settings).run(soft.clone(), hard.clone()));
    let done = all_terminal(&rig.store, ids, LONG).await;
    soft.cancel();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    done
}

/// Pairs the start and end lines of each agent (one cluster runs one at a time, so lines pair
/// in order per cluster) and checks no moment had more runs than the limits allow.
pub fn check_timeline(lines: &[(String, String, u128)], runs: usize, total: usize, per: usize) {
    let mut spans = Vec::new();
    let clusters: HashSet<_> = lines.iter().map(|l| l.0.clone()).collect();
    for c in clusters {
        let starts: Vec<_> = lines
            .iter()
            .filter(|l| l.0 == c && l.1 == "start")
            .map(|l| l.2)
            .collect();
        let ends: Vec<_> = lines
            .iter()
            .filter(|l| l.0 == c && l.1 == "end")
            .map(|l| l.2)
            .collect();
        assert_eq!(starts.len(), ends.len(), "every run of {c} ended");
        for (s, e) in starts.into_iter().zip(ends) {
            assert!(s <= e, "a run of {c} ended before the next started");
            spans.push((c.clone(), s, e));
        }
    }
    assert_eq!(spans.len(), runs);
    let mut max_seen = 0;
    for (c, s, _) in &spans {
        let live: Vec<_> = spans
            .iter()
            .filter(|(_, s2, e2)| s2 <= s && e2 > s)
            .collect();
        let same = live.iter().filter(|(c2, _, _)| c2 == c).count();
        assert!(live.len() <= total, "{} agents at once", live.len());
        assert!(same <= per, "{same} agents at once on {c}");
        max_seen = max_seen.max(live.len());
    }
    assert_eq!(max_seen, total, "both slots were used");
}
