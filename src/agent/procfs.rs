//! Finding an agent's processes through `/proc`: the members of its process group, and whether
//! a process carries a run's marker variable. Used to make sure nothing of a run survives it,
//! and at restart to kill the groups a crashed nightcrier left behind, without trusting a pid
//! that may since have been reused by an unrelated process. Reading `/proc` itself is
//! [`crate::procfs`]'s.

use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, Pid};
use uuid::Uuid;

use super::error::AgentError;

/// Set in every agent's environment (and inherited by its children) to `<incident_id>:<attempt>`.
pub const MARKER_VAR: &str = "NIGHTCRIER_AGENT_RUN";

pub fn marker_value(incident_id: Uuid, attempt: i32) -> String {
    format!("{incident_id}:{attempt}")
}

use crate::procfs::{environ, environ_entries, pids as all_pids, stat as read_stat, Stat};

fn is_alive(stat: &Stat) -> bool {
    stat.is_alive()
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .filter_map(read_stat)
        .filter(|s| s.pgrp == pgid && is_alive(s))
        .map(|s| s.pid)
        .collect()
}

/// Whether `pid`'s environment holds `MARKER_VAR=<value>` exactly.
pub fn has_marker(pid: i32, value: &str) -> bool {
    let Some(environ) = environ(pid) else {
        return false;
    };
    let wanted = format!("{MARKER_VAR}={value}");
    let found = environ_entries(&environ).any(|kv| kv == wanted.as_bytes());
    found
}

/// Live processes carrying the marker of this run (for tests and diagnostics).
pub fn live_processes_with_marker(incident_id: Uuid, attempt: i32) -> Vec<i32> {
    let value = marker_value(incident_id, attempt);
    all_pids()
        .filter_map(read_stat)
        .filter(|s| is_alive(s) && has_marker(s.pid, &value))
        .map(|s| s.pid)
        .collect()
}

/// A process group on this host whose members carry an agent marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentGroup {
    pub pgid: i32,
    pub incident_id: Uuid,
    pub attempt: i32,
    /// Its live members carrying the marker.
    pub pids: Vec<i32>,
}

/// Every live process group on this host that carries an agent marker, for restart recovery
/// when a crash came before the agent's pid was recorded. Call it before this process starts
/// agents of its own (they would be listed too), and kill only the groups of incidents being
/// recovered: another nightcrier on the same host may own the rest.
pub fn find_agent_groups() -> Vec<AgentGroup> {
    let prefix = format!("{MARKER_VAR}=");
    let mut groups: Vec<AgentGroup> = Vec::new();
    for stat in all_pids().filter_map(read_stat).filter(is_alive) {
        let Some(environ) = environ(stat.pid) else {
            continue;
        };
        let marker = environ_entries(&environ)
            .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split_once(':'))
            .and_then(|(id, attempt)| Some((id.parse().ok()?, attempt.parse().ok()?)));
        let Some((incident_id, attempt)) = marker else {
            continue;
        };
        match groups
            .iter_mut()
            .find(|g| g.pgid == stat.pgrp && g.incident_id == incident_id && g.attempt == attempt)
        {
            Some(g) => g.pids.push(stat.pid),
            None => groups.push(AgentGroup {
                pgid: stat.pgrp,
                incident_id,
                attempt,
                pids: vec![stat.pid],
            }),
        }
    }
    groups
}

/// Sends `signal` to process group `pgid`. `Ok(false)` when the group no longer exists.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> Result<bool, AgentError> {
    check_group_id(pgid)?;
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(source) => Err(AgentError::Signal { pgid, source }),
    }
}

/// Never signal group 0/1 or our own group: that would be nightcrier itself (or everything).
fn check_group_id(pgid: i32) -> Result<(), AgentError> {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return Err(AgentError::InvalidGroup(pgid));
    }
    Ok(())
}

/// For restart recovery: kills the process group `pid` left by a previous nightcrier process if,
/// and only if, one of its live members carries the marker of `incident_id`/`attempt` (after a
/// crash the pid may belong to something else by now). Returns whether it killed anything.
/// SIGKILL straight away: the run it belonged to is already over. Death is asynchronous but
/// immediate for practical purposes; [`wait_group_gone`] waits for it when that matters.
pub fn kill_leftover_group(pid: i32, incident_id: Uuid, attempt: i32) -> Result<bool, AgentError> {
    check_group_id(pid)?;
    let value = marker_value(incident_id, attempt);
    let ours = live_group_members(pid)
        .into_iter()
        .any(|member| has_marker(member, &value));
    if !ours {
        return Ok(false);
    }
    tracing::warn!(%incident_id, attempt, pgid = pid, "killing leftover agent process group");
    signal_group(pid, Signal::SIGKILL)
}

/// Waits until no live member of `pgid` remains, polling `/proc`, at most `bound`. Returns the
/// members still alive at the end (empty on success).
pub async fn wait_group_gone(pgid: i32, bound: Duration) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let left = live_group_members(pgid);
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills every live process carrying exactly this run's marker: those that left the agent's
/// process group (`setsid`, a daemonizing tool) and so escaped the group kill. Repeats until
/// none is left (a stray may fork while it is being killed) or `bound` has passed; returns the
/// ones still alive then. The marker is checked again right before each signal, so a pid
/// reused in between is not hit.
pub async fn kill_marked(value: &str, bound: Duration) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let left: Vec<i32> = all_pids()
            .filter_map(read_stat)
            .filter(|s| is_alive(s) && has_marker(s.pid, value))
            .map(|s| s.pid)
            .collect();
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        for pid in &left {
            if has_marker(*pid, value) && check_group_id(*pid).is_ok() {
                tracing::debug!(
                    pid,
                    marker = value,
                    "killing an agent process that left its group"
                );
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn reads_our_own_stat_and_group() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).unwrap();
        assert_eq!(stat.pid, me);
        assert_eq!(stat.pgrp, getpgrp().as_raw());
        assert!(is_alive(&stat));
        assert!(live_group_members(stat.pgrp).contains(&me));
    }

    #[test]
    fn refuses_to_signal_our_own_or_special_groups() {
        for pgid in [0, 1, -5, getpgrp().as_raw()] {
            assert!(matches!(
                kill_leftover_group(pgid, Uuid::nil(), 1),
                Err(AgentError::InvalidGroup(_))
            ));
        }
    }

    #[test]
    fn finds_and_kills_a_marked_group() {
        let id = Uuid::now_v7();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(MARKER_VAR, marker_value(id, 4))
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        // Until the child has exec'd, /proc shows the environment it forked with (no marker):
        // wait for the exec rather than read once (seen failing on a loaded CI machine).
        let mut found: Vec<AgentGroup> = Vec::new();
        for _ in 0..200 {
            found = find_agent_groups()
                .into_iter()
                .filter(|g| g.incident_id == id)
                .collect();
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert_eq!(
            found,
            vec![AgentGroup {
                pgid,
                incident_id: id,
                attempt: 4,
                pids: vec![pgid]
            }]
        );
        assert!(kill_leftover_group(pgid, id, 4).unwrap());
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }

    #[test]
    fn a_group_without_our_marker_is_left_alone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        assert!(!kill_leftover_group(pgid, Uuid::nil(), 1).unwrap());
        assert_eq!(live_group_members(pgid), vec![pgid]);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
