//! Budgets and pending expiry, enforced where the queue is: inside the claim.
//!
//! A claim first reads this hour's runs and today's spend per cluster (UTC clock windows, from
//! the agent-run rows), decides which clusters a budget holds back, marks their pending
//! incidents with the reason (or ends them `skipped` when the operator chose `on_budget: skip`),
//! and claims only among the others, all under the claim's lock (SQLite's write lock, the
//! PostgreSQL advisory lock): budgets hold across processes and restarts like the concurrency
//! limits, because they are counted from rows, not from memory.
//!
//! Spend is known only once a run has been accounted (after it ends), so runs in flight can
//! carry the spend past its budget by at most their own cost; the hourly count is exact.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{time, ClaimLimits, Claimed, Result, Store, StoreError};
use crate::accounting::{day_start, hour_start};
use crate::config::{Config, OnBudget};

/// One scope's limits (global or a cluster's).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    /// Agent runs started per UTC clock hour.
    pub max_per_hour: Option<u32>,
    /// USD per UTC day.
    pub max_spend_per_day_usd: Option<f64>,
    /// End held-back incidents `skipped` instead of leaving them pending.
    pub skip: bool,
}

impl Budget {
    fn is_limited(&self) -> bool {
        self.max_per_hour.is_some() || self.max_spend_per_day_usd.is_some()
    }
}

/// The budgets and pending TTLs in force, from `budgets` and `dedup.pending_ttl`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BudgetPolicy {
    pub global: Budget,
    /// Clusters with their own limits (in addition to the global ones).
    pub clusters: BTreeMap<String, Budget>,
    pub pending_ttl: Option<Duration>,
    pub cluster_pending_ttl: BTreeMap<String, Duration>,
}

impl BudgetPolicy {
    pub fn from_config(c: &Config) -> Self {
        let b = &c.budgets;
        let skip = |o: Option<OnBudget>| o.unwrap_or(b.on_budget) == OnBudget::Skip;
        Self {
            global: Budget {
                max_per_hour: b.max_investigations_per_hour,
                max_spend_per_day_usd: b.max_spend_per_day_usd,
                skip: skip(None),
            },
            clusters: b
                .clusters
                .iter()
                .map(|(name, cb)| {
                    let budget = Budget {
                        max_per_hour: cb.max_investigations_per_hour,
                        max_spend_per_day_usd: cb.max_spend_per_day_usd,
                        skip: skip(cb.on_budget),
                    };
                    (name.clone(), budget)
                })
                .collect(),
            pending_ttl: c.dedup.pending_ttl,
            cluster_pending_ttl: b
                .clusters
                .iter()
                .filter_map(|(name, cb)| cb.pending_ttl.map(|t| (name.clone(), t)))
                .collect(),
        }
    }

    /// True when some budget limits claims (otherwise claims take the plain, faster path).
    pub fn limits_claims(&self) -> bool {
        self.global.is_limited() || self.clusters.values().any(Budget::is_limited)
    }
}

/// Which pending incidents one expiry statement ends: one cluster's (`cluster`), or every
/// cluster's except those with their own TTL (`except`).
pub(super) struct ExpiryScope<'a> {
    pub cluster: Option<&'a str>,
    pub except: &'a [String],
    /// Pending since before this: expired.
    pub cutoff: DateTime<Utc>,
    pub reason: &'a str,
}

/// One cluster's consumption in the current windows.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct WindowUsage {
    pub cluster: String,
    pub runs_this_hour: i64,
    pub spend_today: f64,
}

/// Why claims are held back: globally, or per cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Holds {
    pub global: Option<Hold>,
    pub clusters: Vec<(String, Hold)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hold {
    pub reason: String,
    pub skip: bool,
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M UTC").to_string()
}

fn check(scope: &str, b: &Budget, runs: i64, spend: f64, now: DateTime<Utc>) -> Option<Hold> {
    if let Some(max) = b.max_per_hour.filter(|m| runs >= i64::from(*m)) {
        let next = hour_start(now) + TimeDelta::hours(1);
        return Some(Hold {
            reason: format!(
                "hourly budget of {scope} reached ({runs} of {max} investigations), next slot at {}",
                hhmm(next)
            ),
            skip: b.skip,
        });
    }
    if let Some(max) = b.max_spend_per_day_usd.filter(|m| spend >= *m) {
        let next = day_start(now) + TimeDelta::days(1);
        return Some(Hold {
            reason: format!(
                "daily spend budget of {scope} reached (${spend:.2} of ${max:.2}), next slot at {}",
                next.format("%Y-%m-%d %H:%M UTC")
            ),
            skip: b.skip,
        });
    }
    None
}

/// Which budgets the usage in the windows around `now` exhausts.
pub(super) fn evaluate(policy: &BudgetPolicy, usage: &[WindowUsage], now: DateTime<Utc>) -> Holds {
    let runs: i64 = usage.iter().map(|u| u.runs_this_hour).sum();
    let spend: f64 = usage.iter().map(|u| u.spend_today).sum();
    let global = check("all clusters", &policy.global, runs, spend, now);
    let clusters = policy
        .clusters
        .iter()
        .filter_map(|(name, b)| {
            let u = usage.iter().find(|u| &u.cluster == name);
            let (r, s) = u.map_or((0, 0.0), |u| (u.runs_this_hour, u.spend_today));
            check(&format!("cluster {name}"), b, r, s, now).map(|h| (name.clone(), h))
        })
        .collect();
    Holds { global, clusters }
}

impl Store {
    /// Puts `policy` in force for the claims and expiry of this handle and its clones.
    pub fn set_budgets(&self, policy: BudgetPolicy) {
        let mut slot = self
            .inner
            .budgets
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = std::sync::Arc::new(policy);
    }

    pub fn budgets(&self) -> std::sync::Arc<BudgetPolicy> {
        self.inner
            .budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// [`Store::claim`] judging the budget windows as at `now` (tests step time through it; the
    /// run's own times are still taken from the clock).
    pub async fn claim_at(
        &self,
        owner: &str,
        limits: ClaimLimits,
        now: DateTime<Utc>,
    ) -> Result<Option<Claimed>> {
        if owner.trim().is_empty() {
            return Err(StoreError::InvalidInput("lease owner is empty".into()));
        }
        let lease = time::duration(limits.lease, "lease")?;
        let policy = self.budgets();
        if !policy.limits_claims() {
            return self.claim_unbudgeted(owner, limits).await;
        }
        let (store, owner) = (self.clone(), owner.to_owned());
        super::detached(async move {
            on_driver!(store.claim_budgeted(&owner, limits, lease, &policy, now))
        })
        .await
    }

    /// Pending incidents older than their cluster's pending TTL (pending since creation, or
    /// since their last retry) end `expired` with the reason. Returns how many.
    pub async fn expire_pending_at(&self, now: DateTime<Utc>) -> Result<u64> {
        let policy = self.budgets();
        let mut expired = 0;
        let overridden: Vec<String> = policy.cluster_pending_ttl.keys().cloned().collect();
        let mut scopes: Vec<(Option<String>, Duration)> = policy
            .cluster_pending_ttl
            .iter()
            .map(|(c, t)| (Some(c.clone()), *t))
            .collect();
        if let Some(ttl) = policy.pending_ttl {
            scopes.push((None, ttl));
        }
        for (cluster, ttl) in scopes {
            let cutoff = now - time::duration(ttl, "pending TTL")?;
            let reason = format!(
                "expired: pending longer than {} without an investigation",
                humantime::format_duration(ttl)
            );
            let (store, overridden) = (self.clone(), overridden.clone());
            expired += super::detached(async move {
                let scope = ExpiryScope {
                    cluster: cluster.as_deref(),
                    except: &overridden,
                    cutoff,
                    reason: &reason,
                };
                on_driver!(store.expire_pending(&scope))
            })
            .await?;
        }
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_name_the_scope_and_the_next_slot() {
        let now: DateTime<Utc> = "2026-12-02T11:40:00Z".parse().unwrap();
        let policy = BudgetPolicy {
            global: Budget {
                max_spend_per_day_usd: Some(10.0),
                ..Budget::default()
            },
            clusters: [(
                "prod".to_string(),
                Budget {
                    max_per_hour: Some(2),
                    skip: true,
                    ..Budget::default()
                },
            )]
            .into(),
            ..BudgetPolicy::default()
        };
        let usage = |runs, spend| WindowUsage {
            cluster: "prod".into(),
            runs_this_hour: runs,
            spend_today: spend,
        };
        assert_eq!(evaluate(&policy, &[usage(1, 1.0)], now), Holds::default());
        let holds = evaluate(&policy, &[usage(2, 1.0)], now);
        assert_eq!(holds.global, None);
        assert_eq!(
            holds.clusters,
            [(
                "prod".to_string(),
                Hold {
                    reason: "hourly budget of cluster prod reached (2 of 2 investigations), \
                             next slot at 12:00 UTC"
                        .into(),
                    skip: true
                }
            )]
        );
        let holds = evaluate(&policy, &[usage(0, 10.5)], now);
        assert_eq!(
            holds.global.unwrap().reason,
            "daily spend budget of all clusters reached ($10.50 of $10.00), next slot at \
             2026-12-03 00:00 UTC"
        );
        assert!(!BudgetPolicy::default().limits_claims());
        assert!(policy.limits_claims());
    }
}
