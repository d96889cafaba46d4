//! Loading: file discovery, YAML parsing with key paths and positions, environment overrides.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::validate::{validate, Problem};
use super::Config;

/// Environment variables starting with this prefix override file values.
pub const ENV_PREFIX: &str = "NIGHTCRIER_";
/// Separates nesting levels in an override's name: `NIGHTCRIER_DATABASE__URL` is `database.url`.
pub const ENV_SEPARATOR: &str = "__";

/// Where the configuration is looked for when `--config` is not given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["./nightcrier.yaml", "/etc/nightcrier/nightcrier.yaml"];

/// Top-level keys an environment override may start with; any other `NIGHTCRIER_*` variable
/// (`NIGHTCRIER_CONFIG`, `NIGHTCRIER_TEST_*`...) is not configuration.
const TOP_LEVEL_KEYS: &[&str] = &[
    "database",
    "workspace_root",
    "limits",
    "dedup",
    "ingest",
    "reconnect",
    "worker",
    "agent",
    "http",
    "clusters",
    // Were missing: NIGHTCRIER_NOTIFICATIONS__SLACK__WEBHOOK_URL was silently ignored.
    "reporting",
    "notifications",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("{origin}: invalid configuration:\n{}", format_problems(.problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A validated configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, `None` when no file was found and defaults were used.
    pub path: Option<PathBuf>,
    /// Environment variables that overrode file values (names only).
    pub overrides: Vec<String>,
    /// Things that are allowed but probably wrong (a kubeconfig that does not exist...).
    pub warnings: Vec<String>,
}

/// Loads `explicit` (which must exist) or the first default path that exists, else the defaults;
/// then applies `NIGHTCRIER_*` overrides from `env` and validates.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => DEFAULT_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    };
    let text = match &path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?,
        None => String::new(),
    };
    let origin = path.as_ref().map_or_else(
        || "built-in defaults".to_string(),
        |p| p.display().to_string(),
    );
    let mut loaded = from_str_with_env(&text, &origin, env)?;
    loaded.path = path;
    Ok(loaded)
}

/// Loads from YAML text; `origin` names the source in errors.
pub fn from_str_with_env(
    text: &str,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    // First pass straight from the text: its errors carry the line and column.
    let from_file: Config = if text.trim().is_empty() {
        Config::default()
    } else {
        deserialize_text(text, origin)?
    };

    let overrides = collect_overrides(env);
    let config = if overrides.is_empty() {
        from_file
    } else {
        let mut tree = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_yaml_ng::from_str::<Value>(text).map_err(|e| parse_error(origin, &e))?
        };
        for (var, path, value) in &overrides {
            apply_override(&mut tree, path, value.clone()).map_err(|message| ConfigError::Env {
                var: var.clone(),
                message,
            })?;
        }
        serde_path_to_error::deserialize(tree).map_err(|e| {
            let names: Vec<&str> = overrides.iter().map(|(v, _, _)| v.as_str()).collect();
            ConfigError::Parse {
                origin: format!("{origin} with overrides from {}", names.join(", ")),
                message: describe_path_error(&e),
            }
        })?
    };

    let warnings = match validate(&config) {
        Ok(w) => w,
        Err(problems) => {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems,
            })
        }
    };
    Ok(LoadedConfig {
        config,
        path: None,
        overrides: overrides.into_iter().map(|(v, _, _)| v).collect(),
        warnings,
    })
}

fn deserialize_text(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: describe_path_error(&e),
    })
}

fn describe_path_error(e: &serde_path_to_error::Error<serde_yaml_ng::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.inner();
    let position = inner
        .location()
        .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
        .unwrap_or_default();
    // serde_yaml_ng appends its own "at line X column Y"; keep one position, ours.
    let mut message = inner.to_string();
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    // It may also prefix the path itself.
    if let Some(rest) = message.strip_prefix(&format!("{path}: ")) {
        message = rest.to_string();
    }
    if path == "." || path.is_empty() {
        format!("{message}{position}")
    } else {
        format!("key `{path}`: {message}{position}")
    }
}

fn parse_error(origin: &str, e: &serde_yaml_ng::Error) -> ConfigError {
    ConfigError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    }
}

/// `(variable name, key path, value)` for every `NIGHTCRIER_*` configuration variable, sorted by
/// name so that application order is deterministic.
fn collect_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, Vec<String>, Value)> {
    let mut out: Vec<_> = env
        .into_iter()
        .filter_map(|(var, raw)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            let mut path: Vec<String> = Vec::new();
            for (i, seg) in rest.split(ENV_SEPARATOR).enumerate() {
                // Keys under a map of environment variables keep their case (`ANTHROPIC_API_KEY`).
                let keep_case = i > 0 && path.last().is_some_and(|p| p == "env");
                path.push(if keep_case {
                    seg.to_string()
                } else {
                    seg.to_ascii_lowercase()
                });
            }
            if !TOP_LEVEL_KEYS.contains(&path.first()?.as_str()) {
                return None;
            }
            // A value that is not valid YAML is taken as a plain string.
            let value = serde_yaml_ng::from_str::<Value>(&raw).unwrap_or(Value::String(raw));
            let value = match value {
                Value::Null => Value::String(String::new()),
                v => v,
            };
            Some((var, path, value))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn apply_override(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *tree = value;
        return Ok(());
    };
    if first.is_empty() {
        return Err("empty key segment (two separators in a row?)".into());
    }
    match tree {
        Value::Sequence(items) => {
            let idx: usize = first
                .parse()
                .map_err(|_| format!("`{first}` is not a list index"))?;
            if idx > items.len() {
                return Err(format!(
                    "list index {idx} is past the end (the list has {} items)",
                    items.len()
                ));
            }
            if idx == items.len() {
                items.push(Value::Mapping(Default::default()));
            }
            apply_override(&mut items[idx], rest, value)
        }
        Value::Mapping(map) => {
            let key = Value::String(first.clone());
            if !map.contains_key(&key) {
                let child = if rest.first().is_some_and(|s| s.parse::<usize>().is_ok()) {
                    Value::Sequence(Vec::new())
                } else {
                    Value::Mapping(Default::default())
                };
                map.insert(key.clone(), child);
            }
            match map.get_mut(&key) {
                Some(child) => apply_override(child, rest, value),
                None => Err("internal: key vanished".into()),
            }
        }
        Value::Null => {
            *tree = Value::Mapping(Default::default());
            apply_override(tree, path, value)
        }
        _ => Err(format!(
            "`{first}` is nested under a value that is not a map or list"
        )),
    }
}
