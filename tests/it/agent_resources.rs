//! Issue #13 item 12: a run that cannot be prepared because the process is out of file
//! descriptors is given back (`pending`), not failed for good. Alone in its test program: it
//! lowers RLIMIT_NOFILE of the whole test process for a moment.

use crate::support::agent as agent_support;

use agent_support::*;
use nightcrier::agent::{AgentRunner, REASON_RESOURCES};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn emfile_while_preparing_a_run_gives_the_incident_back() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut config = config(root.path(), script_agent("success.sh"));
    config.clusters = vec![cluster("prod", None)];
    let incident = incident("prod");
    let occ = occurrences(&incident, 2);
    let runner = AgentRunner::new(&config);

    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Descriptors 0-2 are open, so every new one fails with EMFILE.
    setrlimit(Resource::RLIMIT_NOFILE, 3, hard).expect("setrlimit");
    let report = runner
        .run(&incident, &occ, 1, CancellationToken::new(), &|_| {})
        .await;
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restoring the limit");

    assert!(report.retry_later, "{report:?}");
    let reason = report.outcome.reason.unwrap_or_default();
    assert!(reason.starts_with(REASON_RESOURCES), "{reason}");
    assert!(reason.contains("os error 24"), "{reason}");
    assert_eq!(report.pid, None);
}
