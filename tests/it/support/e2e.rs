//! Support for the end-to-end tests: the real `nightcrier` binary as a child process, configured
//! by a YAML file in a temporary directory, against in-process simulators and a real database.
//!
//! - [`Rig`]: a temporary directory, a database URL, a config file written from [`Setup`].
//! - [`Proc`]: a running `nightcrier` child; its stdout/stderr are collected as they come, and it
//!   is SIGKILLed and reaped on drop (every path, panics included).
//! - [`cli`]: one short-lived command (`status`, `tail`, `incidents ...`) with a deadline.
//! - [`wait_until`]: polling with a deadline, the only way these tests wait.
//! - [`agent_processes`]: live processes carrying the agent marker of given incidents.
#![allow(dead_code)]

pub use super::prom;

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nightcrier::incident::{Incident, IncidentStatus};
use nightcrier::simulate::{FaultSpec, SimConfig, SimHandle, Simulator};
use nightcrier::store::{ListFilter, Store, StoreOptions};
use serde_json::{json, Value};
use uuid::Uuid;

/// Generous: the machine is shared and debug builds are slow.
pub const DEADLINE: Duration = Duration::from_secs(40);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nightcrier")
}

/// Polling with a deadline, under the name these tests know it by.
pub use super::eventually as wait_until;

/// A simulated cluster whose context is `name`; every emission is delivered (no server dedup).
pub async fn simulator(name: &str) -> SimHandle {
    Simulator::start(SimConfig {
        context: name.into(),
        reemit_every: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .expect("starting a simulator")
}

/// Waits until nightcrier subscribed to `sim`, so emitted faults are not lost.
pub async fn subscribed(sim: &SimHandle) {
    wait_until("a subscription on the simulator", DEADLINE, || async {
        (sim.subscriptions() >= 1 && sim.attached_streams() >= 1).then_some(())
    })
    .await
}

/// Emits the `i`-th fault of the world and checks it was delivered.
pub async fn emit(sim: &SimHandle, i: usize) -> FaultSpec {
    let spec = FaultSpec::generate(i, 7);
    let n = sim.emit_fault(&spec).await;
    assert!(n >= 1, "fault {i} was not delivered to nightcrier");
    spec
}

/// What goes into the generated configuration file.
#[derive(Debug, Clone)]
pub struct Setup {
    pub db_url: String,
    /// (cluster name, MCP endpoint).
    pub clusters: Vec<(String, String)>,
    pub agent_command: Vec<String>,
    pub max_concurrent_agents: u32,
    pub max_agents_per_cluster: u32,
    pub agent_timeout: Duration,
    pub poll_interval: Duration,
    pub lease_duration: Duration,
    pub heartbeat_interval: Duration,
    pub rescue_interval: Duration,
    pub shutdown_grace: Duration,
    pub max_attempts: u32,
    pub instance_name: String,
    pub http_listen: String,
    /// `reconnect.ping_interval`.
    pub ping_interval: Duration,
    /// `database.acquire_timeout`.
    pub db_acquire_timeout: Duration,
    /// `dedup.related_window`: zero (off) unless a test is about related faults, since the
    /// simulator's worlds put two fault types on one pod and most tests count one incident
    /// per faultId.
    pub related_window: Duration,
}

fn d(x: Duration) -> String {
    format!("{}ms", x.as_millis())
}

impl Setup {
    pub fn to_yaml(&self, workspace_root: &Path) -> String {
        let clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, endpoint)| json!({"name": name, "mcp": {"endpoint": endpoint}}))
            .collect();
        let doc = json!({
            "database": {"url": self.db_url, "acquire_timeout": d(self.db_acquire_timeout)},
            "workspace_root": workspace_root.display().to_string(),
            "limits": {
                "max_concurrent_agents": self.max_concurrent_agents,
                "max_agents_per_cluster": self.max_agents_per_cluster,
            },
            "reconnect": {
                "initial_backoff": "100ms",
                "max_backoff": "1s",
                "ping_interval": d(self.ping_interval),
            },
            "worker": {
                "poll_interval": d(self.poll_interval),
                "lease_duration": d(self.lease_duration),
                "heartbeat_interval": d(self.heartbeat_interval),
                "rescue_interval": d(self.rescue_interval),
                "max_attempts": self.max_attempts,
                "shutdown_grace": d(self.shutdown_grace),
                "instance_name": self.instance_name,
            },
            "agent": {
                "preset": "command",
                "command": self.agent_command,
                "timeout": d(self.agent_timeout),
                "kill_grace": "1s",
            },
            "http": {"listen": self.http_listen},
            "dedup": {"related_window": d(self.related_window)},
            // PostgreSQL fleets divide the clusters; short timings so tests need not wait for
            // the default 10 s settle and take-over (ignored on SQLite).
            "fleet": {"heartbeat_interval": "200ms", "lease_ttl": "1s"},
            "clusters": clusters,
        });
        serde_yaml_ng::to_string(&doc).expect("YAML")
    }
}

/// A temporary directory holding the config file, the workspaces and (for SQLite) the database.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub setup: Setup,
}

impl Rig {
    /// SQLite in the rig's directory; `agent` is the stub agent's shell script body.
    pub fn sqlite(clusters: &[&SimHandle], agent: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("db/nightcrier.db").display());
        Self::with_url(dir, url, clusters, agent)
    }

    pub fn with_url(
        dir: tempfile::TempDir,
        db_url: String,
        clusters: &[&SimHandle],
        agent: &str,
    ) -> Rig {
        let script = dir.path().join("agent.sh");
        std::fs::write(&script, agent).expect("writing the stub agent");
        let setup = Setup {
            db_url,
            clusters: clusters
                .iter()
                .map(|s| (s.context().to_string(), s.endpoint()))
                .collect(),
            agent_command: vec!["/bin/sh".into(), script.display().to_string()],
            max_concurrent_agents: 5,
            max_agents_per_cluster: 1,
            agent_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            lease_duration: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            max_attempts: 3,
            instance_name: "e2e-1".into(),
            http_listen: "127.0.0.1:0".into(),
            ping_interval: Duration::from_secs(30),
            db_acquire_timeout: Duration::from_secs(5),
            related_window: Duration::ZERO,
        };
        let rig = Rig { dir, setup };
        rig.write_config();
        rig
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn workspace_root(&self) -> PathBuf {
        self.dir.path().join("incidents")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nightcrier.yaml")
    }

    /// (Re)writes the config file from `self.setup`.
    pub fn write_config(&self) {
        std::fs::write(
            self.config_path(),
            self.setup.to_yaml(&self.workspace_root()),
        )
        .expect("writing the config");
    }

    /// A config file for a second process (another instance name) next to the first.
    pub fn write_config_as(&self, file: &str, instance_name: &str) -> PathBuf {
        let mut s = self.setup.clone();
        s.instance_name = instance_name.into();
        let path = self.dir.path().join(file);
        std::fs::write(&path, s.to_yaml(&self.workspace_root())).expect("writing the config");
        path
    }

    pub fn agent_log(&self, id: Uuid) -> String {
        std::fs::read_to_string(
            self.workspace_root()
                .join(id.to_string())
                .join("logs/agent.log"),
        )
        .unwrap_or_default()
    }

    /// `nightcrier run` with this rig's configuration.
    pub fn start_run(&self) -> Proc {
        Proc::spawn(&["run", "--config", &self.config_path().display().to_string()])
    }

    pub async fn store(&self) -> Store {
        Store::connect(StoreOptions {
            max_connections: 4,
            ..super::common::store_options(&self.setup.db_url)
        })
        .await
        .expect("opening the store")
    }

    /// Runs `nightcrier <args> --config <rig config>` to completion.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--config".into());
        all.push(self.config_path().display().to_string());
        cli(&all).await
    }
}

/// Every incident in the store.
pub async fn all_incidents(store: &Store) -> Vec<Incident> {
    store
        .list(&ListFilter {
            limit: Some(1000),
            ..ListFilter::default()
        })
        .await
        .expect("listing incidents")
}

/// Waits until `n` incidents exist and none is open; returns them.
pub async fn all_finished(store: &Store, n: usize, deadline: Duration) -> Vec<Incident> {
    wait_until(
        &format!("{n} incidents, all finished"),
        deadline,
        || async {
            let all = all_incidents(store).await;
            (all.len() == n && all.iter().all(|i| i.status.is_terminal())).then_some(all)
        },
    )
    .await
}

pub async fn status_of(store: &Store, id: Uuid) -> IncidentStatus {
    store.get(&id.to_string()).await.expect("incident").status
}

#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the binary with `args` to completion (killed after [`DEADLINE`]).
pub async fn cli(args: &[String]) -> CliOutput {
    let child = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("NIGHTCRIER_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting nightcrier");
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("nightcrier {args:?} did not finish within {DEADLINE:?}"))
        .expect("waiting for nightcrier");
    CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `nightcrier` process. Killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

fn collect(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(bin())
            .args(args)
            .env_remove("NIGHTCRIER_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting nightcrier");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), Arc::clone(&stdout)),
            collect(child.stderr.take().expect("stderr"), Arc::clone(&stderr)),
        ];
        Proc {
            child,
            stdout,
            stderr,
            readers,
            exit: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Panics (with the output so far) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            self.exit = Some(status);
            panic!(
                "nightcrier exited early with {status}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }

    /// Waits until stdout contains `needle`.
    pub async fn wait_stdout(&mut self, needle: &str) {
        let start = Instant::now();
        while !self.stdout().contains(needle) {
            self.assert_alive();
            assert!(
                start.elapsed() < DEADLINE,
                "no {needle:?} on stdout within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The HTTP address from the start-up line (`http=ADDR`).
    pub async fn http_addr(&mut self) -> SocketAddr {
        self.wait_stdout("nightcrier starting").await;
        let out = self.stdout();
        let line = out
            .lines()
            .find(|l| l.contains("nightcrier starting"))
            .expect("start-up line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap_or_else(|| panic!("no http= in the start-up line: {line}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("http={addr} is not an address: {e}"))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exit {
                return s;
            }
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(s);
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return s;
            }
            assert!(
                start.elapsed() < deadline,
                "nightcrier did not exit within {deadline:?}\nstdout:\n{}",
                self.stdout()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL and reap.
    pub async fn kill9(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.wait_exit(DEADLINE).await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Live (non-zombie) processes whose environment carries the agent marker of one of `ids`.
pub fn agent_processes(ids: &HashSet<Uuid>) -> Vec<(i32, Uuid)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("");
        if state == "Z" || state == "X" {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        for kv in env.split(|b| *b == 0) {
            let Some(v) = kv.strip_prefix(b"NIGHTCRIER_AGENT_RUN=") else {
                continue;
            };
            let v = String::from_utf8_lossy(v);
            if let Some(id) = v.split(':').next().and_then(|s| s.parse::<Uuid>().ok()) {
                if ids.contains(&id) {
                    found.push((pid, id));
                }
            }
        }
    }
    found
}

/// `/metrics` (or any path) of a running nightcrier: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("HTTP request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("HTTP body"))
}

/// `/metrics` of a running nightcrier, parsed.
pub async fn metrics(addr: SocketAddr) -> prom::Exposition {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "/metrics answered {code}: {body}");
    prom::parse(&body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}"))
}

/// Resident memory of a process in KiB (`VmRSS`), 0 when it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| nightcrier::telemetry::vm_rss_kib(&s))
        .unwrap_or(0)
}

/// Open sockets of a process (TCP connections and listeners, Unix sockets).
pub fn open_sockets(pid: i32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// A report the runner accepts (more than `min_report_bytes`).
pub const WRITE_REPORT: &str = r#"printf '# Report\n%0200d\n' 0 > "$REPORT_FILE""#;
