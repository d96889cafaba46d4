//! Rules about values that the types alone cannot express. Every problem is collected, so a user
//! fixes a file in one round.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::{AgentConfig, AgentPreset, Config};

/// One invalid value, named by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

struct Checker {
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl Checker {
    fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.fail(key, "must be at least 1");
        }
    }

    fn nonzero(&mut self, key: &str, d: Duration) {
        if d.is_zero() {
            self.fail(key, "must be longer than 0s");
        }
    }
}

/// Valid cluster names: non-empty, `[A-Za-z0-9_.-]`, at most 63 characters (they end up in paths
/// and metric labels).
pub fn is_valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name != "."
        && name != ".."
}

/// Ok(warnings) or every problem found.
pub fn validate(c: &Config) -> Result<Vec<String>, Vec<Problem>> {
    let mut ck = Checker {
        problems: Vec::new(),
        warnings: Vec::new(),
    };

    let url = c.database.url.expose();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        ck.fail(
            "database.url",
            format!(
                "unsupported database URL {:?}: expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB",
                c.database.url.redacted()
            ),
        );
    }
    ck.positive(
        "database.max_connections",
        c.database.max_connections.into(),
    );
    ck.nonzero("database.acquire_timeout", c.database.acquire_timeout);
    if c.workspace_root.as_os_str().is_empty() {
        ck.fail("workspace_root", "must not be empty");
    }

    ck.positive(
        "limits.max_concurrent_agents",
        c.limits.max_concurrent_agents.into(),
    );
    ck.positive(
        "limits.max_agents_per_cluster",
        c.limits.max_agents_per_cluster.into(),
    );

    ck.positive("ingest.buffer_capacity", c.ingest.buffer_capacity as u64);
    ck.positive("ingest.batch_max", c.ingest.batch_max as u64);

    let r = &c.reconnect;
    ck.nonzero("reconnect.initial_backoff", r.initial_backoff);
    if r.max_backoff < r.initial_backoff {
        ck.fail(
            "reconnect.max_backoff",
            "must not be shorter than reconnect.initial_backoff",
        );
    }
    ck.nonzero("reconnect.ping_interval", r.ping_interval);
    ck.nonzero("reconnect.ping_timeout", r.ping_timeout);
    ck.nonzero(
        "reconnect.subscription_check_interval",
        r.subscription_check_interval,
    );

    let w = &c.worker;
    ck.nonzero("worker.poll_interval", w.poll_interval);
    ck.nonzero("worker.lease_duration", w.lease_duration);
    ck.nonzero("worker.heartbeat_interval", w.heartbeat_interval);
    ck.nonzero("worker.rescue_interval", w.rescue_interval);
    if w.heartbeat_interval >= w.lease_duration {
        ck.fail(
            "worker.heartbeat_interval",
            "must be shorter than worker.lease_duration, or leases expire while agents run",
        );
    }
    ck.positive("worker.max_attempts", w.max_attempts.into());
    if let Some(name) = &w.instance_name {
        if name.is_empty() || name.contains('/') {
            ck.fail(
                "worker.instance_name",
                "must be non-empty and must not contain '/'",
            );
        }
    }

    check_agent(&mut ck, "agent", &c.agent);

    if !c.http.listen.is_empty() && c.http.listen.parse::<SocketAddr>().is_err() {
        ck.fail(
            "http.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:9090 (use \"\" to turn HTTP off)",
                c.http.listen
            ),
        );
    }

    check_reporting(&mut ck, c);

    let mut seen = HashSet::new();
    for (i, cl) in c.clusters.iter().enumerate() {
        let key = format!("clusters[{i}]");
        if !is_valid_cluster_name(&cl.name) {
            ck.fail(
                format!("{key}.name"),
                format!(
                    "{:?} is not a valid cluster name: use 1 to 63 characters from A-Z a-z 0-9 _ . -",
                    cl.name
                ),
            );
        } else if !seen.insert(cl.name.as_str()) {
            ck.fail(
                format!("{key}.name"),
                format!("cluster name {:?} is used more than once", cl.name),
            );
        }
        match url::Url::parse(&cl.mcp.endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.path().ends_with('/') && u.path() != "/" {
                    ck.warnings.push(format!(
                        "{key}.mcp.endpoint: {} ends with '/'; the server serves /mcp exactly",
                        cl.mcp.endpoint
                    ));
                }
            }
            _ => ck.fail(
                format!("{key}.mcp.endpoint"),
                format!(
                    "{:?} is not an http(s) URL like http://127.0.0.1:8080/mcp",
                    cl.mcp.endpoint
                ),
            ),
        }
        for name in cl.mcp.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                ck.fail(
                    format!("{key}.mcp.headers"),
                    format!("{name:?} is not a valid HTTP header name"),
                );
            }
        }
        ck.positive(
            &format!("{key}.mcp.max_event_bytes"),
            cl.mcp.max_event_bytes as u64,
        );
        ck.nonzero(
            &format!("{key}.mcp.request_timeout"),
            cl.mcp.request_timeout,
        );
        ck.nonzero(
            &format!("{key}.mcp.subscribe_timeout"),
            cl.mcp.subscribe_timeout,
        );
        ck.nonzero(&format!("{key}.mcp.event_timeout"), cl.mcp.event_timeout);
        if let Some(agent) = &cl.agent {
            check_agent(&mut ck, &format!("{key}.agent"), agent);
        }
        if cl.triage.enabled {
            match &cl.triage.kubeconfig {
                Some(p) if !p.is_file() => ck.warnings.push(format!(
                    "{key}.triage.kubeconfig: {} does not exist (yet); agents will fail to reach the cluster",
                    p.display()
                )),
                None => ck.warnings.push(format!(
                    "{key}.triage.kubeconfig is not set; agents get no KUBECONFIG for cluster {:?}",
                    cl.name
                )),
                _ => {}
            }
        }
    }

    check_intake(&mut ck, c);

    if ck.problems.is_empty() {
        Ok(ck.warnings)
    } else {
        Err(ck.problems)
    }
}

fn check_intake(ck: &mut Checker, c: &Config) {
    let i = &c.intake;
    if !i.listen.is_empty() && i.listen.parse::<SocketAddr>().is_err() {
        ck.fail(
            "intake.listen",
            format!(
                "{:?} is not a host:port address like 127.0.0.1:9094",
                i.listen
            ),
        );
    }
    let Some(am) = &i.alertmanager else { return };
    if i.listen.is_empty() && c.http.listen.is_empty() {
        ck.fail(
            "intake.listen",
            "the Alertmanager receiver needs a listener: set intake.listen or http.listen",
        );
    }
    let key = "intake.alertmanager";
    let a = &am.auth;
    if a.bearer_token.is_some() && a.bearer_token_file.is_some() {
        ck.fail(
            format!("{key}.auth"),
            "set bearer_token or bearer_token_file, not both",
        );
    }
    if a.bearer_token
        .as_ref()
        .is_some_and(|t| t.expose().trim().is_empty())
    {
        ck.fail(format!("{key}.auth.bearer_token"), "must not be empty");
    }
    match &a.basic {
        Some(b) => {
            if b.username.is_empty() || b.username.contains(':') {
                ck.fail(
                    format!("{key}.auth.basic.username"),
                    "must be non-empty and contain no ':'",
                );
            }
            if b.password.is_some() == b.password_file.is_some() {
                ck.fail(
                    format!("{key}.auth.basic"),
                    "set exactly one of password or password_file",
                );
            }
        }
        None if a.bearer_token.is_none() && a.bearer_token_file.is_none() => ck.fail(
            format!("{key}.auth"),
            "credentials are required: bearer_token, bearer_token_file or basic",
        ),
        None => {}
    }
    ck.positive(&format!("{key}.max_body_bytes"), am.max_body_bytes as u64);
    let m = &am.mapping;
    for (name, value) in [
        ("cluster_label", &m.cluster_label),
        ("namespace_label", &m.namespace_label),
        ("fault_type_label", &m.fault_type_label),
        ("severity_label", &m.severity_label),
        ("default_severity", &m.default_severity),
    ] {
        if value.trim().is_empty() {
            ck.fail(format!("{key}.mapping.{name}"), "must not be empty");
        }
    }
    if let Some(d) = &m.default_cluster {
        if !c.clusters.iter().any(|cl| &cl.name == d) {
            ck.fail(
                format!("{key}.mapping.default_cluster"),
                format!("{d:?} is not a configured cluster (clusters[].name)"),
            );
        }
    }
}

fn check_reporting(ck: &mut Checker, c: &Config) {
    let r = &c.reporting;
    if let Some(base) = &r.base_url {
        match url::Url::parse(base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => ck.fail(
                "reporting.base_url",
                format!("{base:?} is not an http(s) URL like https://nightcrier.example.com"),
            ),
        }
    }
    ck.nonzero("reporting.poll_interval", r.poll_interval);
    ck.positive("reporting.max_attempts", r.max_attempts.into());
    if let Some(a) = &r.artifacts {
        match url::Url::parse(&a.url) {
            Ok(u) if matches!(u.scheme(), "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" | "file" | "memory" | "https") => {
                if !cfg!(feature = "object-storage") {
                    ck.fail(
                        "reporting.artifacts.url",
                        "object storage needs a build with the `object-storage` feature (cargo build --features object-storage)",
                    );
                }
            }
            _ => ck.fail(
                "reporting.artifacts.url",
                format!(
                    "{:?} is not an object-store URL like s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path",
                    a.url
                ),
            ),
        }
    }
    let n = &c.notifications;
    ck.positive(
        "notifications.failure_threshold",
        n.failure_threshold.into(),
    );
    if let Some(slack) = &n.slack {
        // The URL is a secret: say what is wrong with it without echoing it.
        match url::Url::parse(slack.webhook_url.expose()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => ck.fail(
                "notifications.slack.webhook_url",
                "is not an http(s) URL like https://hooks.slack.com/services/...",
            ),
        }
        ck.nonzero("notifications.slack.timeout", slack.timeout);
        ck.positive(
            "notifications.slack.max_attempts",
            slack.max_attempts.into(),
        );
    }
}

fn check_agent(ck: &mut Checker, key: &str, a: &AgentConfig) {
    ck.nonzero(&format!("{key}.timeout"), a.timeout);
    if a.preset == AgentPreset::Command && a.command.is_empty() {
        ck.fail(
            format!("{key}.command"),
            "preset `command` needs an argv list, e.g. [\"/usr/local/bin/triage\", \"{prompt_file}\"]",
        );
    }
    if a.preset != AgentPreset::Command && !a.command.is_empty() {
        ck.warnings.push(format!(
            "{key}.command is ignored unless {key}.preset is `command`"
        ));
    }
    if let Some(c) = &a.container {
        if c.image.trim().is_empty() {
            ck.fail(format!("{key}.container.image"), "must not be empty");
        }
    }
    for name in a.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            ck.fail(
                format!("{key}.env"),
                format!("{name:?} is not a valid environment variable name"),
            );
        }
    }
    if let Some(p) = &a.system_prompt_file {
        if !p.is_file() {
            ck.warnings.push(format!(
                "{key}.system_prompt_file: {} does not exist",
                p.display()
            ));
        }
    }
}
