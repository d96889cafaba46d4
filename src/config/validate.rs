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
/// and metric labels), starting with a letter or digit: a leading `-` would be read as an option
/// where `{cluster}` lands in an agent's argv, and a leading `.` makes hidden or relative paths.
pub fn is_valid_cluster_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
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
    ck.positive("ingest.buffer_bytes", c.ingest.buffer_bytes as u64);
    if c.ingest.backpressure_timeout > Duration::from_secs(60) {
        // The server sends synchronously: a paused stream holds its fault detection for every
        // client, so a database outage must not pause it for long.
        ck.fail(
            "ingest.backpressure_timeout",
            "must be at most 60s (a paused stream holds up the MCP server for every client)",
        );
    }

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
    let f = &c.fleet;
    ck.nonzero("fleet.heartbeat_interval", f.heartbeat_interval);
    if f.lease_ttl < f.heartbeat_interval * 2 {
        ck.fail(
            "fleet.lease_ttl",
            "must be at least twice fleet.heartbeat_interval, or leases expire between beats",
        );
    }
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
    check_http_access(&mut ck, c);

    let mut seen = HashSet::new();
    for (i, cl) in c.clusters.iter().enumerate() {
        let key = format!("clusters[{i}]");
        if !is_valid_cluster_name(&cl.name) {
            ck.fail(
                format!("{key}.name"),
                format!(
                    "{:?} is not a valid cluster name: use 1 to 63 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit",
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
                        super::secret::redact_url(&cl.mcp.endpoint)
                    ));
                }
            }
            _ => ck.fail(
                format!("{key}.mcp.endpoint"),
                format!(
                    "{:?} is not an http(s) URL like http://127.0.0.1:8080/mcp",
                    super::secret::redact_url(&cl.mcp.endpoint)
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
        if cl.evidence.enabled {
            ck.nonzero(
                &format!("{key}.evidence.call_timeout"),
                cl.evidence.call_timeout,
            );
            ck.nonzero(&format!("{key}.evidence.budget"), cl.evidence.budget);
            ck.positive(
                &format!("{key}.evidence.max_call_bytes"),
                cl.evidence.max_call_bytes as u64,
            );
            ck.positive(
                &format!("{key}.evidence.log_tail_lines"),
                u64::from(cl.evidence.log_tail_lines),
            );
        }
        if let Some(agent) = &cl.agent {
            check_agent(&mut ck, &format!("{key}.agent"), agent);
        }
        check_cluster_labels(&mut ck, &key, cl);
        if cl.triage.enabled {
            check_triage_tools(&mut ck, &key, cl, cl.agent.as_ref().unwrap_or(&c.agent));
        }
    }

    check_costs(&mut ck, c);
    check_intake(&mut ck, c);

    if ck.problems.is_empty() {
        Ok(ck.warnings)
    } else {
        Err(ck.problems)
    }
}

/// `pricing`, `budgets` and `dedup.pending_ttl`.
fn check_costs(ck: &mut Checker, c: &Config) {
    for (model, price) in &c.pricing.models {
        if model.trim().is_empty() {
            ck.fail("pricing.models", "a model name is empty");
        }
        if !price.is_valid() {
            ck.fail(
                format!("pricing.models.{model}"),
                "prices must be finite and not negative (USD per million tokens)",
            );
        }
    }
    let b = &c.budgets;
    let spend = |ck: &mut Checker, key: String, v: Option<f64>| {
        if v.is_some_and(|v| !v.is_finite() || v <= 0.0) {
            ck.fail(key, "must be a positive number of US dollars");
        }
    };
    spend(
        ck,
        "budgets.max_spend_per_day_usd".into(),
        b.max_spend_per_day_usd,
    );
    if let Some(v) = b.max_investigations_per_hour {
        ck.positive("budgets.max_investigations_per_hour", v.into());
    }
    if let Some(ttl) = c.dedup.pending_ttl {
        ck.nonzero("dedup.pending_ttl", ttl);
    }
    let names: HashSet<&str> = c.clusters.iter().map(|cl| cl.name.as_str()).collect();
    for (name, cb) in &b.clusters {
        let key = format!("budgets.clusters.{name}");
        if !names.contains(name.as_str()) {
            ck.fail(&key, "names no configured cluster");
        }
        spend(
            ck,
            format!("{key}.max_spend_per_day_usd"),
            cb.max_spend_per_day_usd,
        );
        if let Some(v) = cb.max_investigations_per_hour {
            ck.positive(&format!("{key}.max_investigations_per_hour"), v.into());
        }
        if let Some(ttl) = cb.pending_ttl {
            ck.nonzero(&format!("{key}.pending_ttl"), ttl);
        }
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
                format!(
                    "{:?} is not an http(s) URL like https://nightcrier.example.com",
                    super::secret::redact_url(base)
                ),
            ),
        }
    }
    ck.nonzero("reporting.poll_interval", r.poll_interval);
    ck.positive("reporting.max_attempts", r.max_attempts.into());
    if let Some(a) = &r.artifacts {
        match url::Url::parse(&a.url) {
            Ok(u) if matches!(u.scheme(), "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "gs" | "file" | "memory" | "https") => {
                if a.link_expiry.is_zero() || a.link_expiry > super::model::MAX_LINK_EXPIRY {
                    ck.fail(
                        "reporting.artifacts.link_expiry",
                        "must be between 1s and 7d (presigned S3 and GCS links last at most 7 days)",
                    );
                }
            }
            _ => ck.fail(
                "reporting.artifacts.url",
                format!(
                    "{:?} is not an object-store URL like s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///path",
                    super::secret::redact_url(&a.url)
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
        if let Some(hook) = &slack.webhook_url {
            match url::Url::parse(hook.expose()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => ck.fail(
                    "notifications.slack.webhook_url",
                    "is not an http(s) URL like https://hooks.slack.com/services/...",
                ),
            }
        }
        check_slack_app(ck, c, slack);
        // Links in a chat must reach this endpoint from the reader's browser: the default
        // (`http://<http.listen>`, usually 127.0.0.1) never does.
        if r.base_url.is_none() {
            ck.fail(
                "reporting.base_url",
                "is required when notifications.slack is set: the public address of this endpoint, used in the message links (like https://nightcrier.example.com)",
            );
        }
        ck.nonzero("notifications.slack.timeout", slack.timeout);
        ck.positive(
            "notifications.slack.max_attempts",
            slack.max_attempts.into(),
        );
    }
}

/// Slack channel IDs (`C0123ABC`) or names (`#ops`, `ops`): no spaces, no control characters.
fn valid_slack_channel(ch: &str) -> bool {
    !ch.is_empty() && ch.len() <= 80 && !ch.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_slack_app(ck: &mut Checker, c: &Config, slack: &super::model::SlackConfig) {
    let key = "notifications.slack";
    match (&slack.webhook_url, &slack.bot_token) {
        (None, None) => ck.fail(
            key,
            "needs webhook_url (an incoming webhook) or bot_token (a Slack app, one thread per incident)",
        ),
        (Some(_), Some(_)) => ck.fail(
            key,
            "has both webhook_url and bot_token: keep one (bot_token for threads updated in place)",
        ),
        _ => {}
    }
    let app_only = [
        ("channel", slack.channel.is_some()),
        ("channels", !slack.channels.is_empty()),
        ("post_on_open", !slack.post_on_open.is_empty()),
    ];
    let Some(token) = &slack.bot_token else {
        for (k, set) in app_only {
            if set {
                ck.fail(
                    format!("{key}.{k}"),
                    "is used with bot_token (Slack app mode) only",
                );
            }
        }
        return;
    };
    // The token is a secret: say what is wrong without echoing it.
    let t = token.expose();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        ck.fail(
            format!("{key}.bot_token"),
            "is empty or contains whitespace; expected a bot token like xoxb-...",
        );
    }
    match &slack.channel {
        Some(ch) if !valid_slack_channel(ch) => ck.fail(
            format!("{key}.channel"),
            format!("{ch:?} is not a channel ID like C0123ABCD or a name like #ops"),
        ),
        Some(_) => {}
        None => {
            for cl in &c.clusters {
                if !slack.channels.contains_key(&cl.name) {
                    ck.fail(
                        format!("{key}.channel"),
                        format!(
                            "is required: cluster {:?} has no entry in {key}.channels",
                            cl.name
                        ),
                    );
                    break;
                }
            }
        }
    }
    for (cluster, ch) in &slack.channels {
        if !c.clusters.iter().any(|cl| &cl.name == cluster) {
            ck.fail(
                format!("{key}.channels.{cluster}"),
                "names no configured cluster (clusters[].name)",
            );
        }
        if !valid_slack_channel(ch) {
            ck.fail(
                format!("{key}.channels.{cluster}"),
                format!("{ch:?} is not a channel ID like C0123ABCD or a name like #ops"),
            );
        }
    }
    if slack.post_on_open.iter().any(|s| s.trim().is_empty())
        || slack.post_on_open.len() > crate::store::MAX_SLACK_SEVERITIES
    {
        ck.fail(
            format!("{key}.post_on_open"),
            format!(
                "must be at most {} non-empty severities (like [critical])",
                crate::store::MAX_SLACK_SEVERITIES
            ),
        );
    }
    match url::Url::parse(&slack.api_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => ck.fail(
            format!("{key}.api_url"),
            format!(
                "{:?} is not an http(s) URL like https://slack.com/api",
                super::secret::redact_url(&slack.api_url)
            ),
        ),
    }
}

fn check_agent(ck: &mut Checker, key: &str, a: &AgentConfig) {
    ck.nonzero(&format!("{key}.timeout"), a.timeout);
    if a.max_log_bytes < super::model::MIN_MAX_LOG_BYTES {
        ck.fail(
            format!("{key}.max_log_bytes"),
            format!(
                "{} is below the minimum of {} bytes",
                a.max_log_bytes,
                super::model::MIN_MAX_LOG_BYTES
            ),
        );
    }
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
    ck.positive(&format!("{key}.max_turns"), a.max_turns.into());
    if let Some(usd) = a.max_cost_usd {
        if !(usd.is_finite() && usd > 0.0) {
            ck.fail(
                format!("{key}.max_cost_usd"),
                format!("must be a positive amount of USD, got {usd}"),
            );
        }
    }
    ck.nonzero(&format!("{key}.mcp_call_timeout"), a.mcp_call_timeout);
    if a.mcp_max_result_bytes < 1024 || a.mcp_max_result_bytes > 16 * 1024 * 1024 {
        ck.fail(
            format!("{key}.mcp_max_result_bytes"),
            "must be between 1024 and 16777216",
        );
    }
    ck.positive(&format!("{key}.mcp_max_calls"), a.mcp_max_calls.into());
    if let Some(tools) = &a.allowed_tools {
        if let Some(bad) = tools
            .iter()
            .find(|t| t.trim().is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            ck.fail(
                format!("{key}.allowed_tools"),
                format!("{bad:?} is not a tool name"),
            );
        }
    }
    if a.additional_prompt
        .as_ref()
        .is_some_and(|p| p.len() > 64 * 1024)
    {
        ck.fail(
            format!("{key}.additional_prompt"),
            "is longer than 65536 bytes",
        );
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

/// A cluster whose triage is on needs something to investigate with: the cluster's MCP tools
/// (through the agent's endpoint) or kubectl with a kubeconfig. Warnings, not errors: the agent
/// still reads the fault and the evidence bundle.
fn check_triage_tools(ck: &mut Checker, key: &str, cl: &super::ClusterConfig, agent: &AgentConfig) {
    let kubeconfig = match &cl.triage.kubeconfig {
        Some(p) if !p.is_file() => {
            ck.warnings.push(format!(
                "{key}.triage.kubeconfig: {} does not exist (yet); agents will fail to reach the cluster with kubectl",
                p.display()
            ));
            false
        }
        Some(_) => agent.kubectl,
        None => false,
    };
    if !kubeconfig && !agent.mcp_tools {
        ck.warnings.push(format!(
            "{key}: triage is on for cluster {:?} but its agent has nothing to investigate with: \
             no kubeconfig for kubectl ({key}.triage.kubeconfig, agent.kubectl) and the cluster's \
             MCP tools are off (agent.mcp_tools); it can only read the fault{}",
            cl.name,
            if cl.evidence.enabled {
                " and the evidence bundle"
            } else {
                ""
            }
        ));
    }
}

/// Bounds on `environment` and `labels`: they reach the prompt, Slack, `/health/clusters` and
/// (environment only) a metrics label, so they stay short, printable and few.
pub const MAX_CLUSTER_LABELS: usize = 32;
const MAX_LABEL_KEY_CHARS: usize = 63;
const MAX_LABEL_VALUE_CHARS: usize = 256;

fn check_cluster_labels(ck: &mut Checker, key: &str, cl: &super::ClusterConfig) {
    if let Some(env) = &cl.environment {
        if !is_valid_cluster_name(env) {
            ck.fail(
                format!("{key}.environment"),
                format!("{env:?} is not a valid environment: use 1 to 63 characters from A-Z a-z 0-9 _ . -"),
            );
        }
    }
    if cl.labels.len() > MAX_CLUSTER_LABELS {
        ck.fail(
            format!("{key}.labels"),
            format!(
                "{} labels; at most {MAX_CLUSTER_LABELS} are allowed",
                cl.labels.len()
            ),
        );
    }
    for (k, v) in &cl.labels {
        if !is_valid_cluster_name(k) || k.chars().count() > MAX_LABEL_KEY_CHARS {
            ck.fail(
                format!("{key}.labels"),
                format!(
                    "label name {k:?} is not valid: use 1 to 63 characters from A-Z a-z 0-9 _ . -"
                ),
            );
        }
        if v.chars().count() > MAX_LABEL_VALUE_CHARS || v.chars().any(char::is_control) {
            ck.fail(
                format!("{key}.labels.{k}"),
                format!(
                    "must be at most {MAX_LABEL_VALUE_CHARS} characters without control characters"
                ),
            );
        }
    }
}
/// Connection bounds and who may see the incident pages (`http.*`).
fn check_http_access(ck: &mut Checker, c: &Config) {
    let h = &c.http;
    ck.positive("http.max_connections", h.max_connections as u64);
    ck.nonzero("http.header_read_timeout", h.header_read_timeout);
    let a = &h.auth;
    let has_password = a.basic_password.is_some() || a.basic_password_file.is_some();
    if a.basic_username.is_some() != has_password {
        ck.fail(
            "http.auth.basic_username",
            "basic authentication needs both basic_username and basic_password (or basic_password_file)",
        );
    }
    let has_auth = a.bearer_token.is_some() || a.bearer_token_file.is_some() || has_password;
    let listen = h.listen.trim();
    if h.pages && !has_auth && !listen.is_empty() && !is_loopback(listen) {
        ck.warnings.push(format!(
            "http.listen {listen} is not a loopback address and the incident pages (agent logs, reports) have no authentication: set http.auth, or http.pages: false to serve only /healthz, /readyz and /metrics"
        ));
    }
}

/// Whether `listen` (`host:port`) only accepts connections from this machine.
fn is_loopback(listen: &str) -> bool {
    listen
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}
#[cfg(test)]
mod agent_log_cap_tests {
    use super::*;

    #[test]
    fn a_log_cap_below_the_minimum_is_named() {
        let mut c = Config::default();
        c.agent.max_log_bytes = 1000;
        let problems = validate(&c).expect_err("1000 bytes is below the minimum");
        let p = problems
            .iter()
            .find(|p| p.key == "agent.max_log_bytes")
            .expect("agent.max_log_bytes named");
        assert!(p.message.contains("65536"), "{}", p.message);

        c.agent.max_log_bytes = super::super::DEFAULT_MAX_LOG_BYTES;
        let named = validate(&c)
            .err()
            .unwrap_or_default()
            .into_iter()
            .any(|p| p.key == "agent.max_log_bytes");
        assert!(!named);
    }
}

#[cfg(test)]
mod triage_tools_tests {
    use super::*;
    use crate::config::{ClusterConfig, McpConfig, TriageConfig};

    fn warnings(
        kubeconfig: Option<std::path::PathBuf>,
        mcp_tools: bool,
        kubectl: bool,
    ) -> Vec<String> {
        let mut c = Config::default();
        c.agent.mcp_tools = mcp_tools;
        c.agent.kubectl = kubectl;
        c.clusters.push(ClusterConfig {
            name: "prod".into(),
            mcp: McpConfig::new("http://127.0.0.1:1/mcp"),
            triage: TriageConfig {
                enabled: true,
                kubeconfig,
            },
            agent: None,
            evidence: Default::default(),
            environment: None,
            labels: Default::default(),
        });
        validate(&c).expect("valid configuration")
    }

    fn says_nothing_to_investigate(w: &[String]) -> bool {
        w.iter().any(|w| w.contains("nothing to investigate with"))
    }

    #[test]
    fn triage_without_kubeconfig_or_mcp_tools_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();

        // The MCP tools alone are enough, and so is kubectl with a kubeconfig.
        assert!(!says_nothing_to_investigate(&warnings(None, true, true)));
        assert!(!says_nothing_to_investigate(&warnings(
            Some(kubeconfig.clone()),
            false,
            true
        )));
        // Neither: named, with the keys to set.
        let w = warnings(None, false, true);
        assert!(says_nothing_to_investigate(&w), "{w:?}");
        assert!(w.iter().any(|w| w.contains("agent.mcp_tools")), "{w:?}");
        // A kubeconfig the agent is not given (kubectl off) does not count.
        assert!(says_nothing_to_investigate(&warnings(
            Some(kubeconfig),
            false,
            false
        )));
        // A kubeconfig that does not exist is named as such, and does not count either.
        let w = warnings(Some(dir.path().join("missing")), false, true);
        assert!(w.iter().any(|w| w.contains("does not exist")), "{w:?}");
        assert!(says_nothing_to_investigate(&w), "{w:?}");
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_ttl_shorter_than_two_beats_is_named() {
        let mut c = Config::default();
        assert!(validate(&c).is_ok(), "the defaults are valid");
        c.fleet.heartbeat_interval = Duration::from_secs(2);
        c.fleet.lease_ttl = Duration::from_secs(3);
        let problems = validate(&c).expect_err("a TTL of 1.5 beats");
        assert!(problems.iter().any(|p| p.key == "fleet.lease_ttl"));
        c.fleet.heartbeat_interval = Duration::ZERO;
        let problems = validate(&c).expect_err("a zero heartbeat");
        assert!(problems.iter().any(|p| p.key == "fleet.heartbeat_interval"));
    }
}

#[cfg(test)]
mod ingest_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_backpressure_timeout_over_a_minute_is_named() {
        let mut c = Config::default();
        c.ingest.backpressure_timeout = Duration::ZERO;
        assert!(validate(&c).is_ok(), "0s: drop at once");
        c.ingest.backpressure_timeout = Duration::from_secs(61);
        let problems = validate(&c).expect_err("a paused stream holds the server");
        assert!(problems
            .iter()
            .any(|p| p.key == "ingest.backpressure_timeout"));
    }
}
