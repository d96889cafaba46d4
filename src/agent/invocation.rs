//! The complete command of one run: the preset's argv plus `agent.extra_args`, the agent's
//! environment, and the container wrapper when `agent.container` is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::container;
use super::error::AgentError;
use super::presets::{self, Placeholders, PresetCommand, PresetInput};
use super::workspace::Workspace;
use crate::config::{AgentConfig, AgentPreset, Secret};

/// The variables every agent gets, whatever its preset.
pub const ENV_INCIDENT_ID: &str = "INCIDENT_ID";
pub const ENV_INCIDENT_WORKSPACE: &str = "INCIDENT_WORKSPACE";
pub const ENV_INCIDENT_FILE: &str = "INCIDENT_FILE";
pub const ENV_REPORT_FILE: &str = "REPORT_FILE";
pub const ENV_CLUSTER_NAME: &str = "CLUSTER_NAME";
pub const ENV_KUBECONFIG: &str = "KUBECONFIG";

/// Variables of nightcrier's own environment an agent (or the container runtime) inherits.
/// Nothing else is: nightcrier's environment may hold its database password or webhook URLs,
/// and the agent runs a model that executes shell commands. Keys go in `agent.env`.
pub const ENV_PASSTHROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Everything needed to start the agent process.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    /// The agent's own variables (common, preset, `agent.env`), on top of [`ENV_PASSTHROUGH`].
    /// Inside a container these are passed by name only, never as values in argv.
    pub env: BTreeMap<String, Secret>,
    /// Connected to stdin; `/dev/null` when `None`.
    pub stdin: Option<PathBuf>,
    pub cwd: PathBuf,
    /// Created (0700) before start.
    pub dirs: Vec<PathBuf>,
    /// Written (0600) before start.
    pub files: Vec<(PathBuf, String)>,
    /// Run, best effort, when the agent is stopped early: signalling a container runtime's
    /// client does not always stop the container.
    pub stop_command: Option<(String, Vec<String>)>,
}

/// The facts of one run the command is built from.
#[derive(Debug, Clone, Copy)]
pub struct RunSpec<'a> {
    pub agent: &'a AgentConfig,
    pub incident_id: Uuid,
    pub attempt: i32,
    pub cluster: &'a str,
    pub workspace: &'a Workspace,
    /// The cluster's read-only kubeconfig, absolute.
    pub kubeconfig: Option<&'a Path>,
    /// Exactly what `prompt.md` holds.
    pub prompt: &'a str,
    pub system_prompt: Option<&'a str>,
    /// Nightcrier's per-run MCP endpoint, when MCP tools are offered.
    pub mcp: Option<presets::McpServer<'a>>,
    /// The preset's [`presets::key_variables`] found in nightcrier's environment.
    pub inherited: &'a BTreeMap<String, Secret>,
}

pub fn build(spec: &RunSpec<'_>) -> Result<Invocation, AgentError> {
    let agent = spec.agent;
    let ws = spec.workspace;
    let (prompt_file, report_file) = (ws.prompt_file(), ws.report_file());
    let incident_id = spec.incident_id.to_string();
    let state_dir = ws.state_dir().join(preset_name(agent.preset));
    // Later entries win: the inherited API-key variables, then the user's `agent.env`.
    let mut keys: BTreeMap<String, Secret> = spec
        .inherited
        .iter()
        .filter(|(k, _)| presets::key_variables(agent.preset).contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    keys.extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if agent.preset == AgentPreset::Codex && !keys.contains_key("CODEX_API_KEY") {
        // `codex exec` reads CODEX_API_KEY only; a user who exported OPENAI_API_KEY means it.
        if let Some(v) = keys.get("OPENAI_API_KEY").cloned() {
            keys.insert("CODEX_API_KEY".into(), v);
        }
    }
    let base_url = match agent.preset {
        AgentPreset::Codex => keys.get("OPENAI_BASE_URL").map(|v| v.expose().to_string()),
        _ => None,
    };
    let user_env: Vec<&str> = keys.keys().map(String::as_str).collect();
    let input = PresetInput {
        workspace: ws.dir(),
        prompt: spec.prompt,
        prompt_file: &prompt_file,
        state_dir: &state_dir,
        model: agent.model.as_deref(),
        system_prompt: spec.system_prompt,
        user_env: &user_env,
        mcp: spec.mcp,
        max_turns: agent.max_turns,
        max_cost_usd: agent.max_cost_usd,
        allowed_tools: agent.allowed_tools.as_deref(),
        base_url: base_url.as_deref(),
    };
    let binary = |preset| {
        agent.binary.as_ref().map_or_else(
            || presets::default_binary(preset).to_string(),
            |b| b.display().to_string(),
        )
    };
    let preset: PresetCommand = match agent.preset {
        AgentPreset::Claude => presets::claude(&input, binary(AgentPreset::Claude)),
        AgentPreset::Codex => presets::codex(&input, binary(AgentPreset::Codex)),
        AgentPreset::Gemini => presets::gemini(&input, binary(AgentPreset::Gemini)),
        AgentPreset::Goose => presets::goose(&input, binary(AgentPreset::Goose)),
        AgentPreset::Command => {
            let values = Placeholders {
                incident_id: &incident_id,
                workspace: ws.dir(),
                prompt_file: &prompt_file,
                report_file: &report_file,
                cluster: spec.cluster,
                model: agent.model.as_deref(),
            };
            presets::command(&agent.command, &values).ok_or(AgentError::EmptyCommand)?
        }
    };

    let mut args = preset.args;
    args.extend(agent.extra_args.iter().cloned());
    args.extend(preset.trailing);

    // Later entries win: the preset's defaults, then the user's `agent.env`, then the variables
    // that describe this run (a user value must not point the agent at another incident).
    let mut env: BTreeMap<String, Secret> = preset
        .env
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect();
    env.extend(keys);
    if let Some(mcp) = &spec.mcp {
        env.insert(presets::MCP_URL_VAR.into(), Secret::new(mcp.url));
        env.insert(presets::MCP_TOKEN_VAR.into(), Secret::new(mcp.token));
    }
    let path_var = |p: &Path| Secret::new(p.display().to_string());
    env.insert(ENV_INCIDENT_ID.into(), Secret::new(incident_id.clone()));
    env.insert(ENV_INCIDENT_WORKSPACE.into(), path_var(ws.dir()));
    env.insert(ENV_INCIDENT_FILE.into(), path_var(&ws.incident_file()));
    env.insert(ENV_REPORT_FILE.into(), path_var(&report_file));
    env.insert(ENV_CLUSTER_NAME.into(), Secret::new(spec.cluster));
    let kubeconfig = spec.kubeconfig.filter(|_| agent.kubectl);
    if let Some(kubeconfig) = kubeconfig {
        env.insert(ENV_KUBECONFIG.into(), path_var(kubeconfig));
    }

    let invocation = Invocation {
        program: preset.program,
        args,
        env,
        stdin: preset.stdin,
        cwd: ws.dir().to_path_buf(),
        dirs: preset.dirs,
        files: preset.files,
        stop_command: None,
    };
    Ok(match &agent.container {
        Some(c) => container::wrap(
            invocation,
            c,
            kubeconfig,
            &container::container_name(spec.incident_id, spec.attempt),
        ),
        None => invocation,
    })
}

pub(crate) fn preset_name(preset: AgentPreset) -> &'static str {
    match preset {
        AgentPreset::Claude => "claude",
        AgentPreset::Codex => "codex",
        AgentPreset::Gemini => "gemini",
        AgentPreset::Goose => "goose",
        AgentPreset::Command => "command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContainerConfig, ContainerRuntime};

    fn spec_for<'a>(agent: &'a AgentConfig, ws: &'a Workspace) -> RunSpec<'a> {
        RunSpec {
            agent,
            incident_id: Uuid::nil(),
            attempt: 1,
            cluster: "prod",
            workspace: ws,
            kubeconfig: Some(Path::new("/etc/nc/prod.kubeconfig")),
            prompt: "Investigate.",
            system_prompt: None,
            mcp: None,
            inherited: &NO_KEYS,
        }
    }

    static NO_KEYS: BTreeMap<String, Secret> = BTreeMap::new();

    #[test]
    fn extra_args_follow_the_preset_and_precede_a_trailing_positional() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let agent = AgentConfig {
            preset: AgentPreset::Codex,
            extra_args: vec!["--profile".into(), "x".into()],
            ..AgentConfig::default()
        };
        let inv = build(&spec_for(&agent, &ws)).unwrap();
        let n = inv.args.len();
        assert_eq!(inv.args[n - 3..], ["--profile", "x", "-"]);

        let agent = AgentConfig {
            extra_args: vec!["--verbose".into()],
            ..AgentConfig::default()
        };
        let inv = build(&spec_for(&agent, &ws)).unwrap();
        assert_eq!(inv.args.last().map(String::as_str), Some("--verbose"));
        assert_eq!(inv.program, "claude");
    }

    #[test]
    fn every_agent_gets_the_run_variables_and_they_win_over_user_env() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let mut agent = AgentConfig {
            preset: AgentPreset::Command,
            command: vec!["/bin/true".into()],
            binary: Some("/ignored".into()),
            ..AgentConfig::default()
        };
        agent
            .env
            .insert("INCIDENT_ID".into(), Secret::new("spoofed"));
        agent.env.insert("API_KEY".into(), Secret::new("sk-1"));
        let inv = build(&spec_for(&agent, &ws)).unwrap();
        let get = |k: &str| inv.env.get(k).map(|v| v.expose().to_string());
        let dir = format!("/ws/{}", Uuid::nil());
        assert_eq!(get("INCIDENT_ID"), Some(Uuid::nil().to_string()));
        assert_eq!(get("INCIDENT_WORKSPACE"), Some(dir.clone()));
        assert_eq!(get("INCIDENT_FILE"), Some(format!("{dir}/incident.json")));
        assert_eq!(
            get("REPORT_FILE"),
            Some(format!("{dir}/output/investigation.md"))
        );
        assert_eq!(get("CLUSTER_NAME"), Some("prod".into()));
        assert_eq!(get("KUBECONFIG"), Some("/etc/nc/prod.kubeconfig".into()));
        assert_eq!(get("API_KEY"), Some("sk-1".into()));
        assert_eq!(inv.program, "/bin/true");
        assert_eq!(inv.cwd, Path::new(&dir));
        assert!(format!("{inv:?}").contains("<redacted>"));
        assert!(!format!("{inv:?}").contains("sk-1"));
    }

    #[test]
    fn an_empty_command_is_a_clear_error() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let agent = AgentConfig {
            preset: AgentPreset::Command,
            ..AgentConfig::default()
        };
        let err = build(&spec_for(&agent, &ws)).unwrap_err();
        assert!(err.to_string().contains("agent.command is empty"), "{err}");
    }

    #[test]
    fn a_container_wraps_the_same_invocation() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let agent = AgentConfig {
            container: Some(ContainerConfig {
                runtime: ContainerRuntime::Podman,
                image: "agents/claude:1".into(),
                extra_args: vec![],
            }),
            ..AgentConfig::default()
        };
        let inv = build(&spec_for(&agent, &ws)).unwrap();
        assert_eq!(inv.program, "podman");
        let image_at = inv
            .args
            .iter()
            .position(|a| a == "agents/claude:1")
            .unwrap();
        assert_eq!(inv.args[image_at + 1], "claude");
        assert_eq!(inv.args[image_at + 2], "-p");
    }

    #[test]
    fn only_the_presets_own_key_variables_are_inherited_and_agent_env_wins() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let inherited: BTreeMap<String, Secret> = [
            ("ANTHROPIC_API_KEY", "sk-ant"),
            ("OPENAI_API_KEY", "sk-oai"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("GEMINI_API_KEY", "g-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Secret::new(v)))
        .collect();
        let get = |inv: &Invocation, k: &str| inv.env.get(k).map(|v| v.expose().to_string());

        let mut agent = AgentConfig::default();
        agent
            .env
            .insert("ANTHROPIC_API_KEY".into(), Secret::new("from-config"));
        let spec = RunSpec {
            inherited: &inherited,
            ..spec_for(&agent, &ws)
        };
        let inv = build(&spec).unwrap();
        assert_eq!(get(&inv, "ANTHROPIC_API_KEY"), Some("from-config".into()));
        assert_eq!(get(&inv, "OPENAI_API_KEY"), None);
        assert_eq!(get(&inv, "GEMINI_API_KEY"), None);

        // codex: OPENAI_API_KEY stands in for CODEX_API_KEY, OPENAI_BASE_URL becomes a provider.
        let agent = AgentConfig {
            preset: AgentPreset::Codex,
            ..AgentConfig::default()
        };
        let inv = build(&RunSpec {
            inherited: &inherited,
            ..spec_for(&agent, &ws)
        })
        .unwrap();
        assert_eq!(get(&inv, "CODEX_API_KEY"), Some("sk-oai".into()));
        assert_eq!(get(&inv, "ANTHROPIC_API_KEY"), None);
        assert!(inv.files[0]
            .1
            .contains("base_url = \"http://127.0.0.1:9/v1\""));

        // gemini: an inherited GEMINI_API_KEY selects the API-key auth type.
        let agent = AgentConfig {
            preset: AgentPreset::Gemini,
            ..AgentConfig::default()
        };
        let inv = build(&RunSpec {
            inherited: &inherited,
            ..spec_for(&agent, &ws)
        })
        .unwrap();
        assert_eq!(get(&inv, "GEMINI_API_KEY"), Some("g-1".into()));
        assert!(inv.files[0].1.contains("gemini-api-key"));

        let agent = AgentConfig {
            preset: AgentPreset::Command,
            command: vec!["/bin/true".into()],
            ..AgentConfig::default()
        };
        let inv = build(&RunSpec {
            inherited: &inherited,
            ..spec_for(&agent, &ws)
        })
        .unwrap();
        assert!(!inv.env.keys().any(|k| inherited.contains_key(k)));
    }

    #[test]
    fn kubectl_off_means_no_kubeconfig_and_mcp_on_means_its_variables() {
        let ws = Workspace::new(Path::new("/ws"), Uuid::nil());
        let agent = AgentConfig {
            kubectl: false,
            ..AgentConfig::default()
        };
        let mcp = presets::McpServer {
            name: "kubernetes",
            url: "http://127.0.0.1:4100/mcp",
            url_with_token: "http://127.0.0.1:4100/mcp/t0k",
            token: "t0k",
            timeout: std::time::Duration::from_secs(5),
        };
        let inv = build(&RunSpec {
            mcp: Some(mcp),
            ..spec_for(&agent, &ws)
        })
        .unwrap();
        assert!(!inv.env.contains_key("KUBECONFIG"));
        assert_eq!(
            inv.env["NIGHTCRIER_MCP_URL"].expose(),
            "http://127.0.0.1:4100/mcp"
        );
        assert_eq!(inv.env["NIGHTCRIER_MCP_TOKEN"].expose(), "t0k");
        assert!(!inv.args.iter().any(|a| a.contains("t0k")));
    }
}
