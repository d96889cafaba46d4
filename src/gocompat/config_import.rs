//! `nightcrier config import-go`: a Go nightcrier `config.yaml` (and optionally its
//! `tuning.yaml`) translated into a commented nightcrier.yaml, plus what did not translate.
//!
//! The Go program read its file through viper: unknown keys were ignored, numbers could be
//! strings, and its own environment variables (`SLACK_WEBHOOK_URL`...) overrode the file. The
//! import reads the same way, so its output describes what the Go program actually ran with.
//! Secrets found only in the environment are never written out: the output names the
//! `NIGHTCRIER_*` variable to set instead.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

/// The Go program's environment variables: (variable, its config key, nightcrier key or `None`,
/// secret). From `internal/config/config.go` (`bindEnvVars`).
pub const GO_ENV_VARS: &[(&str, &str, Option<&str>, bool)] = &[
    (
        "SUBSCRIBE_MODE",
        "subscribe_mode",
        Some("clusters[].mcp.subscribe_mode"),
        false,
    ),
    (
        "WORKSPACE_ROOT",
        "workspace_root",
        Some("workspace_root"),
        false,
    ),
    ("LOG_LEVEL", "log_level", None, false),
    (
        "SLACK_WEBHOOK_URL",
        "slack_webhook_url",
        Some("notifications.slack.webhook_url"),
        true,
    ),
    ("AGENT_SCRIPT_PATH", "agent_script_path", None, false),
    (
        "AGENT_SYSTEM_PROMPT_FILE",
        "agent_system_prompt_file",
        Some("agent.system_prompt_file"),
        false,
    ),
    (
        "AGENT_ALLOWED_TOOLS",
        "agent_allowed_tools",
        Some("agent.extra_args"),
        false,
    ),
    ("AGENT_MODEL", "agent_model", Some("agent.model"), false),
    (
        "AGENT_TIMEOUT",
        "agent_timeout",
        Some("agent.timeout"),
        false,
    ),
    ("AGENT_CLI", "agent_cli", Some("agent.preset"), false),
    (
        "AGENT_IMAGE",
        "agent_image",
        Some("agent.container.image"),
        false,
    ),
    ("AGENT_VERBOSE", "agent_verbose", None, false),
    (
        "ADDITIONAL_AGENT_PROMPT",
        "additional_agent_prompt",
        None,
        false,
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic_api_key",
        Some("agent.env.ANTHROPIC_API_KEY"),
        true,
    ),
    (
        "OPENAI_API_KEY",
        "openai_api_key",
        Some("agent.env.OPENAI_API_KEY"),
        true,
    ),
    (
        "GEMINI_API_KEY",
        "gemini_api_key",
        Some("agent.env.GEMINI_API_KEY"),
        true,
    ),
    (
        "KUBECONFIG_PATH",
        "kubeconfig_path",
        Some("clusters[].triage.kubeconfig"),
        false,
    ),
    ("KUBERNETES_CONTEXT", "kubernetes_context", None, false),
    ("SEVERITY_THRESHOLD", "severity_threshold", None, false),
    (
        "MAX_CONCURRENT_AGENTS",
        "max_concurrent_agents",
        Some("limits.max_concurrent_agents"),
        false,
    ),
    ("GLOBAL_QUEUE_SIZE", "global_queue_size", None, false),
    ("CLUSTER_QUEUE_SIZE", "cluster_queue_size", None, false),
    (
        "DEDUP_WINDOW_SECONDS",
        "dedup_window_seconds",
        Some("dedup.cooldown"),
        false,
    ),
    (
        "QUEUE_OVERFLOW_POLICY",
        "queue_overflow_policy",
        None,
        false,
    ),
    (
        "SHUTDOWN_TIMEOUT_SECONDS",
        "shutdown_timeout",
        Some("worker.shutdown_grace"),
        false,
    ),
    (
        "SSE_RECONNECT_INITIAL_BACKOFF",
        "sse_reconnect_initial_backoff",
        Some("reconnect.initial_backoff"),
        false,
    ),
    (
        "SSE_RECONNECT_MAX_BACKOFF",
        "sse_reconnect_max_backoff",
        Some("reconnect.max_backoff"),
        false,
    ),
    ("SSE_READ_TIMEOUT_SECONDS", "sse_read_timeout", None, false),
    (
        "AZURE_STORAGE_CONNECTION_STRING",
        "azure_storage_connection_string",
        None,
        true,
    ),
    (
        "AZURE_STORAGE_ACCOUNT",
        "azure_storage_account",
        Some("reporting.artifacts.options.azure_storage_account_name"),
        false,
    ),
    (
        "AZURE_STORAGE_KEY",
        "azure_storage_key",
        Some("reporting.artifacts.options.azure_storage_account_key"),
        true,
    ),
    (
        "AZURE_STORAGE_CONTAINER",
        "azure_storage_container",
        Some("reporting.artifacts.url"),
        false,
    ),
    ("AZURE_SAS_EXPIRY", "azure_sas_expiry", None, false),
    (
        "NOTIFY_ON_AGENT_FAILURE",
        "notify_on_agent_failure",
        None,
        false,
    ),
    (
        "FAILURE_THRESHOLD_FOR_ALERT",
        "failure_threshold_for_alert",
        Some("notifications.failure_threshold"),
        false,
    ),
    (
        "UPLOAD_FAILED_INVESTIGATIONS",
        "upload_failed_investigations",
        None,
        false,
    ),
    (
        "STATE_STORAGE_TYPE",
        "state_storage.type",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_SQLITE_PATH",
        "state_storage.sqlite_path",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_POSTGRES_CONNECTION_STRING",
        "state_storage.postgres_connection_string",
        Some("database.url"),
        true,
    ),
    (
        "STATE_STORAGE_POSTGRES_HOST",
        "state_storage.postgres_host",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_POSTGRES_PORT",
        "state_storage.postgres_port",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_POSTGRES_DATABASE",
        "state_storage.postgres_database",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_POSTGRES_USER",
        "state_storage.postgres_user",
        Some("database.url"),
        false,
    ),
    (
        "STATE_STORAGE_POSTGRES_PASSWORD",
        "state_storage.postgres_password",
        Some("database.url"),
        true,
    ),
    (
        "STATE_STORAGE_MIGRATIONS_PATH",
        "state_storage.migrations_path",
        None,
        false,
    ),
    ("SKILLS_CACHE_DIR", "skills.cache_dir", None, false),
    (
        "SKILLS_DISABLE_TRIAGE_PRELOAD",
        "skills.disable_triage_preload",
        None,
        false,
    ),
];

/// The tools nightcrier's claude preset always allows (see `agent::presets::claude`).
const CLAUDE_PRESET_TOOLS: &[&str] = &["Read", "Write", "Edit", "Bash"];

/// Largest Go configuration file read (a config file, not a data file).
pub const MAX_GO_CONFIG_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GoImportError {
    #[error("{origin}: not a YAML mapping of Go nightcrier settings: {message}")]
    Parse { origin: String, message: String },
    #[error(
        "{origin} is larger than {MAX_GO_CONFIG_BYTES} bytes; is it really a configuration file?"
    )]
    TooLarge { origin: String },
    #[error("{origin}: no `clusters` list; the Go nightcrier needs at least one cluster (name, mcp.endpoint), so this is not its configuration")]
    NoClusters { origin: String },
    #[error("{origin}: `{key}` is {value:?}, expected {expected}")]
    BadValue {
        origin: String,
        key: String,
        value: String,
        expected: &'static str,
    },
}

/// One Go setting that did not translate one to one: what it was, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub go_key: String,
    pub advice: String,
}

/// The import's result: the nightcrier.yaml text (comments included) and its notes (also at the
/// end of the text).
#[derive(Debug, Clone)]
pub struct GoImport {
    pub yaml: String,
    pub notes: Vec<Note>,
    /// Go variables found in the environment, by name (values are not kept).
    pub env_seen: Vec<String>,
}

/// The Go configuration with viper's precedence: its environment variables over the file.
struct Source<'a> {
    origin: &'a str,
    root: Value,
    tuning: Value,
    env: BTreeMap<&'static str, String>,
}

impl Source<'_> {
    fn file(&self, key: &str) -> Option<&Value> {
        let mut v = &self.root;
        for part in key.split('.') {
            v = v.get(part)?;
        }
        Some(v)
    }

    /// The value as text, from the environment first (non-secret variables only; secrets are
    /// handled by the caller), and where it came from.
    fn text(&self, key: &str) -> Option<(String, Option<&'static str>)> {
        if let Some((var, _, _, false)) = GO_ENV_VARS.iter().find(|(_, k, _, _)| *k == key) {
            if let Some(v) = self.env.get(var) {
                return Some((v.clone(), Some(*var)));
            }
        }
        scalar(self.file(key)?).map(|s| (s, None))
    }

    fn string(&self, key: &str) -> Option<String> {
        self.text(key).map(|(s, _)| s).filter(|s| !s.is_empty())
    }

    fn int(&self, key: &str) -> Result<Option<u64>, GoImportError> {
        match self.text(key) {
            None => Ok(None),
            Some((s, _)) if s.is_empty() => Ok(None),
            Some((s, _)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.bad(key, s, "a whole number")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, GoImportError> {
        match self.text(key) {
            None => Ok(None),
            Some((s, _)) if s.is_empty() => Ok(None),
            Some((s, _)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(self.bad(key, s, "true or false")),
            },
        }
    }

    fn tuning_int(&self, section: &str, key: &str) -> Result<Option<u64>, GoImportError> {
        let Some(v) = self.tuning.get(section).and_then(|s| s.get(key)) else {
            return Ok(None);
        };
        match scalar(v) {
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.bad(&format!("tuning {section}.{key}"), s, "a whole number")),
            None => Ok(None),
        }
    }

    /// A secret: from the file only. When the environment has it, the caller says which
    /// `NIGHTCRIER_*` variable to set.
    fn secret(&self, key: &str) -> Option<String> {
        scalar(self.file(key)?).filter(|s| !s.is_empty())
    }

    fn env_has(&self, var: &str) -> bool {
        self.env.contains_key(var)
    }

    fn bad(&self, key: &str, value: String, expected: &'static str) -> GoImportError {
        GoImportError::BadValue {
            origin: self.origin.to_string(),
            key: key.to_string(),
            value,
            expected,
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn parse_yaml(text: &str, origin: &str) -> Result<Value, GoImportError> {
    if text.len() > MAX_GO_CONFIG_BYTES {
        return Err(GoImportError::TooLarge {
            origin: origin.to_string(),
        });
    }
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| GoImportError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    match v {
        Value::Mapping(_) => Ok(v),
        Value::Null => Ok(Value::Mapping(Default::default())),
        _ => Err(GoImportError::Parse {
            origin: origin.to_string(),
            message: "the top level is not a mapping".into(),
        }),
    }
}

/// Go's codex runner (`agent-container/runners/codex.sh`) turned Claude model names into OpenAI
/// ones; nightcrier passes `agent.model` through, so the alias is resolved here.
pub fn resolve_model(cli: &str, model: &str) -> String {
    match (cli, model) {
        ("codex", "opus") => "gpt-5-codex".into(),
        ("codex", "sonnet") => "gpt-5.2".into(),
        ("codex", "haiku") => "gpt-4o".into(),
        _ => model.to_string(),
    }
}

/// The API key variable each Go `agent_cli` needed.
fn api_key_var(cli: &str) -> &'static str {
    match cli {
        "codex" | "goose" => "OPENAI_API_KEY",
        "gemini" => "GEMINI_API_KEY",
        _ => "ANTHROPIC_API_KEY",
    }
}

struct Out {
    text: String,
    notes: Vec<Note>,
}

impl Out {
    fn line(&mut self, s: impl AsRef<str>) {
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }
    fn note(&mut self, go_key: &str, advice: impl Into<String>) {
        self.notes.push(Note {
            go_key: go_key.to_string(),
            advice: advice.into(),
        });
    }
}

/// Translates a Go configuration. `env` is the process environment (only the Go program's
/// variable names are looked at); `origin` names the file in messages.
pub fn import_config(
    config_text: &str,
    origin: &Path,
    tuning_text: Option<&str>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<GoImport, GoImportError> {
    let origin_s = origin.display().to_string();
    let root = parse_yaml(config_text, &origin_s)?;
    let tuning = match tuning_text {
        Some(t) => parse_yaml(t, "tuning file")?,
        None => Value::Mapping(Default::default()),
    };
    let env: BTreeMap<&'static str, String> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let (name, ..) = GO_ENV_VARS.iter().find(|(n, ..)| *n == k)?;
            Some((*name, v))
        })
        .collect();
    let src = Source {
        origin: &origin_s,
        root,
        tuning,
        env,
    };
    let clusters = match src.file("clusters") {
        Some(Value::Sequence(items)) if !items.is_empty() => items.clone(),
        _ => return Err(GoImportError::NoClusters { origin: origin_s }),
    };
    let mut out = Out {
        text: String::with_capacity(8 * 1024),
        notes: Vec::new(),
    };
    out.line(format!(
        "# nightcrier configuration imported from the Go nightcrier configuration {origin_s}"
    ));
    out.line("# by `nightcrier config import-go`. Check it: nightcrier config check --config <this file>");
    out.line(
        "# Keys not written here keep their defaults (see examples/nightcrier.yaml). Read the",
    );
    out.line(
        "# notes at the end: what changed meaning or has no equivalent, and what to do instead.",
    );
    out.line("");

    database(&src, &mut out)?;

    let workspace = src.text("workspace_root");
    let ws = workspace
        .as_ref()
        .map_or("./incidents", |(s, _)| s.as_str());
    out.line(format!(
        "workspace_root: {}{}",
        q(ws),
        from_env(workspace.as_ref().and_then(|(_, e)| *e))
    ));
    out.line("");

    if let Some(n) = src.int("max_concurrent_agents")? {
        out.line("limits:");
        out.line(format!(
            "  max_concurrent_agents: {n}   # max_concurrent_agents: read but never enforced by the Go program; enforced here (across processes sharing the database)"
        ));
        out.line("  max_agents_per_cluster: 1    # one agent per cluster at a time");
        out.line("");
    }
    match src.int("dedup_window_seconds")? {
        Some(0) => out.note(
            "dedup_window_seconds",
            "0 (off) in Go, where it was never applied. nightcrier always attaches a repeated fault to its open incident; `dedup.cooldown` (default 30m) only governs repeats after the incident ended: set it to 1s to re-investigate those at once.",
        ),
        Some(n) => {
            out.line("dedup:");
            out.line(format!(
                "  cooldown: {n}s   # dedup_window_seconds: read but never applied by the Go program; here a fault repeated within this time after its incident ended opens nothing new"
            ));
            out.line("");
        }
        None => {}
    }
    let initial = src.int("sse_reconnect_initial_backoff")?;
    let max = src.int("sse_reconnect_max_backoff")?;
    if initial.is_some() || max.is_some() {
        out.line("reconnect:");
        if let Some(n) = initial.filter(|n| *n > 0) {
            out.line(format!(
                "  initial_backoff: {n}s   # sse_reconnect_initial_backoff"
            ));
        }
        if let Some(n) = max.filter(|n| *n > 0) {
            out.line(format!(
                "  max_backoff: {n}s       # sse_reconnect_max_backoff"
            ));
        }
        out.line("");
    }
    if let Some(n) = src.int("sse_read_timeout")? {
        out.note(
            "sse_read_timeout",
            format!("{n}s: nightcrier does not time out an idle stream (faults can be rare); it pings the server every `reconnect.ping_interval` (30s) and reconnects when a ping fails within `reconnect.ping_timeout` (10s); `clusters[].mcp.event_timeout` bounds one unfinished event."),
        );
    }
    if let Some(n) = src.int("shutdown_timeout")?.filter(|n| *n > 0) {
        out.line("worker:");
        out.line(format!(
            "  shutdown_grace: {n}s   # shutdown_timeout: running agents may finish this long after SIGTERM; then they are stopped and their incidents re-queued"
        ));
        out.line("");
    }

    let cli = agent(&src, &mut out)?;
    notifications(&src, &mut out)?;
    artifacts(&src, &mut out);
    clusters_block(&src, &clusters, &cli, &mut out)?;
    ignored(&src, &mut out)?;
    env_list(&src, &mut out);

    out.line("");
    out.line("# ---------------------------------------------------------------------------");
    out.line("# Changed meaning or no equivalent (Go key: what to do instead):");
    for n in &out.notes.clone() {
        let mut first = true;
        for chunk in wrap(&format!("{}: {}", n.go_key, n.advice), 96) {
            out.line(format!("#{} {chunk}", if first { " -" } else { "  " }));
            first = false;
        }
    }
    let env_seen = src.env.keys().map(|k| k.to_string()).collect();
    Ok(GoImport {
        yaml: out.text,
        notes: out.notes,
        env_seen,
    })
}

fn from_env(var: Option<&str>) -> String {
    var.map(|v| format!("   # from ${v}")).unwrap_or_default()
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in s.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn database(src: &Source<'_>, out: &mut Out) -> Result<(), GoImportError> {
    let kind = src
        .string("state_storage.type")
        .unwrap_or_else(|| "filesystem".into());
    out.line("database:");
    match kind.as_str() {
        "sqlite" => {
            let go_path = src
                .string("state_storage.sqlite_path")
                .unwrap_or_else(|| "./data/nightcrier.db".into());
            let ours = sibling_path(&go_path);
            out.line(format!("  url: {}", q(&format!("sqlite://{ours}"))));
            out.line(format!(
                "  # Not the Go file {go_path}: its tables are the Go schema (nightcrier refuses to start on it)."
            ));
            out.line(format!(
                "  # Bring its incidents over (the Go file is only read): nightcrier migrate --import-go {go_path}"
            ));
            out.note(
                "state_storage.sqlite_path",
                format!("the Go database {go_path} is not reused (different schema); the new one is {ours}. Import the Go history with `nightcrier migrate --import-go {go_path}`."),
            );
        }
        "postgres" => {
            let url = postgres_url(src)?;
            match url {
                Some(u) => out.line(format!("  url: {}", q(&u))),
                None => {
                    out.line("  url: \"postgres://nightcrier@localhost:5432/nightcrier\"   # set the password with NIGHTCRIER_DATABASE__URL");
                }
            }
            out.line("  # Use a database of its own: the Go tables (incidents, fault_events...) would collide.");
            out.note(
                "state_storage (postgres)",
                "point nightcrier at a new, empty database (or schema): it refuses to start on the Go tables. The Go incident history can be imported from a Go SQLite file only.",
            );
            if src.env_has("STATE_STORAGE_POSTGRES_CONNECTION_STRING")
                || src.env_has("STATE_STORAGE_POSTGRES_PASSWORD")
            {
                out.note(
                    "STATE_STORAGE_POSTGRES_* (environment)",
                    "the password came from the environment and is not written here: set NIGHTCRIER_DATABASE__URL=postgres://USER:PASSWORD@HOST:PORT/DB.",
                );
            }
        }
        _ => {
            out.line("  url: \"sqlite://./data/nightcrier.db\"");
            out.note(
                "state_storage.type",
                format!("{kind:?}: the Go file-based state (JSON files in the workspaces) is not imported; nightcrier keeps incidents in SQLite (this file) or PostgreSQL. The workspaces stay readable where they are."),
            );
        }
    }
    if src.string("state_storage.migrations_path").is_some() {
        out.note(
            "state_storage.migrations_path",
            "not needed: the migrations are built into the binary (`nightcrier migrate`, also done at start).",
        );
    }
    out.line("");
    Ok(())
}

/// `./data/nightcrier.db` -> `./data/nightcrier-rs.db`: next to the Go file, never the same.
fn sibling_path(go_path: &str) -> String {
    let p = Path::new(go_path);
    let stem = p
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("nightcrier");
    let name = format!("{stem}-rs.db");
    match p
        .parent()
        .and_then(|d| d.to_str())
        .filter(|d| !d.is_empty())
    {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    }
}

fn postgres_url(src: &Source<'_>) -> Result<Option<String>, GoImportError> {
    if let Some(s) = src.secret("state_storage.postgres_connection_string") {
        return Ok(Some(s));
    }
    let host = src
        .string("state_storage.postgres_host")
        .unwrap_or_else(|| "localhost".into());
    let port = src.int("state_storage.postgres_port")?.unwrap_or(5432);
    let db = src
        .string("state_storage.postgres_database")
        .unwrap_or_else(|| "nightcrier".into());
    let Ok(mut url) = url::Url::parse(&format!("postgres://{host}:{port}/{db}")) else {
        return Err(src.bad("state_storage.postgres_host", host, "a host name"));
    };
    if let Some(user) = src.string("state_storage.postgres_user") {
        // Fails only for URLs that cannot carry credentials, which a postgres:// URL can.
        let _ = url.set_username(&user);
        if let Some(pw) = src.secret("state_storage.postgres_password") {
            let _ = url.set_password(Some(&pw));
        }
    }
    Ok(Some(url.to_string()))
}

/// The `agent` block; returns the Go `agent_cli`.
fn agent(src: &Source<'_>, out: &mut Out) -> Result<String, GoImportError> {
    let cli_raw = src.string("agent_cli").unwrap_or_else(|| "claude".into());
    let cli = cli_raw.to_ascii_lowercase();
    out.line("agent:");
    match cli.as_str() {
        "claude" | "codex" | "gemini" | "goose" => {
            out.line(format!("  preset: {cli}   # agent_cli"));
        }
        other => {
            out.line("  preset: claude");
            out.note(
                "agent_cli",
                format!("{other:?} is not a CLI nightcrier knows (claude, codex, gemini, goose); the claude preset was written. For any other program use `preset: command` with `command: [argv...]`."),
            );
        }
    }
    if let Some(model) = src.string("agent_model") {
        let resolved = resolve_model(&cli, &model);
        if resolved == model {
            out.line(format!("  model: {}   # agent_model", q(&model)));
        } else {
            out.line(format!(
                "  model: {}   # agent_model {model:?}: the Go codex runner's alias, resolved",
                q(&resolved)
            ));
        }
    }
    if let Some(t) = src.int("agent_timeout")?.filter(|t| *t > 0) {
        out.line(format!("  timeout: {t}s   # agent_timeout"));
    }
    if let Some(b) = src.tuning_int("agent", "timeout_buffer_seconds")? {
        if b > 0 {
            out.line(format!(
                "  kill_grace: {b}s   # tuning agent.timeout_buffer_seconds: after the timeout, SIGTERM, then SIGKILL this much later"
            ));
        }
    }
    if let Some(m) = src.tuning_int("agent", "investigation_min_size_bytes")? {
        out.line(format!(
            "  min_report_bytes: {m}   # tuning agent.investigation_min_size_bytes"
        ));
    }
    if let Some(p) = src.string("agent_system_prompt_file") {
        out.line(format!(
            "  system_prompt_file: {}   # agent_system_prompt_file",
            q(&p)
        ));
    }
    if let Some(tools) = src.string("agent_allowed_tools") {
        let listed: Vec<&str> = tools
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let extra: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|t| !CLAUDE_PRESET_TOOLS.contains(t))
            .collect();
        if cli == "claude" && !extra.is_empty() {
            let args: Vec<String> = std::iter::once("--allowedTools".to_string())
                .chain(extra.iter().map(|t| t.to_string()))
                .map(|a| q(&a))
                .collect();
            out.line(format!(
                "  extra_args: [{}]   # agent_allowed_tools beyond the preset's {}",
                args.join(", "),
                CLAUDE_PRESET_TOOLS.join(",")
            ));
        } else if cli != "claude" {
            out.note(
                "agent_allowed_tools",
                format!("{tools:?} was passed to Claude only; the {cli} preset runs the CLI in its own non-interactive mode (see docs of the preset); add CLI flags with `agent.extra_args`."),
            );
        }
    }
    // API keys: from the file they are carried (they were in a file already); from the
    // environment they are not copied into a file.
    let mut env_lines = Vec::new();
    for (key, var) in [
        ("anthropic_api_key", "ANTHROPIC_API_KEY"),
        ("openai_api_key", "OPENAI_API_KEY"),
        ("gemini_api_key", "GEMINI_API_KEY"),
    ] {
        if let Some(v) = src.secret(key) {
            env_lines.push(format!(
                "    {var}: {}   # {key} (a secret: redacted by config check)",
                q(&v)
            ));
        } else if src.env_has(var) {
            out.note(
                var,
                format!("set in the environment; agents do not inherit nightcrier's environment. Export NIGHTCRIER_AGENT__ENV__{var}=\"${var}\" for nightcrier (not copied into this file)."),
            );
        }
    }
    let needed = api_key_var(&cli);
    let has_needed = src.secret(&needed.to_ascii_lowercase()).is_some() || src.env_has(needed);
    if !has_needed {
        out.note(
            needed,
            format!("the {cli} agent needs it: set NIGHTCRIER_AGENT__ENV__{needed} (agents get only `agent.env`, not nightcrier's environment)."),
        );
    }
    if !env_lines.is_empty() {
        out.line("  env:");
        for l in env_lines {
            out.line(l);
        }
    }
    if let Some(image) = src.string("agent_image") {
        out.line("  # The Go program ran every agent in Docker through agent-container/run-agent.sh; nightcrier");
        out.line("  # runs the CLI directly. To keep a container, the image must contain the CLI itself:");
        out.line("  # container:");
        out.line("  #   runtime: docker");
        out.line(format!("  #   image: {}   # agent_image", q(&image)));
        out.note(
            "agent_image / agent_script_path",
            "nightcrier starts the agent CLI itself (preset argv, workspace, timeout, process group); run-agent.sh and its runners are not used. Install the CLI on the host, or uncomment `agent.container` with an image that has the CLI.",
        );
    } else if src.string("agent_script_path").is_some() {
        out.note(
            "agent_script_path",
            "not used: nightcrier starts the agent CLI itself; for your own script use `preset: command` with `command: [\"/path/script\", \"{prompt_file}\"]`.",
        );
    }
    if src.string("additional_agent_prompt").is_some() {
        out.note(
            "additional_agent_prompt",
            "append the text to the file named by `agent.system_prompt_file`; cluster facts belong in `clusters[].environment` and `clusters[].labels`, which are told to the agent.",
        );
    }
    if src.bool("agent_verbose")?.unwrap_or(false) {
        out.note(
            "agent_verbose",
            "always on in effect: each agent's whole output goes to <workspace>/logs/agent.log (`nightcrier tail <id>`).",
        );
    }
    out.line("");
    Ok(cli)
}

fn notifications(src: &Source<'_>, out: &mut Out) -> Result<(), GoImportError> {
    let threshold = src.int("failure_threshold_for_alert")?.filter(|n| *n > 0);
    let slack = src.secret("slack_webhook_url");
    if threshold.is_none() && slack.is_none() {
        if src.env_has("SLACK_WEBHOOK_URL") {
            out.note("SLACK_WEBHOOK_URL", "set in the environment: export NIGHTCRIER_NOTIFICATIONS__SLACK__WEBHOOK_URL=\"$SLACK_WEBHOOK_URL\" (not copied into this file).");
        }
        return Ok(());
    }
    out.line("notifications:");
    if let Some(n) = threshold {
        out.line(format!(
            "  failure_threshold: {n}   # failure_threshold_for_alert: consecutive failed runs before one \"triage degraded\" message"
        ));
    }
    if let Some(url) = slack {
        out.line("  slack:");
        out.line(format!(
            "    webhook_url: {}   # slack_webhook_url (a secret: redacted by config check)",
            q(&url)
        ));
        if let Some(t) = src
            .tuning_int("http", "slack_timeout_seconds")?
            .filter(|t| *t > 0)
        {
            out.line(format!(
                "    timeout: {t}s   # tuning http.slack_timeout_seconds"
            ));
        }
    } else if src.env_has("SLACK_WEBHOOK_URL") {
        out.note("SLACK_WEBHOOK_URL", "set in the environment: export NIGHTCRIER_NOTIFICATIONS__SLACK__WEBHOOK_URL=\"$SLACK_WEBHOOK_URL\" (not copied into this file).");
    }
    if src.bool("notify_on_agent_failure")? == Some(false) {
        out.note(
            "notify_on_agent_failure",
            "false: nightcrier always sends the one \"triage degraded\" message after `notifications.failure_threshold` failures in a row; raise the threshold to hear less.",
        );
    }
    out.line("");
    Ok(())
}

fn artifacts(src: &Source<'_>, out: &mut Out) {
    let container = src.string("azure_storage_container");
    let conn = src.secret("azure_storage_connection_string").is_some()
        || src.env_has("AZURE_STORAGE_CONNECTION_STRING");
    if container.is_none() && !conn {
        if src.bool("upload_failed_investigations").ok().flatten() == Some(true) {
            out.note("upload_failed_investigations", "nightcrier uploads the files of every finished incident, failed ones included, when `reporting.artifacts` is set.");
        }
        return;
    }
    let container = container.unwrap_or_else(|| "incidents".into());
    out.line("# Azure Blob Storage (azure_storage_*):");
    out.line("# reporting:");
    out.line("#   artifacts:");
    out.line(format!(
        "#     url: {}",
        q(&format!("az://{container}/nightcrier"))
    ));
    out.line("#     options:            # or AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY in the environment");
    if let Some(acct) = src.string("azure_storage_account") {
        out.line(format!("#       azure_storage_account_name: {}", q(&acct)));
    }
    out.line("#       azure_storage_account_key: \"...\"   # azure_storage_key (secret)");
    out.line("");
    out.note(
        "azure_storage_* / azure_sas_expiry",
        "artifacts upload is `reporting.artifacts` (commented out above). A connection string is not accepted: give the account name and key. Links are SAS links that expire after `reporting.artifacts.link_expiry` (7 days by default), or under `public_base_url` when set.",
    );
}

fn clusters_block(
    src: &Source<'_>,
    clusters: &[Value],
    cli: &str,
    out: &mut Out,
) -> Result<(), GoImportError> {
    let legacy_kubeconfig = src.string("kubeconfig_path");
    out.line("clusters:");
    for (i, c) in clusters.iter().enumerate() {
        let key = format!("clusters[{i}]");
        let name = c.get("name").and_then(scalar).unwrap_or_default();
        if name.is_empty() {
            return Err(src.bad(&format!("{key}.name"), String::new(), "a cluster name"));
        }
        if !crate::config::is_valid_cluster_name(&name) {
            out.note(
                &format!("{key}.name"),
                format!("{name:?} must be renamed: nightcrier cluster names are 1 to 63 characters from A-Z a-z 0-9 _ . - (they become paths and metric labels)."),
            );
        }
        out.line(format!("  - name: {}", q(&name)));
        if let Some(env) = c
            .get("environment")
            .and_then(scalar)
            .filter(|s| !s.is_empty())
        {
            out.line(format!("    environment: {}", q(&env)));
        }
        if let Some(Value::Mapping(labels)) = c.get("labels") {
            if !labels.is_empty() {
                out.line("    labels:");
                for (k, v) in labels {
                    let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                        continue;
                    };
                    out.line(format!("      {}: {}", q(&k), q(&v)));
                }
            }
        }
        let endpoint = c
            .get("mcp")
            .and_then(|m| m.get("endpoint"))
            .and_then(scalar)
            .unwrap_or_default();
        if endpoint.is_empty() {
            return Err(src.bad(
                &format!("{key}.mcp.endpoint"),
                String::new(),
                "the MCP server URL",
            ));
        }
        out.line("    mcp:");
        out.line(format!("      endpoint: {}", q(&endpoint)));
        if src.string("subscribe_mode").as_deref() == Some("events") {
            out.line("      subscribe_mode: events   # subscribe_mode");
        }
        if c.get("mcp")
            .and_then(|m| m.get("api_key"))
            .and_then(scalar)
            .is_some_and(|s| !s.is_empty())
        {
            out.note(
                &format!("{key}.mcp.api_key"),
                "a placeholder the Go program never sent. If your MCP server needs authentication, set `mcp.headers` (e.g. Authorization: \"Bearer ...\"; values are secrets).",
            );
        }
        let triage = c.get("triage");
        let enabled = match triage.and_then(|t| t.get("enabled")) {
            Some(v) => match scalar(v).as_deref() {
                Some("true") => true,
                Some("false") => false,
                _ => {
                    return Err(src.bad(
                        &format!("{key}.triage.enabled"),
                        format!("{v:?}"),
                        "true or false",
                    ))
                }
            },
            // Go's zero value: a cluster without `triage.enabled: true` was watched only.
            None => false,
        };
        let kubeconfig = triage
            .and_then(|t| t.get("kubeconfig"))
            .and_then(scalar)
            .filter(|s| !s.is_empty())
            .or_else(|| legacy_kubeconfig.clone().filter(|_| clusters.len() == 1));
        out.line("    triage:");
        out.line(format!(
            "      enabled: {enabled}{}",
            if triage.and_then(|t| t.get("enabled")).is_none() {
                "   # absent in the Go file, which meant off"
            } else {
                ""
            }
        ));
        if let Some(k) = kubeconfig {
            out.line(format!("      kubeconfig: {}", q(&k)));
        }
        if triage
            .and_then(|t| t.get("allow_secrets_access"))
            .and_then(scalar)
            .as_deref()
            == Some("true")
        {
            out.note(
                &format!("{key}.triage.allow_secrets_access"),
                "no switch in nightcrier: what the agent may read is what the kubeconfig's RBAC allows (checked at start into cluster_permissions.json). Grant or deny secrets/configmaps there.",
            );
        }
    }
    let _ = cli;
    if legacy_kubeconfig.is_some() {
        out.note(
            "kubeconfig_path",
            "the single-cluster setting is per cluster now: `clusters[].triage.kubeconfig`.",
        );
    }
    out.line("");
    Ok(())
}

/// Keys that were read but did nothing, or do something else now.
fn ignored(src: &Source<'_>, out: &mut Out) -> Result<(), GoImportError> {
    match src.string("subscribe_mode").as_deref() {
        None | Some("faults") => {}
        Some("events") => out.note(
            "subscribe_mode",
            "\"events\" is now per cluster (`mcp.subscribe_mode: events`, written on each cluster above); only Warning events become incidents, keyed by reason + object + message pattern.",
        ),
        Some(other) => out.note(
            "subscribe_mode",
            format!("{other:?} is not a mode (faults or events); clusters use `faults`."),
        ),
    }
    if let Some(level) = src.string("log_level") {
        out.note(
            "log_level",
            format!(
                "{level:?}: use `--log-level {}` or RUST_LOG (not a configuration key).",
                level.to_ascii_lowercase()
            ),
        );
    }
    if let Some(s) = src.string("severity_threshold") {
        out.note(
            "severity_threshold",
            format!("{s:?} was read but never applied by the Go program. nightcrier records every fault the server sends; to not investigate a cluster set `clusters[].triage.enabled: false` (faults recorded, incidents `skipped`); repeats are folded into one incident by `dedup.cooldown`."),
        );
    }
    for key in [
        "global_queue_size",
        "cluster_queue_size",
        "queue_overflow_policy",
    ] {
        if src.string(key).is_some() {
            out.note(
                key,
                "no equivalent: the queue is the database, so nothing waiting is dropped; only while the database is unreachable do faults wait in memory (`ingest.buffer_capacity`, default 100000, then dropped and counted in nightcrier_events_dropped_total).",
            );
        }
    }
    if src.string("kubernetes_context").is_some() {
        out.note(
            "kubernetes_context",
            "set the context inside each cluster's kubeconfig (`current-context`).",
        );
    }
    if src.file("skills").is_some() {
        out.note(
            "skills.*",
            "no skills cache: put investigation methodology in `agent.system_prompt_file`.",
        );
    }
    for (section, key) in [
        ("reporting", "root_cause_truncation_length"),
        ("reporting", "failure_reasons_display_count"),
        ("reporting", "max_failure_reasons_tracked"),
        ("events", "channel_buffer_size"),
        ("io", "stdout_buffer_size"),
        ("io", "stderr_buffer_size"),
    ] {
        if src.tuning_int(section, key)?.is_some() {
            out.note(
                &format!("tuning {section}.{key}"),
                "no equivalent: nightcrier's bounds are fixed (Slack text and stored texts are bounded in bytes; agent output streams to its log file).",
            );
        }
    }
    Ok(())
}

fn env_list(src: &Source<'_>, out: &mut Out) {
    out.line("# ---------------------------------------------------------------------------");
    out.line("# The Go program's environment variables and their nightcrier names. nightcrier reads only");
    out.line(
        "# NIGHTCRIER_<KEY PATH> (levels joined by __); `*` marks those set when this import ran",
    );
    out.line("# (non-secret ones were applied above, secrets were not copied).");
    for (var, _go_key, ours, secret) in GO_ENV_VARS {
        let mark = if src.env_has(var) { "*" } else { " " };
        let target = match ours {
            Some(k) if k.starts_with("agent.env.") => {
                format!("NIGHTCRIER_AGENT__ENV__{}", &k["agent.env.".len()..])
            }
            Some(k)
                if k.contains('[')
                    || *k == "database.url"
                    || k.starts_with("reporting.")
                    || *k == "agent.extra_args"
                    || *k == "agent.container.image" =>
            {
                format!("{k} (see above)")
            }
            Some(k) => format!("NIGHTCRIER_{}", k.to_ascii_uppercase().replace('.', "__")),
            None => "no equivalent (see the notes)".to_string(),
        };
        let secret = if *secret { "  [secret]" } else { "" };
        out.line(format!("# {mark} {var:<40} -> {target}{secret}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str, env: &[(&str, &str)]) -> GoImport {
        import_config(
            text,
            Path::new("config.yaml"),
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("import")
    }

    const MINIMAL: &str = "clusters:\n  - name: a\n    mcp: {endpoint: \"http://h:8080/mcp\"}\n    triage: {enabled: true}\nagent_cli: codex\nagent_model: opus\nslack_webhook_url: \"https://hooks.slack.com/services/T/B/X\"\n";

    #[test]
    fn codex_aliases_are_resolved() {
        assert_eq!(resolve_model("codex", "sonnet"), "gpt-5.2");
        assert_eq!(resolve_model("codex", "opus"), "gpt-5-codex");
        assert_eq!(resolve_model("codex", "haiku"), "gpt-4o");
        assert_eq!(resolve_model("claude", "sonnet"), "sonnet");
        let out = import(MINIMAL, &[]);
        assert!(out.yaml.contains("model: \"gpt-5-codex\""), "{}", out.yaml);
    }

    #[test]
    fn environment_overrides_the_file_but_secrets_are_not_copied() {
        let out = import(
            MINIMAL,
            &[
                ("WORKSPACE_ROOT", "/srv/ws"),
                ("OPENAI_API_KEY", "sk-from-env-secret"),
                ("UNRELATED", "x"),
                ("SUBSCRIBE_MODE", "events"),
            ],
        );
        assert!(
            out.yaml
                .contains("workspace_root: \"/srv/ws\"   # from $WORKSPACE_ROOT"),
            "{}",
            out.yaml
        );
        assert!(out.yaml.contains("subscribe_mode: events"), "{}", out.yaml);
        assert!(!out.yaml.contains("sk-from-env-secret"));
        assert!(out.yaml.contains("NIGHTCRIER_AGENT__ENV__OPENAI_API_KEY"));
        assert_eq!(
            out.env_seen,
            vec!["OPENAI_API_KEY", "SUBSCRIBE_MODE", "WORKSPACE_ROOT"]
        );
        assert!(out.yaml.contains("# * WORKSPACE_ROOT"), "{}", out.yaml);
    }

    #[test]
    fn no_clusters_is_a_clear_error() {
        let e = import_config("agent_cli: claude\n", Path::new("x.yaml"), None, Vec::new())
            .expect_err("must fail");
        assert!(e.to_string().contains("no `clusters` list"), "{e}");
        let e = import_config(
            "clusters: [{name: a, mcp: {endpoint: e}, triage: {enabled: maybe}}]",
            Path::new("x.yaml"),
            None,
            Vec::new(),
        )
        .expect_err("must fail");
        assert!(e.to_string().contains("clusters[0].triage.enabled"), "{e}");
    }
}
