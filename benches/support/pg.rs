//! A throwaway PostgreSQL 15 server for benchmarks, with the server's durability defaults
//! (`fsync`, `synchronous_commit`, `full_page_writes` all on), unlike the test harness which turns
//! them off for speed. As root, every binary runs as `postgres` (initdb refuses root).
//! `NIGHTCRIER_BENCH_POSTGRES_URL` uses an existing server instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

const BIN: &str = "/usr/lib/postgresql/15/bin";
pub const URL_ENV: &str = "NIGHTCRIER_BENCH_POSTGRES_URL";

pub struct Postgres {
    url: String,
    /// Data directory of a server this bench started (stopped on drop).
    owned: Option<(tempfile::TempDir, PathBuf)>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn command(bin: &str) -> Command {
    let path = Path::new(BIN).join(bin);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(c: &mut Command) {
    let out = c.output().expect("running a PostgreSQL binary");
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn start() -> Postgres {
        if let Ok(url) = std::env::var(URL_ENV) {
            return Postgres { url, owned: None };
        }
        let root = tempfile::Builder::new()
            .prefix("nightcrier-bench-pg-")
            .tempdir()
            .expect("a temporary directory");
        if as_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(root.path()));
        }
        let data = root.path().join("data");
        run(command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            root.path().display()
        );
        let log = root.path().join("server.log");
        run(command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-l"])
            .arg(&log)
            .arg("-D")
            .arg(&data)
            .args(["-o", &opts]));
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            owned: Some((root, data)),
        }
    }

    /// A new, empty database; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!(
            "nc_bench_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connecting to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("CREATE DATABASE");
        let (base, _) = self.url.rsplit_once('/').expect("a database URL");
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((_, data)) = &self.owned {
            let _ = command("pg_ctl")
                .args(["stop", "-m", "fast", "-w", "-D"])
                .arg(data)
                .output();
        }
    }
}
