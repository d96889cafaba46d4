//! The simulated cluster's faults: a fixed set of distinct broken objects, observed again and
//! again as the real server's informers observe persistent faults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{FixedOffset, Offset, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::scenarios::Scenario;
use crate::fault::{fault_id, Fault, ResourceRef};

/// One broken object and the fault it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    pub fault_type: String,
    pub severity: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub uid: String,
    /// Part of the faultId; empty for faults that are not about a container.
    pub container: String,
    pub context: String,
}

impl FaultSpec {
    /// The `i`-th distinct fault of a world seeded with `seed`: same inputs, same fault.
    ///
    /// Faults cycle through the five types. As on a real cluster, one crashing container yields
    /// both a `CrashLoop` (i % 5 == 0) and a `PodCrash` (the next i): same pod, same uid,
    /// different faultIds.
    pub fn generate(i: usize, seed: u64) -> Self {
        let object = if i % 5 == 1 { i - 1 } else { i };
        let mut rng =
            StdRng::seed_from_u64(seed ^ (object as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let uid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.random::<u32>(),
            rng.random::<u16>(),
            rng.random::<u16>() & 0xfff,
            rng.random::<u16>() & 0xfff,
            rng.random::<u64>() & 0xffff_ffff_ffff
        );
        let ns = ["default", "payments", "checkout", "batch"][object % 4].to_string();
        let (fault_type, severity, api_version, kind, name, namespace, container, context) =
            match i % 5 {
                0 => (
                    "CrashLoop",
                    "critical",
                    "v1",
                    "Pod",
                    format!("api-{object}-7d9f8b6c5-x2k4q"),
                    Some(ns),
                    "app",
                    "Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1, last reason: Error".to_string(),
                ),
                1 => (
                    "PodCrash",
                    "warning",
                    "v1",
                    "Pod",
                    format!("api-{object}-7d9f8b6c5-x2k4q"),
                    Some(ns),
                    "app",
                    "Container app terminated: exit code 1, reason Error".to_string(),
                ),
                2 => (
                    "NodeUnhealthy",
                    "critical",
                    "v1",
                    "Node",
                    format!("node-{i}"),
                    None,
                    "",
                    "Node condition Ready is Unknown: Kubelet stopped posting node status".to_string(),
                ),
                3 => (
                    "DeploymentFailure",
                    "warning",
                    "apps/v1",
                    "Deployment",
                    format!("frontend-{i}"),
                    Some(ns),
                    "",
                    "Deployment has 0 of 3 replicas available: ProgressDeadlineExceeded".to_string(),
                ),
                _ => (
                    "JobFailure",
                    "warning",
                    "batch/v1",
                    "Job",
                    format!("nightly-report-{i}"),
                    Some(ns),
                    "",
                    "Job has reached the specified backoff limit: BackoffLimitExceeded".to_string(),
                ),
            };
        let mut spec = Self {
            fault_type: fault_type.into(),
            severity: severity.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            name,
            namespace,
            uid,
            container: container.into(),
            context,
        };
        // The context names what the scenario's container last did (e.g. OOMKilled).
        if let Some(c) = Scenario::of(&spec).and_then(|s| s.context(fault_type, container)) {
            spec.context = c;
        }
        spec
    }

    /// The faultId the server computes for this fault in cluster context `cluster`.
    pub fn fault_id(&self, cluster: &str) -> String {
        fault_id(cluster, &self.fault_type, &self.uid, &self.container)
    }

    /// The notification payload for one subscription, timestamped now at the server's offset.
    pub fn to_fault(&self, cluster: &str, subscription_id: &str) -> Fault {
        // The real server prints its local time; +01:00 makes offsets visible in tests.
        let offset = FixedOffset::east_opt(3600).unwrap_or_else(|| Utc.fix());
        Fault {
            subscription_id: subscription_id.to_string(),
            cluster: cluster.to_string(),
            fault_id: self.fault_id(cluster),
            fault_type: self.fault_type.clone(),
            severity: self.severity.clone(),
            resource: ResourceRef {
                api_version: self.api_version.clone(),
                kind: self.kind.clone(),
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
            },
            context: self.context.clone(),
            timestamp: Utc::now()
                .with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

/// A rate such as `2/s`, `100/m` or `30/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// Time between two occurrences.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            3600 => "h",
            60 => "m",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {0:?}: expected COUNT/UNIT with COUNT > 0 and UNIT one of s, m, h (e.g. 2/s, 100/m)")]
pub struct InvalidRate(pub String);

impl FromStr for Rate {
    type Err = InvalidRate;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidRate(s.to_string());
        let (count, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Self { count, per })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_deterministic_and_distinct() {
        assert_eq!(FaultSpec::generate(3, 7), FaultSpec::generate(3, 7));
        let ids: std::collections::HashSet<_> = (0..500)
            .map(|i| FaultSpec::generate(i, 7).fault_id("sim-1"))
            .collect();
        assert_eq!(ids.len(), 500);
        let node = FaultSpec::generate(2, 7);
        assert_eq!((node.kind.as_str(), node.namespace), ("Node", None));
        let (crash_loop, pod_crash) = (FaultSpec::generate(5, 7), FaultSpec::generate(6, 7));
        assert_eq!(
            crash_loop.uid, pod_crash.uid,
            "one crashing container, two faults"
        );
        assert_ne!(crash_loop.fault_id("c"), pod_crash.fault_id("c"));
    }

    #[test]
    fn fault_payload_matches_the_protocol() {
        let spec = FaultSpec::generate(0, 1);
        let f = spec.to_fault("kind-kind", "sub-1");
        assert_eq!(
            f.fault_id,
            fault_id("kind-kind", "CrashLoop", &spec.uid, "app")
        );
        assert!(f.fault_id.len() == 16 && f.fault_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(f.timestamp.ends_with("+01:00"), "{}", f.timestamp);
        assert!(f.detected_at().is_some());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            "2/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(500)
        );
        assert_eq!(
            "100/m".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(600)
        );
        for bad in ["", "2", "0/s", "2/d", "x/s"] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.to_string().contains("invalid rate"), "{e}");
        }
    }
}
