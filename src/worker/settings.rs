//! The pool's knobs, taken from `limits.*`, `worker.*` and `agent.*`.

use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
use crate::store::ClaimLimits;

/// Beyond the agents' own kill grace, how long a terminated run may take to write its
/// bookkeeping before the pool abandons its task and does the bookkeeping itself.
const TERMINATE_MARGIN: Duration = Duration::from_secs(5);

/// Used when neither `worker.instance_name` nor the host name is available.
const FALLBACK_INSTANCE: &str = "nightcrier";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_concurrent_agents: u32,
    pub max_agents_per_cluster: u32,
    pub poll_interval: Duration,
    pub lease_duration: Duration,
    pub heartbeat_interval: Duration,
    pub rescue_interval: Duration,
    pub max_attempts: u32,
    pub shutdown_grace: Duration,
    /// After the runs are told to stop, how long their tasks may take before they are aborted.
    pub terminate_timeout: Duration,
    /// Names this process in leases. Must be unique among processes sharing the database: at
    /// start, running leases of other boots of the same instance are taken for crash leftovers.
    pub instance: String,
}

impl PoolSettings {
    pub fn from_config(config: &Config) -> Self {
        let w = &config.worker;
        let kill_grace = config
            .clusters
            .iter()
            .filter_map(|c| c.agent.as_ref().map(|a| a.kill_grace))
            .fold(config.agent.kill_grace, Duration::max);
        let instance = w
            .instance_name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| {
                hostname::get()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| FALLBACK_INSTANCE.to_string());
        Self {
            max_concurrent_agents: config.limits.max_concurrent_agents,
            max_agents_per_cluster: config.limits.max_agents_per_cluster,
            poll_interval: w.poll_interval,
            lease_duration: w.lease_duration,
            heartbeat_interval: w.heartbeat_interval,
            rescue_interval: w.rescue_interval,
            max_attempts: w.max_attempts,
            shutdown_grace: w.shutdown_grace,
            terminate_timeout: kill_grace + TERMINATE_MARGIN,
            instance,
        }
    }

    pub fn claim_limits(&self) -> ClaimLimits {
        ClaimLimits {
            max_concurrent_agents: self.max_concurrent_agents,
            max_agents_per_cluster: self.max_agents_per_cluster,
            lease: self.lease_duration,
        }
    }

    /// What every lease of this instance's boots starts with.
    pub fn owner_prefix(&self) -> String {
        format!("{}/", self.instance)
    }

    /// A fresh lease owner for one boot: `<instance>/<boot uuid>/<pid>.<start time>`. The last
    /// part lets a restart tell a crashed boot from a live process that (wrongly) shares the
    /// instance name.
    pub fn new_owner(&self) -> String {
        let me = process_identity(std::process::id()).unwrap_or_else(|| "unknown".into());
        format!("{}{}/{me}", self.owner_prefix(), Uuid::now_v7())
    }
}

/// `<pid>.<start time>` of a live process (start time in clock ticks since boot, from
/// `/proc/<pid>/stat`): unique on this host even when pids are reused, e.g. PID 1 in a container
/// that restarted. `None` when no such process exists.
pub fn process_identity(pid: u32) -> Option<String> {
    let stat = crate::procfs::stat(i32::try_from(pid).ok()?)?;
    Some(format!("{pid}.{}", stat.start_time))
}

/// True when the lease owner names another process that is still running (a live process of the
/// same instance name), so its leases are not leftovers of a crash. A previous pool of this very
/// process is not "another process": its leases are leftovers.
pub fn owner_is_another_live_process(owner: &str) -> bool {
    let Some(identity) = owner.rsplit('/').next() else {
        return false;
    };
    let Some(pid) = identity
        .split('.')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && process_identity(pid).as_deref() == Some(identity)
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_this_process_and_outlive_nothing() {
        let s = PoolSettings::default();
        let owner = s.new_owner();
        assert!(owner.starts_with(&s.owner_prefix()), "{owner}");
        // Our own process: a previous pool of it left these, so they are leftovers.
        assert!(!owner_is_another_live_process(&owner), "{owner}");
        // PID 1 is alive: with its real start time it is another live process, with any other
        // start time it is a dead process whose pid was reused.
        let init = process_identity(1).expect("pid 1 exists");
        assert!(owner_is_another_live_process(&format!("h/b/{init}")));
        assert!(!owner_is_another_live_process("h/b/1.999999999999"));
        assert!(!owner_is_another_live_process("host/boot/not-a-pid"));
        assert!(!owner_is_another_live_process("host/0193aa"));
    }

    #[test]
    fn settings_follow_the_config() {
        let mut c = Config::default();
        c.worker.instance_name = Some("edge-1".into());
        c.limits.max_concurrent_agents = 7;
        c.agent.kill_grace = Duration::from_secs(3);
        let s = PoolSettings::from_config(&c);
        assert_eq!(s.max_concurrent_agents, 7);
        assert_eq!(s.max_agents_per_cluster, 1);
        assert_eq!(s.terminate_timeout, Duration::from_secs(8));
        assert_eq!(s.owner_prefix(), "edge-1/");
        let (a, b) = (s.new_owner(), s.new_owner());
        assert!(a.starts_with("edge-1/") && a.len() > "edge-1/".len());
        assert_ne!(a, b, "each boot gets its own owner");
    }

    #[test]
    fn blank_instance_name_falls_back_to_the_host() {
        let mut c = Config::default();
        c.worker.instance_name = Some("  ".into());
        let s = PoolSettings::from_config(&c);
        assert!(!s.instance.trim().is_empty());
    }
}
