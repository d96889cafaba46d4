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

    /// A fresh lease owner for one boot: `<instance>/<boot uuid>`.
    pub fn new_owner(&self) -> String {
        format!("{}{}", self.owner_prefix(), Uuid::now_v7())
    }
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
