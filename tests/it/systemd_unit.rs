//! The shipped systemd unit (`dist/nightcrier.service`), checked by systemd's own
//! `systemd-analyze verify`, and the notify protocol spoken by the real binary over a real
//! unix datagram socket (`NOTIFY_SOCKET`), as systemd would receive it.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_nightcrier");

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/nightcrier.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Never skipped: CI installs it with scripts/install-test-tools.sh.
fn systemd_analyze() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file())
        .expect("systemd-analyze is not on PATH: run scripts/install-test-tools.sh (Debian package `systemd`)")
}

/// `systemd-analyze verify` on a copy whose ExecStart is the binary under test (verify checks
/// that the executable exists). Returns (success, everything it printed).
fn verify(unit: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightcrier.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/nightcrier", BIN)).unwrap();
    let out = Command::new(systemd_analyze())
        .arg("verify")
        .arg(&path)
        .output()
        .expect("running systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_is_type_notify_hardened_and_passes_systemd_analyze_verify() {
    let unit = unit_text();
    for line in [
        "Type=notify",
        "WatchdogSec=60s",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/nightcrier",
        "StateDirectory=nightcrier",
        "WorkingDirectory=/var/lib/nightcrier",
        "KillMode=mixed",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "the unit lacks `{line}`"
        );
    }
    let (ok, text) = verify(&unit);
    // verify exits 0 on many problems and only prints them: any output is a defect.
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );

    // The check can fail: a wrong value is reported.
    let broken = unit.replace("ProtectSystem=strict", "ProtectSystem=sometimes");
    let (_, text) = verify(&broken);
    assert!(
        text.contains("ProtectSystem") || text.contains("protect system"),
        "{text}"
    );
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("no notify message from nightcrier (read timeout: it hung or never spoke)");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn run_sends_ready_then_watchdog_pings_then_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nightcrier.yaml");
    std::fs::write(
        &config,
        format!(
            "database:\n  url: \"sqlite://{}/nc.db\"\nworkspace_root: \"{}/ws\"\nhttp:\n  listen: \"127.0.0.1:0\"\nclusters: []\n",
            dir.path().display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // A bound on a hang, not a timing assertion.
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        // 200 ms: pings every 100 ms.
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let first = recv(&sock);
    assert_eq!(first, "READY=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut seen = Vec::new();
    loop {
        let m = recv(&sock);
        if m == "STOPPING=1" {
            break;
        }
        assert_eq!(
            m, "WATCHDOG=1",
            "unexpected message after SIGTERM: {seen:?}"
        );
        seen.push(m);
    }
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    assert!(status.success(), "nightcrier exited with {status}:\n{log}");
}
