//! A throwaway PostgreSQL server for tests and benchmarks.
//!
//! `PgServer::start()` copies a cached `initdb` template (made once, under the target directory)
//! into a temporary directory and starts `postgres` on a free loopback port with `fsync=off`. As
//! root it runs every PostgreSQL binary as the `postgres` user (initdb refuses root). When
//! `NIGHTCRIER_TEST_POSTGRES_URL` is set, that server is used instead: `fresh_database` still
//! gives each test its own database, but `stop`/`start_again` are unavailable and panic saying so.
//!
//! The durability switch ([`Durability`]): tests turn `fsync`, `synchronous_commit` and
//! `full_page_writes` off (their data dies with them); benchmarks start the server with
//! [`PgServer::start_durable`], which keeps PostgreSQL's defaults so that their figures are those
//! of a real server, and use `NIGHTCRIER_BENCH_POSTGRES_URL` for an existing server.
//!
//! There is no silent skip: if no server can be had, `start()` panics with the reason (when
//! `CI=true` the message says so explicitly).
//!
//! Self-contained (std, sqlx, tokio, url, tempfile; no other test module) so that `benches/` can
//! include it with `#[path]`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::Connection;

pub const URL_ENV: &str = "NIGHTCRIER_TEST_POSTGRES_URL";
/// The existing server benchmarks use instead of starting one.
pub const BENCH_URL_ENV: &str = "NIGHTCRIER_BENCH_POSTGRES_URL";

/// What the server does to make commits survive a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: for tests, fast on any disk.
    Off,
    /// PostgreSQL's defaults: for benchmarks, whose figures must be a real server's.
    Defaults,
}

impl Durability {
    /// The variable naming an existing server to use instead of starting one.
    fn url_env(self) -> &'static str {
        match self {
            Durability::Off => URL_ENV,
            Durability::Defaults => BENCH_URL_ENV,
        }
    }
}

/// A PostgreSQL server for one test process. Stops the server (`-m immediate`) on drop.
pub struct PgServer {
    kind: Kind,
}

enum Kind {
    Owned(Owned),
    External(String),
}

struct Owned {
    bin: PathBuf,
    /// Holds the data and socket directories; removed on drop.
    _root: tempfile::TempDir,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    port: u16,
    /// Run binaries through `runuser -u postgres --` (we are root).
    as_postgres: bool,
    durability: Durability,
    /// Whether the server should be up (so drop knows to stop it).
    running: Mutex<bool>,
    /// Stops the server if this process dies without dropping us (SIGKILL by a test runner's
    /// timeout, SIGTERM of a benchmark), so no server outlives its test. Killed on drop.
    watchdog: Mutex<Option<std::process::Child>>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl PgServer {
    /// A running server for a test (durability off), or a panic that says why there is none.
    pub fn start() -> PgServer {
        Self::start_with(Durability::Off)
    }

    /// A running server with PostgreSQL's durability defaults, for benchmarks (or the server
    /// of `NIGHTCRIER_BENCH_POSTGRES_URL`).
    pub fn start_durable() -> PgServer {
        Self::start_with(Durability::Defaults)
    }

    pub fn start_with(durability: Durability) -> PgServer {
        match Self::try_start_with(durability) {
            Ok(s) => s,
            Err(e) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                panic!(
                    "PostgreSQL is required by this test and could not be started{}: {e}\n\
                     Install the PostgreSQL server binaries (initdb, pg_ctl) or set {env} \
                     to a server this test may create databases on.",
                    if ci {
                        " (CI=true: failing instead of skipping)"
                    } else {
                        ""
                    },
                    env = durability.url_env(),
                )
            }
        }
    }

    pub fn try_start() -> Result<PgServer, String> {
        Self::try_start_with(Durability::Off)
    }

    pub fn try_start_with(durability: Durability) -> Result<PgServer, String> {
        if let Ok(url) = std::env::var(durability.url_env()) {
            if !url.trim().is_empty() {
                return Ok(PgServer {
                    kind: Kind::External(url),
                });
            }
        }
        let bin = find_bin()?;
        let as_postgres = running_as_root();
        let template = template(&bin, as_postgres)?;
        let mut last_err = String::new();
        // The free port can be taken between probing it and the server binding it: try again.
        for _ in 0..3 {
            match Owned::launch(&bin, &template, as_postgres, durability) {
                Ok(o) => {
                    return Ok(PgServer {
                        kind: Kind::Owned(o),
                    })
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// The URL of the server's maintenance database (`postgres`).
    pub fn url(&self) -> String {
        match &self.kind {
            Kind::Owned(o) => o.url("postgres"),
            Kind::External(url) => url.clone(),
        }
    }

    /// Creates a database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!(
            "nc_test_{}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let mut conn = sqlx::PgConnection::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server: {e}"));
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        let _ = conn.close().await;
        match &self.kind {
            Kind::Owned(o) => o.url(&name),
            Kind::External(url) => replace_database(url, &name),
        }
    }

    /// True when `stop`/`start_again` work (an owned server, not `NIGHTCRIER_TEST_POSTGRES_URL`).
    pub fn can_restart(&self) -> bool {
        matches!(self.kind, Kind::Owned(_))
    }

    /// Stops the server (fast shutdown: clients get "terminating connection due to
    /// administrator command"). Blocking: from async code use [`PgServer::stop_async`].
    pub fn stop(&self) {
        let o = self.owned("stop");
        let mut running = o.running.lock().unwrap_or_else(|p| p.into_inner());
        if *running {
            o.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])
                .unwrap_or_else(|e| panic!("stopping the test PostgreSQL server: {e}"));
            *running = false;
        }
    }

    /// Starts the server again on the same port and data directory. Blocking: from async code
    /// use [`PgServer::start_again_async`].
    pub fn start_again(&self) {
        let o = self.owned("start_again");
        let mut running = o.running.lock().unwrap_or_else(|p| p.into_inner());
        if !*running {
            o.start_server()
                .unwrap_or_else(|e| panic!("restarting the test PostgreSQL server: {e}"));
            *running = true;
        }
    }

    /// [`PgServer::stop`] without blocking the async runtime.
    pub async fn stop_async(&self) {
        let o = self.owned("stop_async");
        if o.is_running() {
            run_async(o.pg_ctl_command(&["stop", "-m", "fast", "-w", "-t", "60"]))
                .await
                .unwrap_or_else(|e| panic!("stopping the test PostgreSQL server: {e}"));
            o.set_running(false);
        }
    }

    /// [`PgServer::start_again`] without blocking the async runtime.
    pub async fn start_again_async(&self) {
        let o = self.owned("start_again_async");
        if !o.is_running() {
            run_async(o.start_command())
                .await
                .unwrap_or_else(|e| panic!("restarting the test PostgreSQL server: {e}"));
            o.set_running(true);
        }
    }

    fn owned(&self, what: &str) -> &Owned {
        match &self.kind {
            Kind::Owned(o) => o,
            Kind::External(_) => panic!(
                "PgServer::{what} is unavailable: {URL_ENV} points at an external server this \
                 test cannot stop or start; unset it to let the test run its own"
            ),
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Kind::Owned(o) = &self.kind {
            if let Some(mut w) = o.watchdog.lock().ok().and_then(|mut w| w.take()) {
                let _ = w.kill();
                let _ = w.wait();
            }
            let running = o.running.lock().map(|r| *r).unwrap_or(true);
            if running {
                let _ = o.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
            }
        }
    }
}

impl Owned {
    fn launch(
        bin: &Path,
        template: &Path,
        as_postgres: bool,
        durability: Durability,
    ) -> Result<Owned, String> {
        let root = tempfile::Builder::new()
            .prefix("nightcrier-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory: {e}"))?;
        let data = root.path().join("data");
        let socket = root.path().join("socket");
        let log = root.path().join("server.log");
        std::fs::create_dir(&socket).map_err(|e| format!("creating {}: {e}", socket.display()))?;
        run(Command::new("cp").arg("-a").arg(template).arg(&data))?;
        if as_postgres {
            for p in [root.path(), socket.as_path()] {
                chown_postgres(p)?;
            }
        }
        let port = free_port()?;
        let o = Owned {
            bin: bin.to_owned(),
            _root: root,
            data,
            socket,
            log,
            port,
            as_postgres,
            durability,
            running: Mutex::new(false),
            watchdog: Mutex::new(None),
        };
        o.start_server()?;
        o.set_running(true);
        *o.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = o.spawn_watchdog().ok();
        Ok(o)
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn spawn_watchdog(&self) -> std::io::Result<std::process::Child> {
        let stop = self.pg_ctl_command(&["stop", "-m", "immediate"]);
        let mut argv: Vec<String> = vec![stop.get_program().to_string_lossy().into_owned()];
        argv.extend(stop.get_args().map(|a| a.to_string_lossy().into_owned()));
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; LC_ALL=C {cmd} >/dev/null 2>&1; \
             rm -rf '{root}'",
            pid = std::process::id(),
            cmd = quoted.join(" "),
            root = self._root.path().display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    }

    fn is_running(&self) -> bool {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_running(&self, up: bool) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = up;
    }

    fn start_server(&self) -> Result<(), String> {
        run(&mut self.start_command()).map(|_| ()).map_err(|e| {
            let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
            format!("{e}\nserver log:\n{tail}")
        })
    }

    fn start_command(&self) -> Command {
        let settings = match self.durability {
            Durability::Off => {
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_connections=300 -c shared_buffers=32MB"
            }
            Durability::Defaults => "-c max_connections=100",
        };
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {settings}",
            self.port,
            self.socket.display()
        );
        let log = self.log.display().to_string();
        self.pg_ctl_command(&["start", "-w", "-t", "60", "-l", &log, "-o", &opts])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(&mut self.pg_ctl_command(args)).map(|_| ())
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let data = self.data.display().to_string();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        pg_command(&self.bin.join("pg_ctl"), &all, self.as_postgres)
    }
}

/// The initdb result shared by every server: made once, then copied. Made in a private directory
/// and renamed into place, so concurrent first runs never see a half-made template.
fn template(bin: &Path, as_postgres: bool) -> Result<PathBuf, String> {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let template = base.join(format!("nightcrier-pg-template-{version}"));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    let work = tempfile::Builder::new()
        .prefix("nightcrier-pg-initdb-")
        .tempdir_in(&base)
        .map_err(|e| format!("creating a directory in {}: {e}", base.display()))?;
    let data = work.path().join("data");
    if as_postgres {
        chown_postgres(work.path())?;
    }
    let data_s = data.display().to_string();
    run(&mut pg_command(
        &bin.join("initdb"),
        &[
            "-D",
            &data_s,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        as_postgres,
    ))?;
    match std::fs::rename(&data, &template) {
        Ok(()) => Ok(template),
        // Another process won the race; its template is as good as ours.
        Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
        Err(e) => Err(format!(
            "moving the template to {}: {e}",
            template.display()
        )),
    }
}

fn find_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("NIGHTCRIER_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| "no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH".to_string())
}

fn running_as_root() -> bool {
    // The owner of a file we just created is our effective uid.
    let probe = tempfile::NamedTempFile::new();
    probe
        .ok()
        .and_then(|f| f.as_file().metadata().ok())
        .is_some_and(|m| m.uid() == 0)
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .ok_or_else(|| {
            "running as root, but there is no `postgres` user to run PostgreSQL as".to_string()
        })
}

fn chown_postgres(path: &Path) -> Result<(), String> {
    let (uid, gid) = postgres_ids()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown postgres {}: {e}", path.display()))
}

fn pg_command(program: &Path, args: &[&str], as_postgres: bool) -> Command {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args);
    // Keep the server's locale independent of the caller's environment.
    cmd.env("LC_ALL", "C");
    cmd
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

async fn run_async(cmd: Command) -> Result<(), String> {
    let mut cmd = tokio::process::Command::from(cmd);
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// `url` with its database (path) replaced by `db`.
fn replace_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(db);
            u.to_string()
        }
        Err(_) => panic!("{URL_ENV} is not a valid URL"),
    }
}

/// How long an operation may wait on the test server before a test gives up.
pub const PG_TIMEOUT: Duration = Duration::from_secs(30);
