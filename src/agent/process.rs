//! Starting the agent and ending it. The agent leads its own process group; stdout and stderr
//! are one `O_APPEND` file description (no pipe through nightcrier, so nothing can fill up and
//! block, and nothing reaches nightcrier's stdout). On timeout or cancellation the whole group
//! gets SIGTERM, then SIGKILL after the grace; and whatever the ending, the group gets a final
//! SIGKILL, because a grandchild that outlives its leader is still the agent's.
//!
//! A descendant that leaves the group (`setsid`) escapes the group kill; it still carries the
//! run's marker variable in its environment, so after the group kill every live process with
//! that marker is killed too ([`procfs::kill_marked`]), and at start-up the worker kills marked
//! processes of runs that are over. (A process that also clears its environment escapes both;
//! only a cgroup would hold it.) The final SIGKILL goes to the group id after the leader was
//! reaped, which is safe because Linux does not hand out a pid while a group of that id exists.

use std::fs::File;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::error::AgentError;
use super::invocation::{Invocation, ENV_PASSTHROUGH};
use super::procfs::{self, MARKER_VAR};

/// How long to wait for the group's last members to die after the final SIGKILL.
const GROUP_EXIT_BOUND: Duration = Duration::from_secs(5);

/// Starts the agent. `marker` goes into its environment for [`procfs::kill_leftover_group`].
/// `stdin` is the file of [`Invocation::stdin`], opened by the caller through the workspace
/// (never by path, which the agent could have replaced by a symlink).
pub fn spawn(
    inv: &Invocation,
    stdin: Option<File>,
    log: File,
    marker: &str,
) -> Result<Child, AgentError> {
    let spawn_err = |source| AgentError::Spawn {
        program: inv.program.clone(),
        source,
    };
    let stderr = log.try_clone().map_err(spawn_err)?;
    let stdin = stdin.map_or_else(Stdio::null, Stdio::from);
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .env_clear()
        .envs(
            ENV_PASSTHROUGH
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .envs(inv.env.iter().map(|(k, v)| (k, v.expose())))
        .env(MARKER_VAR, marker)
        .current_dir(&inv.cwd)
        .stdin(stdin)
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        // Dropping the run's future (an aborted task) must not leave the leader running; the
        // rest of the group is handled by `GroupGuard`.
        .kill_on_drop(true);
    child_setup(&mut cmd);
    cmd.spawn().map_err(spawn_err)
}

/// In the child between fork and exec: die with nightcrier (SIGKILL when the parent goes), and
/// create files private to nightcrier's user like the workspace's own.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process. The fork happens
/// on a tokio runtime thread, which lives as long as the runtime, i.e. as long as nightcrier's
/// work; that is the intent. It only reaches the leader; the rest of the group is killed at
/// restart by [`procfs::kill_leftover_group`].
#[allow(unsafe_code)]
fn child_setup(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes three plain syscalls (prctl, getppid, umask), allocates nothing
    // and takes no lock; `io::Error::from_raw_os_error`/`last_os_error` do not allocate.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            {
                let sig = libc::SIGKILL as libc::c_ulong;
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // The parent died before the prctl above: the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            libc::umask(0o077);
            Ok(())
        });
    }
}

/// How the process ended.
#[derive(Debug)]
pub enum Ending {
    /// The leader exited on its own.
    Exited(ExitStatus),
    /// The timeout elapsed; the group was terminated.
    TimedOut,
    /// `cancel` fired; the group was terminated.
    Interrupted,
}

/// Bounds of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub kill_grace: Duration,
}

/// Kills the group if the run's future is dropped before the group was dealt with.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = procfs::signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Waits for the agent, bounded by `limits.timeout` and `cancel`, and makes sure no process of
/// its group is alive when it returns. Also returns when the leader was seen to end (the end of
/// the agent's own time; what follows is nightcrier's clean-up).
pub async fn supervise(
    mut child: Child,
    limits: Limits,
    cancel: &CancellationToken,
    stop_command: Option<&(String, Vec<String>)>,
    marker: &str,
) -> Result<(Ending, Instant), AgentError> {
    let pid = child.id().unwrap_or(0);
    let pgid = pid as i32;
    let mut guard = GroupGuard { pgid, armed: true };

    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status.map_err(|source| AgentError::Wait { pid, source })?),
        () = tokio::time::sleep(limits.timeout) => Ending::TimedOut,
        () = cancel.cancelled() => Ending::Interrupted,
    };
    if !matches!(ending, Ending::Exited(_)) {
        terminate(&mut child, pgid, limits.kill_grace, stop_command).await?;
    }
    let ended = Instant::now();
    // `ESRCH` says no process (not even a zombie) has this group id: nothing to wait for, and
    // no scan of `/proc` (the common case: the agent left no child behind).
    if procfs::signal_group(pgid, Signal::SIGKILL)? {
        tracing::debug!(pgid, "killed agent processes that outlived the agent");
        let left = procfs::wait_group_gone(pgid, GROUP_EXIT_BOUND).await;
        if !left.is_empty() {
            tracing::warn!(pgid, ?left, "agent processes still alive after SIGKILL");
        }
    }
    guard.armed = false;
    let strays = procfs::kill_marked(marker, GROUP_EXIT_BOUND).await;
    if !strays.is_empty() {
        tracing::warn!(
            pgid,
            ?strays,
            "agent processes that left the group still alive after SIGKILL"
        );
    }
    Ok((ending, ended))
}

/// SIGTERM to the group, SIGKILL after `grace` if the leader is still there. A container's stop
/// command runs alongside, since the runtime client may exit without stopping the container.
async fn terminate(
    child: &mut Child,
    pgid: i32,
    grace: Duration,
    stop_command: Option<&(String, Vec<String>)>,
) -> Result<(), AgentError> {
    procfs::signal_group(pgid, Signal::SIGTERM)?;
    let stop = async {
        if let Some((program, args)) = stop_command {
            run_stop_command(program, args, grace).await;
        }
    };
    let leader = async {
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            procfs::signal_group(pgid, Signal::SIGKILL)?;
            child.wait().await.map_err(|source| AgentError::Wait {
                pid: pgid as u32,
                source,
            })?;
        }
        Ok::<(), AgentError>(())
    };
    let ((), result) = tokio::join!(stop, leader);
    result
}

async fn run_stop_command(program: &str, args: &[String], bound: Duration) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(bound, async { cmd.status().await }).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => tracing::debug!(program, ?args, %status, "stop command failed"),
        Ok(Err(e)) => tracing::warn!(program, ?args, error = %e, "stop command did not start"),
        Err(_) => tracing::warn!(program, ?args, "stop command timed out"),
    }
}
