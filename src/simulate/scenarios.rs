//! The simulated cluster's broken workloads: a small set of realistic failures, each with a known
//! root cause, and the Kubernetes objects, container logs and events that show it.
//!
//! Every simulated fault maps to one [`Scenario`] (by its type and a hash of its object's name,
//! so the mapping is stable across runs and restarts). [`build`] turns a fault into the objects
//! the read-only tools of `tools.rs` serve: the faulted object, its owners, its pod (with current
//! and previous logs) and the namespace's events, consistent with the fault's `context`.
//!
//! Nothing here talks to clients; this module only describes what the cluster looks like.

use chrono::{DateTime, Duration as Age, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::world::FaultSpec;

/// A simulated failure with a known root cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// A crash loop: the app panics at start because a required environment variable is unset.
    MissingEnv,
    /// The container is OOMKilled: its memory limit is below what the app needs.
    OomKilled,
    /// Pods cannot start: the image tag does not exist in the registry.
    BadImageTag,
    /// Pods run but never become ready: the readiness probe targets the wrong port.
    ReadinessWrongPort,
    /// Pods stay Pending: no node has the memory the pod requests.
    Unschedulable,
    /// A node is NotReady: its disk filled up and the kubelet stopped posting status.
    NodeNotReady,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::MissingEnv,
        Scenario::OomKilled,
        Scenario::BadImageTag,
        Scenario::ReadinessWrongPort,
        Scenario::Unschedulable,
        Scenario::NodeNotReady,
    ];

    /// A short stable name (`missing-env`, `oom-killed`, ...).
    pub fn slug(self) -> &'static str {
        match self {
            Scenario::MissingEnv => "missing-env",
            Scenario::OomKilled => "oom-killed",
            Scenario::BadImageTag => "bad-image-tag",
            Scenario::ReadinessWrongPort => "readiness-wrong-port",
            Scenario::Unschedulable => "unschedulable",
            Scenario::NodeNotReady => "node-not-ready",
        }
    }

    /// The category a good report would give (as in `verdict.json`).
    pub fn category(self) -> &'static str {
        match self {
            Scenario::MissingEnv => "configuration",
            Scenario::OomKilled => "resources",
            Scenario::BadImageTag => "image",
            Scenario::ReadinessWrongPort => "probe",
            Scenario::Unschedulable => "scheduling",
            Scenario::NodeNotReady => "node",
        }
    }

    /// Words a correct root cause must contain (lowercase): what tests and the demo check.
    pub fn root_cause_keywords(self) -> &'static [&'static str] {
        match self {
            Scenario::MissingEnv => &["database_url", "not set"],
            Scenario::OomKilled => &["oomkilled", "256mi"],
            Scenario::BadImageTag => &["v2.4.1-rcl", "not found"],
            Scenario::ReadinessWrongPort => &["8081", "8080"],
            Scenario::Unschedulable => &["48gi", "insufficient memory"],
            Scenario::NodeNotReady => &["disk", "kubelet"],
        }
    }

    /// Which scenario a fault shows: by fault type and kind, then a hash of the object's name.
    pub fn of(spec: &FaultSpec) -> Option<Scenario> {
        let h = name_hash(&spec.name);
        match spec.kind.as_str() {
            "Pod" | "Job" => Some(if h % 2 == 0 {
                Scenario::MissingEnv
            } else {
                Scenario::OomKilled
            }),
            "Deployment" => Some(match h % 3 {
                0 => Scenario::BadImageTag,
                1 => Scenario::ReadinessWrongPort,
                _ => Scenario::Unschedulable,
            }),
            "Node" => Some(Scenario::NodeNotReady),
            _ => None,
        }
    }

    /// The first generated fault (`FaultSpec::generate(i, seed)`) showing this scenario on a Pod,
    /// Deployment or Node (Jobs show the pod scenarios too).
    pub fn example(self, seed: u64) -> FaultSpec {
        (0..1000)
            .map(|i| FaultSpec::generate(i, seed))
            .find(|s| s.kind != "Job" && Scenario::of(s) == Some(self))
            .unwrap_or_else(|| FaultSpec::generate(0, seed))
    }

    /// The fault context the server would send for this scenario, if it differs from the
    /// generic one (the container's last state shows the cause).
    pub(crate) fn context(self, fault_type: &str, container: &str) -> Option<String> {
        match (self, fault_type) {
            (Scenario::MissingEnv, "CrashLoop") => Some("Container entered CrashLoopBackOff state, restart count: 6, last exit code: 2, last reason: Error".into()),
            (Scenario::MissingEnv, "PodCrash") => Some(format!("Container {container} terminated: exit code 2, reason Error")),
            (Scenario::OomKilled, "CrashLoop") => Some("Container entered CrashLoopBackOff state, restart count: 5, last exit code: 137, last reason: OOMKilled".into()),
            (Scenario::OomKilled, "PodCrash") => Some(format!("Container {container} terminated: exit code 137, reason OOMKilled")),
            _ => None,
        }
    }
}

/// FNV-1a: a stable hash (std's hasher is randomly seeded per process).
fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A pod's container logs.
#[derive(Debug, Clone)]
pub(crate) struct PodLogs {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// `Err`: the error the kubelet gives (container waiting to start).
    pub current: Result<String, String>,
    /// The terminated instance before the last restart, if there was one.
    pub previous: Option<String>,
}

/// What one fault adds to the simulated cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorldEntry {
    /// Full objects (apiVersion, kind, metadata, spec, status), as `kubectl get -o json` shows.
    pub objects: Vec<Value>,
    pub logs: Vec<PodLogs>,
    /// Events in the server's `events_list` shape.
    pub events: Vec<Value>,
}

/// The healthy worker nodes every simulated cluster has (pods run there).
pub(crate) const WORKERS: [&str; 3] = ["worker-a", "worker-b", "worker-c"];

/// `time.Time.String()` as Go prints it in UTC: what `events_list` shows as `Timestamp`.
fn go_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn event(
    ns: &str,
    t: DateTime<Utc>,
    kind: &str,
    name: &str,
    typ: &str,
    reason: &str,
    msg: &str,
) -> Value {
    let api = match kind {
        "Deployment" | "ReplicaSet" => "apps/v1",
        "Job" => "batch/v1",
        _ => "v1",
    };
    json!({
        "Namespace": ns,
        "Timestamp": go_time(t),
        "Type": typ,
        "Reason": reason,
        "InvolvedObject": {"apiVersion": api, "Kind": kind, "Name": name},
        "Message": msg,
    })
}

/// A pod's short suffix, stable for a name.
fn suffix(name: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = name_hash(name);
    (0..len)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Everything `spec` adds to the cluster, observed at `now`. `None` for kinds without a scenario.
pub(crate) fn build(spec: &FaultSpec, now: DateTime<Utc>) -> Option<WorldEntry> {
    let scenario = Scenario::of(spec)?;
    let ns = spec.namespace.clone().unwrap_or_else(|| "default".into());
    Some(match (scenario, spec.kind.as_str()) {
        (Scenario::NodeNotReady, _) => node_not_ready(spec, now),
        (_, "Pod") => {
            // api-N-7d9f8b6c5-x2k4q: ReplicaSet api-N-7d9f8b6c5, Deployment api-N.
            let rs = spec
                .name
                .rsplit_once('-')
                .map_or(spec.name.as_str(), |(a, _)| a);
            let deploy = rs.rsplit_once('-').map_or(rs, |(a, _)| a);
            let owner = Owner::Deployment {
                deployment: deploy.to_string(),
                replicaset: rs.to_string(),
                uid: uid_like(&format!("{ns}/{deploy}")),
            };
            crashing_pod(
                scenario,
                &ns,
                &spec.name,
                &spec.uid,
                container_of(spec),
                owner,
                now,
            )
        }
        (_, "Job") => {
            let pod = format!("{}-{}", spec.name, suffix(&spec.name, 5));
            let owner = Owner::Job {
                job: spec.name.clone(),
                uid: spec.uid.clone(),
            };
            let pod_uid = uid_like(&format!("{ns}/{pod}"));
            crashing_pod(
                scenario,
                &ns,
                &pod,
                &pod_uid,
                container_of(spec),
                owner,
                now,
            )
        }
        (_, _) => failing_deployment(scenario, spec, &ns, now),
    })
}

fn container_of(spec: &FaultSpec) -> &str {
    if spec.container.is_empty() {
        "app"
    } else {
        &spec.container
    }
}

/// A uid-shaped string derived from a name (for objects the fault does not carry a uid for).
fn uid_like(seed: &str) -> String {
    let a = name_hash(seed);
    let b = name_hash(&format!("{seed}#"));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a as u32,
        (a >> 32) as u16,
        (a >> 48) & 0xfff,
        b & 0xfff,
        (b >> 12) & 0xffff_ffff_ffff
    )
}

enum Owner {
    Deployment {
        deployment: String,
        replicaset: String,
        uid: String,
    },
    Job {
        job: String,
        uid: String,
    },
}

fn crashing_pod(
    scenario: Scenario,
    ns: &str,
    pod: &str,
    pod_uid: &str,
    container: &str,
    owner: Owner,
    now: DateTime<Utc>,
) -> WorldEntry {
    let started = now - Age::minutes(14);
    let last_start = now - Age::seconds(95);
    let last_end = now - Age::seconds(94);
    let oom = scenario == Scenario::OomKilled;
    let (image, app) = if oom {
        ("registry.example.com/checkout-api:2.3.0", "checkout-api")
    } else {
        ("registry.example.com/payments-api:1.14.2", "payments-api")
    };
    let is_job = matches!(owner, Owner::Job { .. });
    let restarts = if is_job {
        0
    } else if oom {
        5
    } else {
        6
    };
    let (exit_code, reason) = if oom {
        (137, "OOMKilled")
    } else {
        (2, "Error")
    };
    let env = if oom {
        json!([{"name": "PORT", "value": "8080"}, {"name": "CACHE_WARMUP", "value": "full"}])
    } else {
        // DATABASE_URL is missing: the rollout dropped it with the old secretRef.
        json!([{"name": "PORT", "value": "8080"}, {"name": "LOG_LEVEL", "value": "info"}])
    };
    let resources = if oom {
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "128Mi"}})
    } else {
        json!({"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    };
    let terminated = json!({"exitCode": exit_code, "reason": reason,
        "startedAt": rfc3339(last_start), "finishedAt": rfc3339(last_end),
        "containerID": format!("containerd://{:016x}", name_hash(pod))});
    let (state, last_state, phase) = if is_job {
        (json!({"terminated": terminated}), json!({}), "Failed")
    } else {
        (
            json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off 2m40s restarting failed container={container} pod={pod}_{ns}({pod_uid})")}}),
            json!({"terminated": terminated}),
            "Running",
        )
    };
    let (owner_ref, labels, mut objects) = match &owner {
        Owner::Deployment {
            deployment,
            replicaset,
            uid,
        } => {
            let hash = replicaset.rsplit('-').next().unwrap_or("");
            let rs_uid = uid_like(&format!("{ns}/{replicaset}"));
            let labels = json!({"app": deployment, "pod-template-hash": hash});
            let template = pod_template(container, image, &env, &resources, &labels, None);
            let objects = vec![
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": deployment, "namespace": ns, "uid": uid,
                        "generation": 7, "creationTimestamp": rfc3339(now - Age::days(41)),
                        "labels": {"app": deployment}},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": deployment}},
                        "template": template.clone()},
                    "status": {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 0,
                        "availableReplicas": 0, "unavailableReplicas": 2, "observedGeneration": 7,
                        "conditions": [
                            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                             "message": "Deployment does not have minimum availability.",
                             "lastTransitionTime": rfc3339(started)},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                             "message": format!("ReplicaSet \"{replicaset}\" has successfully progressed."),
                             "lastTransitionTime": rfc3339(started)}]}}),
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": replicaset, "namespace": ns, "uid": rs_uid,
                        "creationTimestamp": rfc3339(started), "labels": labels.clone(),
                        "annotations": {"deployment.kubernetes.io/revision": "7"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                            "name": deployment, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                    "spec": {"replicas": 2, "selector": {"matchLabels": labels.clone()}, "template": template},
                    "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 0,
                        "availableReplicas": 0, "observedGeneration": 1}}),
            ];
            let owner_ref = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": replicaset,
                "uid": rs_uid, "controller": true, "blockOwnerDeletion": true});
            (owner_ref, labels, objects)
        }
        Owner::Job { job, uid } => {
            let labels = json!({"job-name": job, "batch.kubernetes.io/job-name": job,
                "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid});
            let template = pod_template(container, image, &env, &resources, &labels, Some("Never"));
            let objects = vec![json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": job, "namespace": ns, "uid": uid,
                    "creationTimestamp": rfc3339(started), "labels": {"job-name": job}},
                "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                    "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
                    "template": template},
                "status": {"failed": 1, "startTime": rfc3339(started),
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": rfc3339(last_end)}]}})];
            let owner_ref = json!({"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid,
                "controller": true, "blockOwnerDeletion": true});
            (owner_ref, labels, objects)
        }
    };
    let node = WORKERS[(name_hash(pod) % 3) as usize];
    let ip = format!(
        "10.244.{}.{}",
        name_hash(pod) % 3 + 1,
        name_hash(pod) % 200 + 10
    );
    let mut pod_obj = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": ns, "uid": pod_uid, "labels": labels,
            "creationTimestamp": rfc3339(started), "ownerReferences": [owner_ref]},
        "status": {"phase": phase, "podIP": ip, "hostIP": "192.168.10.11", "qosClass": "Burstable",
            "startTime": rfc3339(started),
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                "message": format!("containers with unready status: [{container}]"),
                "lastTransitionTime": rfc3339(last_end)}],
            "containerStatuses": [{"name": container, "image": image, "ready": false, "started": false,
                "restartCount": restarts, "state": state, "lastState": last_state}]}});
    let spec_restart = if is_job { "Never" } else { "Always" };
    pod_obj["spec"] = json!({"nodeName": node, "restartPolicy": spec_restart,
        "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
        "containers": [container_spec(container, image, &env, &resources, None)]});
    objects.push(pod_obj);

    let ts = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let crash_log = if oom {
        format!(
            "{t0} INFO  {app} 2.3.0 starting (GOMEMLIMIT unset)\n\
             {t0} INFO  listening on :8080\n\
             {t1} INFO  cache warmup mode=full: loading catalog\n\
             {t2} INFO  catalog cache: 612000 items loaded (heap 171Mi)\n\
             {t3} INFO  catalog cache: 1224000 items loaded (heap 229Mi)\n\
             {t4} WARN  catalog cache: 1836000 items loaded (heap 251Mi), GC running continuously\n",
            t0 = ts(last_start),
            t1 = ts(last_start + Age::milliseconds(120)),
            t2 = ts(last_start + Age::milliseconds(400)),
            t3 = ts(last_start + Age::milliseconds(700)),
            t4 = ts(last_start + Age::milliseconds(950)),
        )
    } else {
        format!(
            "{t0} INFO  {app} 1.14.2 starting\n\
             {t0} INFO  loading configuration from environment\n\
             panic: required environment variable DATABASE_URL is not set\n\
             \n\
             goroutine 1 [running]:\n\
             main.mustEnv({{0x9c4e2a, 0xc}})\n\
             \t/src/cmd/api/config.go:41 +0x1b4\n\
             main.loadConfig()\n\
             \t/src/cmd/api/config.go:18 +0x2f\n\
             main.main()\n\
             \t/src/cmd/api/main.go:27 +0x45\n",
            t0 = ts(last_start),
        )
    };
    let logs = if is_job {
        PodLogs {
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            current: Ok(crash_log),
            previous: None,
        }
    } else {
        PodLogs {
            namespace: ns.into(),
            pod: pod.into(),
            container: container.into(),
            // The container is waiting in back-off: the kubelet shows the last run again.
            current: Ok(crash_log.clone()),
            previous: Some(crash_log),
        }
    };
    let mut events = vec![
        event(
            ns,
            started,
            "Pod",
            pod,
            "Normal",
            "Scheduled",
            &format!("Successfully assigned {ns}/{pod} to {node}"),
        ),
        event(
            ns,
            last_start - Age::seconds(1),
            "Pod",
            pod,
            "Normal",
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
        ),
        event(
            ns,
            last_start,
            "Pod",
            pod,
            "Normal",
            "Started",
            &format!("Started container {container}"),
        ),
    ];
    if is_job {
        if let Owner::Job { job, .. } = &owner {
            events.push(event(
                ns,
                last_end,
                "Job",
                job,
                "Warning",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        }
    } else {
        events.push(event(
            ns,
            now - Age::seconds(20),
            "Pod",
            pod,
            "Warning",
            "BackOff",
            &format!(
                "Back-off restarting failed container {container} in pod {pod}_{ns}({pod_uid})"
            ),
        ));
    }
    WorldEntry {
        objects,
        logs: vec![logs],
        events,
    }
}

fn container_spec(
    name: &str,
    image: &str,
    env: &Value,
    resources: &Value,
    probe: Option<Value>,
) -> Value {
    let mut c = json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": env, "resources": resources});
    if let Some(p) = probe {
        c["readinessProbe"] = p;
    }
    c
}

fn pod_template(
    container: &str,
    image: &str,
    env: &Value,
    resources: &Value,
    labels: &Value,
    restart: Option<&str>,
) -> Value {
    let mut spec = json!({"containers": [container_spec(container, image, env, resources, None)]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({"metadata": {"labels": labels}, "spec": spec})
}

/// A Deployment whose pods never become available (image, probe or scheduling).
fn failing_deployment(
    scenario: Scenario,
    spec: &FaultSpec,
    ns: &str,
    now: DateTime<Utc>,
) -> WorldEntry {
    let name = &spec.name;
    let hash = format!("{:x}", name_hash(name) & 0xff_ffff_ffff)
        .chars()
        .take(9)
        .collect::<String>();
    let rs = format!("{name}-{hash}");
    let pod = format!("{rs}-{}", suffix(name, 5));
    let pod_uid = uid_like(&format!("{ns}/{pod}"));
    let rs_uid = uid_like(&format!("{ns}/{rs}"));
    let started = now - Age::minutes(12);
    let labels = json!({"app": name, "pod-template-hash": hash});
    let node = WORKERS[(name_hash(&pod) % 3) as usize];
    let ip = format!(
        "10.244.{}.{}",
        name_hash(&pod) % 3 + 1,
        name_hash(&pod) % 200 + 10
    );
    let env = json!([{"name": "PORT", "value": "8080"}]);
    let (image, resources, probe) = match scenario {
        Scenario::BadImageTag => (
            // The release pipeline typed the tag with an "l" for a "1".
            "registry.example.com/frontend:v2.4.1-rcl",
            json!({"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}),
            None,
        ),
        Scenario::ReadinessWrongPort => (
            "registry.example.com/frontend:v2.4.0",
            json!({"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}),
            Some(
                json!({"httpGet": {"path": "/healthz", "port": 8081, "scheme": "HTTP"},
                "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 1, "successThreshold": 1}),
            ),
        ),
        _ => (
            "registry.example.com/frontend:v2.4.0",
            json!({"limits": {"memory": "48Gi"}, "requests": {"cpu": "500m", "memory": "48Gi"}}),
            None,
        ),
    };
    let container = "frontend";
    let c = container_spec(container, image, &env, &resources, probe.clone());
    let template = json!({"metadata": {"labels": {"app": name, "pod-template-hash": hash}},
        "spec": {"containers": [c.clone()]}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": spec.uid, "generation": 12,
            "creationTimestamp": rfc3339(now - Age::days(90)), "labels": {"app": name}},
        "spec": {"replicas": 3, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": name}}, "template": template.clone()},
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 0, "availableReplicas": 0,
            "unavailableReplicas": 3, "observedGeneration": 12,
            "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                 "message": "Deployment does not have minimum availability.", "lastTransitionTime": rfc3339(started)},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": format!("ReplicaSet \"{rs}\" has timed out progressing."),
                 "lastTransitionTime": rfc3339(now - Age::minutes(2))}]}});
    let replicaset = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs, "namespace": ns, "uid": rs_uid, "labels": labels.clone(),
            "creationTimestamp": rfc3339(started),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                "uid": spec.uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels.clone()}, "template": template},
        "status": {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 0, "availableReplicas": 0}});
    let mut pod_obj = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": ns, "uid": pod_uid, "labels": labels,
            "creationTimestamp": rfc3339(started),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"restartPolicy": "Always", "containers": [c]}});
    let status_ready = |reason: &str, message: String| {
        json!({"type": "Ready", "status": "False", "reason": reason, "message": message,
            "lastTransitionTime": rfc3339(started)})
    };
    let (status, logs, events) = match scenario {
        Scenario::BadImageTag => {
            let pull_err = format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found");
            pod_obj["spec"]["nodeName"] = json!(node);
            (
                json!({"phase": "Pending", "podIP": ip, "startTime": rfc3339(started),
                    "conditions": [status_ready("ContainersNotReady", format!("containers with unready status: [{container}]"))],
                    "containerStatuses": [{"name": container, "image": image, "ready": false, "restartCount": 0,
                        "started": false, "state": {"waiting": {"reason": "ImagePullBackOff",
                            "message": format!("Back-off pulling image \"{image}\": ErrImagePull: {pull_err}")}},
                        "lastState": {}}]}),
                PodLogs { namespace: ns.into(), pod: pod.clone(), container: container.into(),
                    current: Err(format!("container \"{container}\" in pod \"{pod}\" is waiting to start: trying and failing to pull image")),
                    previous: None },
                vec![
                    event(ns, started, "Pod", &pod, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{pod} to {node}")),
                    event(ns, now - Age::minutes(11), "Pod", &pod, "Normal", "Pulling", &format!("Pulling image \"{image}\"")),
                    event(ns, now - Age::minutes(1), "Pod", &pod, "Warning", "Failed", &format!("Failed to pull image \"{image}\": {pull_err}")),
                    event(ns, now - Age::minutes(1), "Pod", &pod, "Warning", "Failed", "Error: ErrImagePull"),
                    event(ns, now - Age::seconds(30), "Pod", &pod, "Warning", "BackOff", &format!("Back-off pulling image \"{image}\"")),
                    event(ns, now - Age::minutes(2), "Deployment", name, "Warning", "ProgressDeadlineExceeded", &format!("ReplicaSet \"{rs}\" has timed out progressing.")),
                ],
            )
        }
        Scenario::ReadinessWrongPort => {
            pod_obj["spec"]["nodeName"] = json!(node);
            let ts = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            let log = format!(
                "{t0} INFO  frontend v2.4.0 starting\n{t0} INFO  health endpoint at /healthz\n{t1} INFO  listening on :8080\n",
                t0 = ts(started + Age::seconds(3)),
                t1 = ts(started + Age::seconds(4)),
            );
            (
                json!({"phase": "Running", "podIP": ip, "startTime": rfc3339(started),
                    "conditions": [status_ready("ContainersNotReady", format!("containers with unready status: [{container}]"))],
                    "containerStatuses": [{"name": container, "image": image, "ready": false, "restartCount": 0,
                        "started": true, "state": {"running": {"startedAt": rfc3339(started + Age::seconds(3))}},
                        "lastState": {}}]}),
                PodLogs { namespace: ns.into(), pod: pod.clone(), container: container.into(),
                    current: Ok(log), previous: None },
                vec![
                    event(ns, started, "Pod", &pod, "Normal", "Scheduled", &format!("Successfully assigned {ns}/{pod} to {node}")),
                    event(ns, started + Age::seconds(3), "Pod", &pod, "Normal", "Started", &format!("Started container {container}")),
                    event(ns, now - Age::seconds(10), "Pod", &pod, "Warning", "Unhealthy",
                        &format!("Readiness probe failed: Get \"http://{ip}:8081/healthz\": dial tcp {ip}:8081: connect: connection refused")),
                    event(ns, now - Age::minutes(2), "Deployment", name, "Warning", "ProgressDeadlineExceeded", &format!("ReplicaSet \"{rs}\" has timed out progressing.")),
                ],
            )
        }
        _ => {
            let msg = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
            (
                json!({"phase": "Pending", "qosClass": "Burstable",
                    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": msg, "lastProbeTime": null, "lastTransitionTime": rfc3339(started)}]}),
                PodLogs { namespace: ns.into(), pod: pod.clone(), container: container.into(),
                    current: Err(format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")),
                    previous: None },
                vec![
                    event(ns, now - Age::seconds(40), "Pod", &pod, "Warning", "FailedScheduling", msg),
                    event(ns, now - Age::minutes(2), "Deployment", name, "Warning", "ProgressDeadlineExceeded", &format!("ReplicaSet \"{rs}\" has timed out progressing.")),
                ],
            )
        }
    };
    pod_obj["status"] = status;
    WorldEntry {
        objects: vec![deployment, replicaset, pod_obj],
        logs: vec![logs],
        events,
    }
}

/// A worker node whose disk filled up; its kubelet then stopped posting status.
fn node_not_ready(spec: &FaultSpec, now: DateTime<Utc>) -> WorldEntry {
    let name = &spec.name;
    let down = now - Age::minutes(6);
    let pressure = now - Age::minutes(19);
    let cond = |typ: &str, status: &str, reason: &str, message: &str, at: DateTime<Utc>| {
        json!({"type": typ, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": rfc3339(down), "lastTransitionTime": rfc3339(at)})
    };
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": spec.uid, "creationTimestamp": rfc3339(now - Age::days(120)),
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m6i.xlarge"}},
        "spec": {"podCIDR": "10.244.7.0/24", "taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": rfc3339(down)},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": rfc3339(down)}]},
        "status": {
            "capacity": {"cpu": "4", "memory": "16057588Ki", "ephemeral-storage": "52416492Ki", "pods": "110"},
            "allocatable": {"cpu": "3920m", "memory": "15215860Ki", "ephemeral-storage": "48307038948", "pods": "110"},
            "conditions": [
                cond("MemoryPressure", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", down),
                cond("DiskPressure", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", down),
                cond("PIDPressure", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", down),
                cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", down)],
            "nodeInfo": {"kubeletVersion": "v1.31.4", "containerRuntimeVersion": "containerd://1.7.24",
                "osImage": "Ubuntu 24.04.1 LTS", "kernelVersion": "6.8.0-1019-aws"}}});
    let ns = "default";
    let events = vec![
        event(ns, pressure, "Node", name, "Warning", "EvictionThresholdMet",
            "Attempting to reclaim ephemeral-storage"),
        event(ns, pressure + Age::seconds(5), "Node", name, "Normal", "NodeHasDiskPressure",
            &format!("Node {name} status is now: NodeHasDiskPressure")),
        event(ns, now - Age::minutes(9), "Node", name, "Warning", "FreeDiskSpaceFailed",
            "Failed to garbage collect required amount of images. Attempted to free 9521345331 bytes, but only found 0 bytes eligible to free."),
        event(ns, now - Age::minutes(8), "Node", name, "Warning", "ImageGCFailed",
            "failed to garbage collect required amount of images. Attempted to free 9521345331 bytes, but only found 0 bytes eligible to free."),
        event(ns, down, "Node", name, "Normal", "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady")),
    ];
    WorldEntry {
        objects: vec![node],
        logs: Vec::new(),
        events,
    }
}

/// The healthy worker nodes (schedulable, with metrics).
pub(crate) fn worker_nodes(now: DateTime<Utc>) -> Vec<Value> {
    WORKERS
        .iter()
        .map(|w| {
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": w, "uid": uid_like(w), "creationTimestamp": rfc3339(now - Age::days(200)),
                    "labels": {"kubernetes.io/hostname": w, "node.kubernetes.io/instance-type": "m6i.xlarge"}},
                "spec": {"podCIDR": "10.244.1.0/24"},
                "status": {"capacity": {"cpu": "4", "memory": "16057588Ki", "pods": "110"},
                    "allocatable": {"cpu": "3920m", "memory": "15215860Ki", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": rfc3339(now - Age::days(200))}]}})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_an_example_and_objects() {
        for s in Scenario::ALL {
            let spec = s.example(7);
            assert_eq!(Scenario::of(&spec), Some(s), "{s:?}");
            let entry = build(&spec, Utc::now()).expect("a world entry");
            assert!(
                !entry.objects.is_empty() && !entry.events.is_empty(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn crash_loops_carry_the_cause_in_the_previous_log_and_spec() {
        let spec = Scenario::MissingEnv.example(7);
        let e = build(&spec, Utc::now()).unwrap();
        let prev = e.logs[0].previous.as_deref().unwrap();
        assert!(prev.contains("panic: required environment variable DATABASE_URL is not set"));
        let spec = Scenario::OomKilled.example(7);
        let e = build(&spec, Utc::now()).unwrap();
        let pod = e.objects.iter().find(|o| o["kind"] == "Pod").unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["memory"],
            "256Mi"
        );
        assert_eq!(
            pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"],
            "OOMKilled"
        );
        assert!(
            spec.context.contains("OOMKilled") || spec.fault_type == "JobFailure",
            "{}",
            spec.context
        );
    }
}
