//! The simulator's Kubernetes tools: kubernetes-mcp-server's core toolset as it lists and answers
//! it (names, input schemas and annotations from the server's `pkg/toolsets/core`; results as one
//! text content, YAML for objects and events, tables for lists, plain text for logs; failures as
//! `isError` results with the server's wording), over the objects of [`super::scenarios`].
//!
//! The simulated cluster is read-only: mutating tools (`pods_delete`, `pods_exec`, `pods_run`,
//! `resources_create_or_update`, `resources_delete`, `resources_scale`) are listed unless
//! [`super::SimConfig::read_only`] is set (as a server started without `--read-only` lists
//! them, so clients' own filtering can be tested), and calling one always gets the JSON-RPC error
//! a `--read-only` server gives for a tool it did not register: `-32602 unknown tool "name"`.
//!
//! Objects exist once a fault about them was emitted ([`Cluster::register`]), plus three healthy
//! worker nodes. Test hooks: [`ToolFault`] per tool name (error, hang, oversized answer).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::scenarios::{self, PodLogs, WORKERS};
use super::world::FaultSpec;

/// The core toolset's `tools/list` entries (descriptions shortened; schemas and annotations as
/// the server declares them).
const CORE_TOOLS: &str = include_str!("core_tools.json");

/// Tools the subscription code in `http.rs` answers itself.
const SUBSCRIPTION_TOOLS: [&str; 3] = [
    "events_subscribe",
    "events_unsubscribe",
    "events_list_subscriptions",
];

/// Tools that change the cluster: never answered.
pub const MUTATING_TOOLS: [&str; 6] = [
    "pods_delete",
    "pods_exec",
    "pods_run",
    "resources_create_or_update",
    "resources_delete",
    "resources_scale",
];

/// Faults registered at most (each adds a handful of objects); later ones are not served.
const MAX_REGISTERED: usize = 5_000;
/// Events kept (the oldest go first), as the API server's event TTL does.
const MAX_EVENTS: usize = 5_000;
/// Lines of a log returned when `tail` is not given (the tool's schema default).
const DEFAULT_TAIL: usize = 100;

/// How one tool misbehaves, for tests of clients that must survive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFault {
    /// An `isError` result with this text.
    Error(String),
    /// No answer until the server restarts or stops.
    Hang,
    /// A successful answer of this many bytes.
    Huge(usize),
}

type RpcResult = Result<Value, (i64, String)>;

#[derive(Default)]
struct Inner {
    registered: HashSet<String>,
    /// By (kind, namespace or "" for cluster-scoped, name).
    objects: HashMap<(String, String, String), Value>,
    /// By (namespace, pod).
    logs: HashMap<(String, String), PodLogs>,
    events: VecDeque<Value>,
}

/// The simulated cluster behind the tools.
pub(crate) struct Cluster {
    inner: Mutex<Inner>,
    faults: Mutex<HashMap<String, ToolFault>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain bookkeeping: a panic elsewhere leaves nothing half-done worth refusing to serve.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(kind: &str, ns: &str, name: &str) -> (String, String, String) {
    (kind.to_string(), ns.to_string(), name.to_string())
}

fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Node" | "Namespace" | "PersistentVolume" | "ClusterRole"
    )
}

/// True for a tool this module answers (everything but the subscription tools).
pub(crate) fn handles(tool: &str) -> bool {
    !SUBSCRIPTION_TOOLS.contains(&tool)
}

/// The `tools/list` result.
pub(crate) fn list(read_only: bool) -> Value {
    let mut tools: Vec<Value> = serde_json::from_str(CORE_TOOLS).unwrap_or_default();
    if read_only {
        tools.retain(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| !MUTATING_TOOLS.contains(&n))
        });
    }
    json!({ "tools": tools })
}

fn text(s: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": s.into()}]})
}

fn error(s: impl Into<String>) -> Value {
    json!({"content": [{"type": "text", "text": s.into()}], "isError": true})
}

fn yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

fn arg<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Cluster {
    pub fn new() -> Self {
        let cluster = Self {
            inner: Mutex::new(Inner::default()),
            faults: Mutex::new(HashMap::new()),
        };
        {
            let mut inner = lock(&cluster.inner);
            for node in scenarios::worker_nodes(Utc::now()) {
                let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
                inner.objects.insert(key("Node", "", &name), node);
            }
        }
        cluster
    }

    /// Adds the objects, logs and events of `spec`'s scenario, once per object.
    pub fn register(&self, spec: &FaultSpec) {
        let id = format!(
            "{}/{}/{}",
            spec.kind,
            spec.namespace.as_deref().unwrap_or(""),
            spec.name
        );
        {
            let inner = lock(&self.inner);
            if inner.registered.contains(&id) || inner.registered.len() >= MAX_REGISTERED {
                return;
            }
        }
        let Some(entry) = scenarios::build(spec, Utc::now()) else {
            return;
        };
        let mut inner = lock(&self.inner);
        if !inner.registered.insert(id) {
            return;
        }
        for o in entry.objects {
            let kind = o["kind"].as_str().unwrap_or("").to_string();
            let ns = o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
            inner.objects.insert((kind, ns, name), o);
        }
        for l in entry.logs {
            inner.logs.insert((l.namespace.clone(), l.pod.clone()), l);
        }
        for e in entry.events {
            if inner.events.len() == MAX_EVENTS {
                inner.events.pop_front();
            }
            inner.events.push_back(e);
        }
    }

    pub fn set_fault(&self, tool: &str, fault: Option<ToolFault>) {
        let mut faults = lock(&self.faults);
        match fault {
            Some(f) => faults.insert(tool.to_string(), f),
            None => faults.remove(tool),
        };
    }

    /// Answers `tools/call` for `name`; `Err` is a JSON-RPC error.
    pub async fn call(&self, name: &str, args: &Value, stop: CancellationToken) -> RpcResult {
        if MUTATING_TOOLS.contains(&name) || !self.known(name) {
            return Err((-32602, format!("unknown tool {name:?}")));
        }
        let fault = lock(&self.faults).get(name).cloned();
        match fault {
            Some(ToolFault::Error(msg)) => return Ok(error(msg)),
            Some(ToolFault::Hang) => {
                stop.cancelled().await;
                return Ok(error("server shutting down"));
            }
            Some(ToolFault::Huge(n)) => {
                let line = "x".repeat(99) + "\n";
                let mut s = line.repeat(n / 100 + 1);
                s.truncate(n);
                return Ok(text(s));
            }
            None => {}
        }
        Ok(self.answer(name, args))
    }

    fn known(&self, name: &str) -> bool {
        CORE_TOOLS.contains(&format!("\"name\": \"{name}\""))
    }

    fn answer(&self, name: &str, args: &Value) -> Value {
        let ns = arg(args, "namespace").unwrap_or("default");
        match name {
            "pods_get" => {
                let Some(pod) = arg(args, "name") else {
                    return error("failed to get pod, missing argument name");
                };
                match self.object("Pod", ns, pod) {
                    Some(o) => text(yaml(&o)),
                    None => error(format!(
                        "failed to get pod {pod} in namespace {ns}: pods \"{pod}\" not found"
                    )),
                }
            }
            "pods_log" => self.pods_log(ns, args),
            "events_list" => {
                let inner = lock(&self.inner);
                let events: Vec<&Value> = inner
                    .events
                    .iter()
                    .filter(|e| arg(args, "namespace").is_none_or(|n| e["Namespace"] == n))
                    .collect();
                if events.is_empty() {
                    return text("# No events found");
                }
                let body = serde_yaml_ng::to_string(&events).unwrap_or_default();
                text(format!(
                    "# The following events (YAML format) were found:\n{body}"
                ))
            }
            "resources_get" => self.resources_get(args),
            "pods_list_in_namespace" => {
                if arg(args, "namespace").is_none() {
                    return error("failed to list pods in namespace, missing argument namespace");
                }
                text(self.pod_table(Some(ns), args))
            }
            "pods_list" => text(self.pod_table(None, args)),
            "resources_list" => self.resources_list(args),
            "nodes_top" => self.nodes_top(arg(args, "name")),
            "namespaces_list" => {
                let inner = lock(&self.inner);
                let mut names: Vec<&str> = inner
                    .objects
                    .keys()
                    .map(|(_, ns, _)| ns.as_str())
                    .filter(|n| !n.is_empty())
                    .chain(["default", "kube-system"])
                    .collect();
                names.sort_unstable();
                names.dedup();
                let rows = names
                    .iter()
                    .map(|n| {
                        vec![
                            "v1".into(),
                            "Namespace".into(),
                            n.to_string(),
                            "Active".into(),
                        ]
                    })
                    .collect();
                text(table(&["APIVERSION", "KIND", "NAME", "STATUS"], rows))
            }
            "pods_top" => error("failed to get pods top: metrics API not available"),
            "nodes_log" | "nodes_stats_summary" => {
                let node = arg(args, "name").unwrap_or("");
                error(format!(
                    "failed to get node log for {node}: the server could not find the requested resource"
                ))
            }
            other => error(format!("tool {other:?} is not simulated")),
        }
    }

    fn object(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let ns = if is_cluster_scoped(kind) { "" } else { ns };
        lock(&self.inner).objects.get(&key(kind, ns, name)).cloned()
    }

    fn pods_log(&self, ns: &str, args: &Value) -> Value {
        let Some(pod) = arg(args, "name") else {
            return error("failed to get pod log, missing argument name");
        };
        let fail = |why: String| {
            error(format!(
                "failed to get pod {pod} log in namespace {ns}: {why}"
            ))
        };
        let logs = lock(&self.inner)
            .logs
            .get(&(ns.to_string(), pod.to_string()))
            .cloned();
        let Some(logs) = logs else {
            return fail(format!("pods \"{pod}\" not found"));
        };
        if let Some(c) = arg(args, "container") {
            if c != logs.container {
                return fail(format!("container {c} is not valid for pod {pod}"));
            }
        }
        let previous = args
            .get("previous")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let body = if previous {
            match logs.previous {
                Some(b) => b,
                None => {
                    return fail(format!(
                        "previous terminated container \"{}\" in pod \"{pod}\" not found",
                        logs.container
                    ))
                }
            }
        } else {
            match logs.current {
                Ok(b) => b,
                Err(e) => return fail(e),
            }
        };
        let tail = args
            .get("tail")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_TAIL, |t| usize::try_from(t).unwrap_or(usize::MAX));
        let lines: Vec<&str> = body.lines().collect();
        let start = if tail == 0 {
            0
        } else {
            lines.len().saturating_sub(tail)
        };
        let out = lines[start..].join("\n");
        if out.is_empty() {
            return text(format!(
                "The pod {pod} in namespace {ns} has not logged any message yet"
            ));
        }
        text(out + "\n")
    }

    fn resources_get(&self, args: &Value) -> Value {
        let (Some(api), Some(kind)) = (arg(args, "apiVersion"), arg(args, "kind")) else {
            return error("failed to get resource, missing argument apiVersion or kind");
        };
        let Some(name) = arg(args, "name") else {
            return error("failed to get resource, missing argument name");
        };
        let ns = arg(args, "namespace").unwrap_or("default");
        match self.object(kind, ns, name) {
            Some(o) if o["apiVersion"] == api => text(yaml(&o)),
            Some(_) => error(format!(
                "failed to get resource: no matches for kind \"{kind}\" in version \"{api}\""
            )),
            None => error(format!(
                "failed to get resource: {}s \"{name}\" not found",
                kind.to_lowercase()
            )),
        }
    }

    fn resources_list(&self, args: &Value) -> Value {
        let (Some(api), Some(kind)) = (arg(args, "apiVersion"), arg(args, "kind")) else {
            return error("failed to list resources, missing argument apiVersion or kind");
        };
        if kind == "Pod" {
            return text(self.pod_table(arg(args, "namespace"), args));
        }
        let ns = arg(args, "namespace");
        let selector = arg(args, "labelSelector");
        let inner = lock(&self.inner);
        let mut rows: Vec<Vec<String>> = inner
            .objects
            .iter()
            .filter(|((k, n, _), o)| {
                k == kind
                    && o["apiVersion"] == api
                    && ns.is_none_or(|ns| n == ns)
                    && selector.is_none_or(|s| labels_match(o, s))
            })
            .map(|((_, n, name), o)| {
                vec![
                    n.clone(),
                    api.to_string(),
                    kind.to_string(),
                    name.clone(),
                    age(o),
                    labels(o),
                ]
            })
            .collect();
        rows.sort();
        text(table(
            &["NAMESPACE", "APIVERSION", "KIND", "NAME", "AGE", "LABELS"],
            rows,
        ))
    }

    fn pod_table(&self, ns: Option<&str>, args: &Value) -> String {
        let selector = arg(args, "labelSelector");
        let field = arg(args, "fieldSelector");
        let inner = lock(&self.inner);
        let mut rows: Vec<Vec<String>> = inner
            .objects
            .iter()
            .filter(|((k, n, _), o)| {
                k == "Pod"
                    && ns.is_none_or(|ns| n == ns)
                    && selector.is_none_or(|s| labels_match(o, s))
                    && field.is_none_or(|f| fields_match(o, f))
            })
            .map(|((_, n, name), o)| pod_row(n, name, o))
            .collect();
        rows.sort();
        table(
            &[
                "NAMESPACE",
                "APIVERSION",
                "KIND",
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES",
                "LABELS",
            ],
            rows,
        )
    }

    fn nodes_top(&self, name: Option<&str>) -> Value {
        if let Some(n) = name {
            if !WORKERS.contains(&n) {
                return error(format!(
                    "failed to get nodes top: nodes.metrics.k8s.io \"{n}\" not found"
                ));
            }
        }
        let rows = WORKERS
            .iter()
            .enumerate()
            .filter(|(_, w)| name.is_none_or(|n| n == **w))
            .map(|(i, w)| {
                vec![
                    w.to_string(),
                    format!("{}m", 410 + 130 * i),
                    format!("{}%", 10 + 3 * i),
                    format!("{}Mi", 6100 + 900 * i),
                    format!("{}%", 41 + 6 * i),
                ]
            })
            .collect();
        text(table(
            &["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            rows,
        ))
    }
}

fn labels(o: &Value) -> String {
    o["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into())
}

/// Equality selectors only (`a=b,c=d`), which is what clients of these tools send.
fn labels_match(o: &Value, selector: &str) -> bool {
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => o["metadata"]["labels"][k.trim()] == v.trim_start_matches('=').trim(),
        None => o["metadata"]["labels"].get(term.trim()).is_some(),
    })
}

fn fields_match(o: &Value, selector: &str) -> bool {
    selector.split(',').all(|term| match term.split_once('=') {
        Some(("spec.nodeName", v)) => o["spec"]["nodeName"] == v,
        Some(("status.phase", v)) => o["status"]["phase"] == v,
        Some(("metadata.name", v)) => o["metadata"]["name"] == v,
        _ => false,
    })
}

fn age(o: &Value) -> String {
    let Some(t) = o["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    else {
        return "<unknown>".into();
    };
    let secs = (Utc::now() - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn pod_row(ns: &str, name: &str, o: &Value) -> Vec<String> {
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: u64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_u64())
        .sum();
    let status = statuses
        .iter()
        .find_map(|s| s["state"]["waiting"]["reason"].as_str())
        .or_else(|| o["status"]["phase"].as_str())
        .unwrap_or("Unknown");
    let or_none = |v: &Value| v.as_str().unwrap_or("<none>").to_string();
    vec![
        ns.to_string(),
        "v1".into(),
        "Pod".into(),
        name.to_string(),
        format!("{ready}/{total}"),
        status.to_string(),
        restarts.to_string(),
        age(o),
        or_none(&o["status"]["podIP"]),
        or_none(&o["spec"]["nodeName"]),
        "<none>".into(),
        "<none>".into(),
        labels(o),
    ]
}

/// Columns padded to the widest cell plus three spaces, as the server's table printer does.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}", width = w + 3));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Scenario;

    fn call(c: &Cluster, name: &str, args: Value) -> Value {
        c.answer(name, &args)
    }

    #[test]
    fn the_list_has_the_servers_annotations() {
        let all = list(false);
        let tools = all["tools"].as_array().unwrap();
        let by_name = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap().clone();
        assert_eq!(by_name("pods_log")["annotations"]["readOnlyHint"], true);
        assert_eq!(
            by_name("pods_delete")["annotations"]["destructiveHint"],
            true
        );
        assert!(by_name("pods_delete")["annotations"]
            .get("readOnlyHint")
            .is_none());
        assert_eq!(
            by_name("pods_log")["inputSchema"]["properties"]["previous"]["type"],
            "boolean"
        );
        let ro = list(true);
        assert!(ro["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["annotations"]["readOnlyHint"] == true));
    }

    #[test]
    fn a_crash_loop_shows_its_panic_in_the_previous_log() {
        let c = Cluster::new();
        let spec = Scenario::MissingEnv.example(3);
        c.register(&spec);
        let ns = spec.namespace.clone().unwrap();
        let r = call(
            &c,
            "pods_log",
            json!({"name": spec.name, "namespace": ns, "previous": true}),
        );
        let t = r["content"][0]["text"].as_str().unwrap();
        assert!(t.contains("DATABASE_URL is not set"), "{t}");
        let r = call(&c, "pods_get", json!({"name": spec.name, "namespace": ns}));
        assert!(r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("CrashLoopBackOff"));
        let r = call(&c, "pods_get", json!({"name": "nope", "namespace": ns}));
        assert_eq!(r["isError"], true);
        assert!(r["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("pods \"nope\" not found"));
    }
}
