//! 1,000 subscribed sessions in one `nightcrier run` process (the release binary, as deployed),
//! against `nightcrier simulate` in another process (100 subscriptions per simulated server, the
//! real server's limit), so the memory and CPU figures are the client's alone.
//!
//! Subscribed = the sum of the child's `nightcrier_mcp_connected` gauges on its `/metrics`,
//! which a supervisor sets to 1 only once its subscription is confirmed and its stream attached.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nightcrier::config::{
    AgentPreset, ClusterConfig, Config, DatabaseUrl, McpConfig, TriageConfig,
};

use crate::support::{cpu_ticks, hwm_kib, rss_kib, ticks_per_second, Args, PER_SERVER};

const EXE: &str = env!("CARGO_BIN_EXE_nightcrier");

/// Kills (SIGKILL) and reaps a child on drop, so a failed run leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Reaped {
    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// SIGTERM, then wait for the exit.
    fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `n` consecutive free loopback ports.
fn free_ports(n: u16) -> u16 {
    for base in (20_000u16..60_000).step_by(97) {
        let all: Vec<_> = (0..n)
            .map(|i| TcpListener::bind(("127.0.0.1", base + i)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn simulate(base: u16, servers: u16, log: &Path) -> Reaped {
    let out = std::fs::File::create(log).expect("simulator log");
    let child = Command::new(EXE)
        .args(["simulate", "--listen", &format!("127.0.0.1:{base}")])
        .args(["--clusters", &servers.to_string()])
        // Idle: the first occurrence would come after an hour.
        .args(["--rate", "1/h", "--faults", "1"])
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("nightcrier simulate starts");
    let r = Reaped(child);
    let t = Instant::now();
    while (0..servers).any(|i| std::net::TcpStream::connect(("127.0.0.1", base + i)).is_err()) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "simulators did not listen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    r
}

async fn subscribed(client: &reqwest::Client, metrics: &str) -> usize {
    let Ok(resp) = client.get(metrics).send().await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("nightcrier_mcp_connected{"))
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>() as usize
}

async fn wait_for(
    client: &reqwest::Client,
    metrics: &str,
    what: impl Fn(usize) -> bool,
    limit: Duration,
) -> (Duration, usize) {
    let t = Instant::now();
    loop {
        let n = subscribed(client, metrics).await;
        if what(n) || t.elapsed() > limit {
            return (t.elapsed(), n);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: &Args) {
    let clusters = args.num("sessions", 1000, 1000);
    let idle = Duration::from_secs(args.num("idle-seconds", 30, 5) as u64);
    let servers = clusters.div_ceil(PER_SERVER) as u16;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = free_ports(servers);
    let sim_log = dir.path().join("simulate.log");
    let sim = simulate(base, servers, &sim_log);

    let http = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let mut c = Config::default();
    c.database.url = DatabaseUrl::new(format!(
        "sqlite://{}",
        dir.path().join("nightcrier.db").display()
    ));
    c.workspace_root = dir.path().join("incidents");
    c.http.listen = http.to_string();
    c.agent.preset = AgentPreset::Command;
    c.agent.command = vec!["true".into()];
    c.clusters = (0..clusters)
        .map(|i| ClusterConfig {
            name: format!("c{i:05}"),
            mcp: McpConfig::new(format!(
                "http://127.0.0.1:{}/mcp",
                base + (i % usize::from(servers)) as u16
            )),
            triage: TriageConfig::default(),
            agent: None,
            evidence: Default::default(),
            environment: None,
            labels: Default::default(),
        })
        .collect();
    let config = dir.path().join("nightcrier.yaml");
    std::fs::write(&config, c.to_redacted_yaml()).expect("writing the configuration");
    let log = std::fs::File::create(dir.path().join("run.log")).expect("run log");
    let start = Instant::now();
    let run = Reaped(
        Command::new(EXE)
            .arg("--config")
            .arg(&config)
            .args(["--log-level", "warn", "run"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("nightcrier run starts"),
    );
    let pid = run.pid();
    let client = reqwest::Client::new();
    let metrics = format!("http://{http}/metrics");
    let (_, n) = wait_for(
        &client,
        &metrics,
        |n| n >= clusters,
        Duration::from_secs(180),
    )
    .await;
    let startup = start.elapsed();
    assert_eq!(
        n,
        clusters,
        "not every session subscribed; see {}",
        dir.path().display()
    );

    // Idle: let start-up work settle, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = rss_kib(&pid);
    let ticks_before = cpu_ticks(&pid);
    let t = Instant::now();
    tokio::time::sleep(idle).await;
    let cpu =
        (cpu_ticks(&pid) - ticks_before) as f64 / ticks_per_second() / t.elapsed().as_secs_f64();
    let rss_idle = rss_kib(&pid);

    // Source restart: the simulator process ends (every connection, session and subscription
    // lost) and starts again on the same ports.
    sim.terminate();
    let (lost, left) = wait_for(&client, &metrics, |n| n == 0, Duration::from_secs(30)).await;
    let sim = simulate(base, servers, &sim_log);
    let (reconnect, back) = wait_for(
        &client,
        &metrics,
        |n| n >= clusters,
        Duration::from_secs(180),
    )
    .await;
    let hwm = hwm_kib(&pid);
    run.terminate();
    sim.terminate();

    println!(
        "\n== connections: {clusters} sessions on {servers} simulated servers (separate process) =="
    );
    println!("{:<44} {:>12}", "figure", "value");
    println!(
        "{:<44} {:>12.1}",
        "start to all subscribed (s)",
        startup.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.1}",
        "resident memory, idle (MiB)",
        rss_idle as f64 / 1024.0
    );
    println!(
        "{:<44} {:>12.1}",
        "resident memory before idle period (MiB)",
        rss_before as f64 / 1024.0
    );
    println!(
        "{:<44} {:>12.1}",
        "peak resident memory incl. reconnect (MiB)",
        hwm as f64 / 1024.0
    );
    println!(
        "{:<44} {:>12.2}",
        format!("idle CPU over {}s (% of one core)", idle.as_secs()),
        cpu * 100.0
    );
    println!(
        "{:<44} {:>12.2}",
        format!("source down to all lost (s; {left} left)"),
        lost.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.2}",
        format!("source up to all re-subscribed (s; {back})"),
        reconnect.as_secs_f64()
    );
}
