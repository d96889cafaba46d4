//! Each agent CLI's headless argv and environment, in one place per CLI (see
//! `docs/agent-clis.md`): these drift between CLI versions, so each is one small function that is
//! easy to read against the CLI's help text. `agent.extra_args` is appended by the caller.

use std::path::{Path, PathBuf};

use crate::config::AgentPreset;

/// What a preset needs to know about the run.
#[derive(Debug, Clone, Copy)]
pub struct PresetInput<'a> {
    pub workspace: &'a Path,
    pub prompt: &'a str,
    pub prompt_file: &'a Path,
    /// This preset's own state directory (under the workspace).
    pub state_dir: &'a Path,
    pub model: Option<&'a str>,
    /// Passed as a system prompt where the CLI has an option for it.
    pub system_prompt: Option<&'a str>,
    /// Names of the variables the agent gets (`agent.env` and the preset's inherited API-key
    /// variables), for presets whose settings depend on them.
    pub user_env: &'a [&'a str],
    /// Nightcrier's per-run MCP endpoint, when MCP tools are offered.
    pub mcp: Option<McpServer<'a>>,
    pub max_turns: u32,
    /// `agent.max_cost_usd`, for CLIs that enforce a spend ceiling.
    pub max_cost_usd: Option<f64>,
    /// Built-in tools (the CLI's names); `None`: the preset's default.
    pub allowed_tools: Option<&'a [String]>,
    /// The model API's base URL, for presets that need it in their config (codex).
    pub base_url: Option<&'a str>,
}

/// The per-run MCP endpoint as a preset writes it into the CLI's configuration.
#[derive(Clone, Copy)]
pub struct McpServer<'a> {
    /// The server's name in the CLI's configuration (tool names derive from it).
    pub name: &'a str,
    pub url: &'a str,
    /// The same URL with the token in its path, for CLIs that cannot send headers.
    pub url_with_token: &'a str,
    pub token: &'a str,
    /// Per tool call, for CLIs with their own MCP timeout.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for McpServer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The variable holding the MCP token for CLIs that read it from the environment (codex).
pub const MCP_TOKEN_VAR: &str = "NIGHTCRIER_MCP_TOKEN";
/// The endpoint's URL, for `preset: command` agents.
pub const MCP_URL_VAR: &str = "NIGHTCRIER_MCP_URL";

/// Claude Code's built-in tools when `agent.allowed_tools` is not set.
pub const CLAUDE_DEFAULT_TOOLS: &[&str] = &["Read", "Write", "Edit", "Bash"];

/// Variables of nightcrier's own environment each preset inherits (API keys and base URLs), on
/// top of [`super::ENV_PASSTHROUGH`]; `agent.env` wins over them. Never the whole environment.
pub fn key_variables(preset: AgentPreset) -> &'static [&'static str] {
    match preset {
        AgentPreset::Claude => &[
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_AUTH_TOKEN",
            "ANTHROPIC_BASE_URL",
        ],
        AgentPreset::Codex => &["CODEX_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"],
        AgentPreset::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL"],
        AgentPreset::Goose => &[
            "GOOSE_PROVIDER",
            "GOOSE_MODEL",
            "OPENAI_API_KEY",
            "OPENAI_HOST",
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_HOST",
            "GOOGLE_API_KEY",
        ],
        AgentPreset::Command => &[],
    }
}

/// The variables of which at least one must be set for the preset to authenticate; empty when
/// the preset cannot tell (goose picks a provider, `command` is the user's own).
pub fn required_keys(preset: AgentPreset) -> &'static [&'static str] {
    match preset {
        AgentPreset::Claude => &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"],
        AgentPreset::Codex => &["CODEX_API_KEY", "OPENAI_API_KEY"],
        AgentPreset::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        AgentPreset::Goose | AgentPreset::Command => &[],
    }
}

/// A preset's command before `extra_args`, the common environment and any container wrapper.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresetCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Goes after `extra_args` (a positional the CLI wants last).
    pub trailing: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A file to connect to the agent's stdin instead of `/dev/null`.
    pub stdin: Option<PathBuf>,
    /// Directories to create (0700) before start.
    pub dirs: Vec<PathBuf>,
    /// Files to write (0600) before start: settings that keep the CLI quiet and offline.
    pub files: Vec<(PathBuf, String)>,
}

/// Whether the preset passes `agent.system_prompt_file` as a real system prompt; the others get
/// it appended to the prompt.
pub fn has_system_prompt_option(preset: AgentPreset) -> bool {
    matches!(preset, AgentPreset::Claude)
}

/// The default executable of a preset.
pub fn default_binary(preset: AgentPreset) -> &'static str {
    match preset {
        AgentPreset::Claude => "claude",
        AgentPreset::Codex => "codex",
        AgentPreset::Gemini => "gemini",
        AgentPreset::Goose => "goose",
        AgentPreset::Command => "",
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

fn p(v: &Path) -> String {
    v.display().to_string()
}

/// `claude -p <prompt>`: the prompt must come right after `-p`, because `--allowedTools` takes
/// several values and would swallow a prompt placed after it. `acceptEdits` plus an explicit
/// tool list works as root too, where `bypassPermissions` refuses to start.
pub fn claude(input: &PresetInput<'_>, program: String) -> PresetCommand {
    let config_dir = input.state_dir.to_path_buf();
    let mut args = vec![s("-p"), s(input.prompt), s("--output-format"), s("json")];
    if let Some(model) = input.model {
        args.extend([s("--model"), s(model)]);
    }
    args.extend([
        s("--permission-mode"),
        s("acceptEdits"),
        s("--allowedTools"),
    ]);
    match input.allowed_tools {
        Some(tools) => args.extend(tools.iter().cloned()),
        None => args.extend(CLAUDE_DEFAULT_TOOLS.iter().map(|t| s(t))),
    }
    let mut files = Vec::new();
    if let Some(mcp) = &input.mcp {
        // `mcp__<server>` pre-approves every tool of the server: the endpoint only offers
        // read-only ones.
        args.push(format!("mcp__{}", mcp.name));
    }
    args.extend([
        s("--max-turns"),
        input.max_turns.to_string(),
        s("--no-session-persistence"),
        // Only the servers given here: never a `.mcp.json` an agent left in the workspace.
        s("--strict-mcp-config"),
    ]);
    if let Some(usd) = input.max_cost_usd {
        // Claude Code stops before a turn that would pass it and reports `error_max_budget_usd`.
        args.extend([s("--max-budget-usd"), format!("{usd:.2}")]);
    }
    if let Some(mcp) = &input.mcp {
        // A file (0600), not an argv string: the token must not show in the process list.
        let path = config_dir.join("mcp.json");
        let config = serde_json::json!({"mcpServers": {mcp.name: {
            "type": "http",
            "url": mcp.url,
            "headers": {"Authorization": format!("Bearer {}", mcp.token)},
        }}});
        files.push((path.clone(), config.to_string()));
        args.extend([s("--mcp-config"), p(&path)]);
    }
    if let Some(system) = input.system_prompt {
        args.extend([s("--append-system-prompt"), s(system)]);
    }
    let mut env = vec![
        (s("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), s("1")),
        (s("CLAUDE_CONFIG_DIR"), p(&config_dir)),
    ];
    if let Some(mcp) = &input.mcp {
        env.push((s("MCP_TOOL_TIMEOUT"), mcp.timeout.as_millis().to_string()));
    }
    PresetCommand {
        program,
        args,
        env,
        dirs: vec![config_dir],
        files,
        ..PresetCommand::default()
    }
}

/// A TOML basic string: JSON's string escapes are valid TOML.
fn toml_str(v: &str) -> String {
    serde_json::Value::String(v.to_string()).to_string()
}

/// `codex exec ... -`: the prompt on stdin from `prompt.md`. `workspace-write` is needed for the
/// report, and network access inside that sandbox for kubectl; `-o` keeps the final message.
pub fn codex(input: &PresetInput<'_>, program: String) -> PresetCommand {
    let home = input.state_dir.to_path_buf();
    let last_message = super::Workspace::from_dir(input.workspace).last_message_file();
    let mut args = [
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--sandbox",
        "workspace-write",
        "-c",
        "sandbox_workspace_write.network_access=true",
        "-C",
    ]
    .map(s)
    .to_vec();
    args.push(p(input.workspace));
    if let Some(model) = input.model {
        args.extend([s("-m"), s(model)]);
    }
    args.extend([s("--json"), s("-o"), p(&last_message)]);
    PresetCommand {
        program,
        args,
        trailing: vec![s("-")],
        env: vec![(s("CODEX_HOME"), p(&home))],
        stdin: Some(input.prompt_file.to_path_buf()),
        files: vec![(home.join("config.toml"), codex_config(input))],
        dirs: vec![home],
    }
}

/// `$CODEX_HOME/config.toml`: quiet and offline, the model provider when a base URL is given
/// (codex ignores `OPENAI_BASE_URL`), and the MCP endpoint as a streamable HTTP server whose
/// bearer token codex reads from [`MCP_TOKEN_VAR`].
fn codex_config(input: &PresetInput<'_>) -> String {
    let mut toml = String::new();
    if input.base_url.is_some() {
        toml.push_str("model_provider = \"nightcrier\"\n\n");
    }
    toml.push_str("[analytics]\nenabled = false\n\n[features]\nplugins = false\n");
    if let Some(url) = input.base_url {
        toml.push_str(&format!(
            "\n[model_providers.nightcrier]\nname = \"nightcrier\"\nbase_url = {}\n\
             env_key = \"CODEX_API_KEY\"\nwire_api = \"responses\"\n",
            toml_str(url)
        ));
    }
    if let Some(mcp) = &input.mcp {
        toml.push_str(&format!(
            "\n[mcp_servers.{}]\nurl = {}\nbearer_token_env_var = \"{MCP_TOKEN_VAR}\"\n\
             tool_timeout_sec = {}\ndefault_tools_approval_mode = \"approve\"\n",
            mcp.name,
            toml_str(mcp.url),
            mcp.timeout.as_secs().max(1)
        ));
    }
    toml
}

/// `gemini -p <prompt> -o json --yolo --skip-trust`: without trust, `--yolo` is silently
/// downgraded and no write tool is offered. No relaunch, so signals reach the real process.
pub fn gemini(input: &PresetInput<'_>, program: String) -> PresetCommand {
    let home = input.state_dir.to_path_buf();
    let settings_dir = home.join(".gemini");
    let tmp = home.join("tmp");
    let mut args = vec![s("-p"), s(input.prompt), s("-o"), s("json")];
    if let Some(model) = input.model {
        args.extend([s("-m"), s(model)]);
    }
    args.extend([s("--yolo"), s("--skip-trust")]);
    // An API-key user must select that auth type in settings, or a base-URL override fails
    // with exit 41; other auth methods are left to the CLI's own detection.
    let mut settings = serde_json::json!({
        "privacy": {"usageStatisticsEnabled": false},
        "model": {"maxSessionTurns": input.max_turns},
    });
    if input.user_env.contains(&"GEMINI_API_KEY") {
        settings["security"] = serde_json::json!({"auth": {"selectedType": "gemini-api-key"}});
    }
    if let Some(tools) = input.allowed_tools {
        settings["tools"] = serde_json::json!({"core": tools});
    }
    if let Some(mcp) = &input.mcp {
        settings["mcpServers"] = serde_json::json!({mcp.name: {
            "type": "http",
            "url": mcp.url,
            "headers": {"Authorization": format!("Bearer {}", mcp.token)},
            "timeout": mcp.timeout.as_millis() as u64,
            "trust": true,
        }});
    }
    let settings = settings.to_string();
    PresetCommand {
        program,
        args,
        env: vec![
            (s("GEMINI_CLI_NO_RELAUNCH"), s("true")),
            (s("GEMINI_CLI_HOME"), p(&home)),
            (s("TMPDIR"), p(&tmp)),
        ],
        files: vec![(settings_dir.join("settings.json"), settings)],
        dirs: vec![home, settings_dir, tmp],
        ..PresetCommand::default()
    }
}

/// `goose run --no-session --with-builtin developer -i <prompt file>`, approvals off.
pub fn goose(input: &PresetInput<'_>, program: String) -> PresetCommand {
    let root = input.state_dir.to_path_buf();
    let mut args = ["run", "--no-session", "--with-builtin", "developer", "-i"]
        .map(s)
        .to_vec();
    args.push(p(input.prompt_file));
    args.extend([s("--output-format"), s("json")]);
    args.extend([s("--max-turns"), input.max_turns.to_string()]);
    if let Some(mcp) = &input.mcp {
        // Not verified here (goose does not install from the registries): goose takes no
        // headers for an extension on the command line, so the token goes in the URL's path.
        args.extend([s("--with-streamable-http-extension"), s(mcp.url_with_token)]);
    }
    if let Some(model) = input.model {
        args.extend([s("--model"), s(model)]);
    }
    PresetCommand {
        program,
        args,
        env: vec![
            (s("GOOSE_MODE"), s("auto")),
            (s("GOOSE_DISABLE_KEYRING"), s("1")),
            (s("GOOSE_TELEMETRY_ENABLED"), s("false")),
            (s("GOOSE_PATH_ROOT"), p(&root)),
        ],
        dirs: vec![root],
        ..PresetCommand::default()
    }
}

/// Values of the `{...}` placeholders in `agent.command`.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    pub incident_id: &'a str,
    pub workspace: &'a Path,
    pub prompt_file: &'a Path,
    pub report_file: &'a Path,
    pub cluster: &'a str,
    pub model: Option<&'a str>,
}

/// `preset: command`: the configured argv with its placeholders filled. `None` when empty.
pub fn command(argv: &[String], values: &Placeholders<'_>) -> Option<PresetCommand> {
    let (program, rest) = argv.split_first()?;
    let fill = |arg: &String| {
        arg.replace("{incident_id}", values.incident_id)
            .replace("{workspace}", &p(values.workspace))
            .replace("{prompt_file}", &p(values.prompt_file))
            .replace("{report_file}", &p(values.report_file))
            .replace("{cluster}", values.cluster)
            .replace("{model}", values.model.unwrap_or(""))
    };
    Some(PresetCommand {
        program: fill(program),
        args: rest.iter().map(fill).collect(),
        ..PresetCommand::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(model: Option<&'a str>, system: Option<&'a str>) -> PresetInput<'a> {
        PresetInput {
            workspace: Path::new("/ws/i1"),
            prompt: "Investigate.",
            prompt_file: Path::new("/ws/i1/prompt.md"),
            state_dir: Path::new("/ws/i1/agent-state/x"),
            model,
            system_prompt: system,
            user_env: &["GEMINI_API_KEY"],
            mcp: None,
            max_turns: 30,
            max_cost_usd: None,
            allowed_tools: None,
            base_url: None,
        }
    }

    fn mcp() -> McpServer<'static> {
        McpServer {
            name: "kubernetes",
            url: "http://127.0.0.1:4100/mcp",
            url_with_token: "http://127.0.0.1:4100/mcp/tok123",
            token: "tok123",
            timeout: std::time::Duration::from_secs(30),
        }
    }

    fn env<'a>(c: &'a PresetCommand, name: &str) -> Option<&'a str> {
        c.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn claude_puts_the_prompt_right_after_p() {
        let c = claude(&input(Some("sonnet"), Some("Be brief.")), s("claude"));
        assert_eq!(c.program, "claude");
        assert_eq!(
            c.args,
            [
                "-p",
                "Investigate.",
                "--output-format",
                "json",
                "--model",
                "sonnet",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "Read",
                "Write",
                "Edit",
                "Bash",
                "--max-turns",
                "30",
                "--no-session-persistence",
                "--strict-mcp-config",
                "--append-system-prompt",
                "Be brief.",
            ]
        );
        assert!(c.trailing.is_empty());
        assert_eq!(
            env(&c, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"),
            Some("1")
        );
        assert_eq!(env(&c, "CLAUDE_CONFIG_DIR"), Some("/ws/i1/agent-state/x"));
        assert_eq!(c.stdin, None);

        let bare = claude(&input(None, None), s("/opt/claude"));
        assert_eq!(bare.program, "/opt/claude");
        assert!(!bare.args.iter().any(|a| a == "--model"));
        assert!(!bare.args.iter().any(|a| a == "--append-system-prompt"));
    }

    #[test]
    fn codex_reads_the_prompt_from_stdin() {
        let c = codex(&input(Some("gpt-5"), None), s("codex"));
        assert_eq!(
            c.args,
            [
                "exec",
                "--skip-git-repo-check",
                "--ephemeral",
                "--sandbox",
                "workspace-write",
                "-c",
                "sandbox_workspace_write.network_access=true",
                "-C",
                "/ws/i1",
                "-m",
                "gpt-5",
                "--json",
                "-o",
                "/ws/i1/output/last-message.txt",
            ]
        );
        assert_eq!(c.trailing, ["-"]);
        assert_eq!(c.stdin.as_deref(), Some(Path::new("/ws/i1/prompt.md")));
        assert_eq!(env(&c, "CODEX_HOME"), Some("/ws/i1/agent-state/x"));
        assert!(c
            .dirs
            .iter()
            .any(|d| d == Path::new("/ws/i1/agent-state/x")));
        let (path, toml) = &c.files[0];
        assert_eq!(path, Path::new("/ws/i1/agent-state/x/config.toml"));
        assert!(toml.contains("[analytics]\nenabled = false"));
    }

    #[test]
    fn gemini_trusts_the_workspace_and_does_not_relaunch() {
        let c = gemini(&input(None, None), s("gemini"));
        assert_eq!(
            c.args,
            ["-p", "Investigate.", "-o", "json", "--yolo", "--skip-trust"]
        );
        assert!(!c.files[0].1.contains("mcpServers"));
        assert_eq!(env(&c, "GEMINI_CLI_NO_RELAUNCH"), Some("true"));
        assert_eq!(env(&c, "GEMINI_CLI_HOME"), Some("/ws/i1/agent-state/x"));
        assert_eq!(env(&c, "TMPDIR"), Some("/ws/i1/agent-state/x/tmp"));
        let (path, json) = &c.files[0];
        assert_eq!(
            path,
            Path::new("/ws/i1/agent-state/x/.gemini/settings.json")
        );
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["privacy"]["usageStatisticsEnabled"], false);
        assert_eq!(v["security"]["auth"]["selectedType"], "gemini-api-key");
    }

    #[test]
    fn goose_runs_the_prompt_file_without_approvals() {
        let c = goose(&input(None, None), s("goose"));
        assert_eq!(
            c.args,
            [
                "run",
                "--no-session",
                "--with-builtin",
                "developer",
                "-i",
                "/ws/i1/prompt.md",
                "--output-format",
                "json",
                "--max-turns",
                "30",
            ]
        );
        assert_eq!(env(&c, "GOOSE_MODE"), Some("auto"));
        assert_eq!(env(&c, "GOOSE_DISABLE_KEYRING"), Some("1"));
        assert_eq!(env(&c, "GOOSE_TELEMETRY_ENABLED"), Some("false"));
        assert_eq!(env(&c, "GOOSE_PATH_ROOT"), Some("/ws/i1/agent-state/x"));
    }

    #[test]
    fn command_fills_every_placeholder() {
        let argv: Vec<String> = [
            "/bin/agent",
            "--id={incident_id}",
            "{workspace}",
            "{prompt_file}",
            "{report_file}",
            "{cluster}/{model}",
            "{unknown}",
        ]
        .map(s)
        .to_vec();
        let values = Placeholders {
            incident_id: "i1",
            workspace: Path::new("/ws/i1"),
            prompt_file: Path::new("/ws/i1/prompt.md"),
            report_file: Path::new("/ws/i1/output/investigation.md"),
            cluster: "prod",
            model: Some("m1"),
        };
        let c = command(&argv, &values).unwrap();
        assert_eq!(c.program, "/bin/agent");
        assert_eq!(
            c.args,
            [
                "--id=i1",
                "/ws/i1",
                "/ws/i1/prompt.md",
                "/ws/i1/output/investigation.md",
                "prod/m1",
                "{unknown}",
            ]
        );
        assert_eq!(command(&[], &values), None);
    }

    #[test]
    fn claude_gets_the_endpoint_in_a_private_config_file_and_the_server_tools_allowed() {
        let tools = vec![s("Read"), s("Write")];
        let c = claude(
            &PresetInput {
                mcp: Some(mcp()),
                max_turns: 12,
                max_cost_usd: Some(1.5),
                allowed_tools: Some(&tools),
                ..input(None, None)
            },
            s("claude"),
        );
        let at = |flag: &str| c.args.iter().position(|a| a == flag).unwrap();
        assert_eq!(c.args[at("--max-budget-usd") + 1], "1.50");
        assert_eq!(
            c.args[at("--allowedTools")..at("--max-turns")],
            ["--allowedTools", "Read", "Write", "mcp__kubernetes"]
        );
        assert_eq!(c.args[at("--max-turns") + 1], "12");
        assert!(c.args.iter().any(|a| a == "--strict-mcp-config"));
        assert_eq!(
            c.args[at("--mcp-config") + 1],
            "/ws/i1/agent-state/x/mcp.json"
        );
        assert!(
            !c.args.iter().any(|a| a.contains("tok123")),
            "token in argv"
        );
        let (path, json) = &c.files[0];
        assert_eq!(path, Path::new("/ws/i1/agent-state/x/mcp.json"));
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let server = &v["mcpServers"]["kubernetes"];
        assert_eq!(server["type"], "http");
        assert_eq!(server["url"], "http://127.0.0.1:4100/mcp");
        assert_eq!(server["headers"]["Authorization"], "Bearer tok123");
        assert_eq!(env(&c, "MCP_TOOL_TIMEOUT"), Some("30000"));
    }

    #[test]
    fn codex_config_names_the_server_the_token_variable_and_the_provider() {
        let c = codex(
            &PresetInput {
                mcp: Some(mcp()),
                base_url: Some("http://127.0.0.1:9/v1"),
                ..input(None, None)
            },
            s("codex"),
        );
        let (_, toml) = &c.files[0];
        assert!(
            toml.starts_with("model_provider = \"nightcrier\"\n"),
            "{toml}"
        );
        assert!(toml.contains(
            "[model_providers.nightcrier]\nname = \"nightcrier\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             env_key = \"CODEX_API_KEY\"\nwire_api = \"responses\"\n"
        ), "{toml}");
        assert!(
            toml.contains(
                "[mcp_servers.kubernetes]\nurl = \"http://127.0.0.1:4100/mcp\"\n\
             bearer_token_env_var = \"NIGHTCRIER_MCP_TOKEN\"\ntool_timeout_sec = 30\n"
            ),
            "{toml}"
        );
        assert!(!toml.contains("tok123"));
        assert!(!c.args.iter().any(|a| a.contains("tok123")));
    }

    #[test]
    fn gemini_settings_carry_the_server_turns_and_core_tools() {
        let tools = vec![s("read_file"), s("write_file")];
        let c = gemini(
            &PresetInput {
                mcp: Some(mcp()),
                max_turns: 7,
                max_cost_usd: None,
                allowed_tools: Some(&tools),
                ..input(None, None)
            },
            s("gemini"),
        );
        let v: serde_json::Value = serde_json::from_str(&c.files[0].1).unwrap();
        let server = &v["mcpServers"]["kubernetes"];
        assert_eq!(server["type"], "http");
        assert_eq!(server["url"], "http://127.0.0.1:4100/mcp");
        assert_eq!(server["headers"]["Authorization"], "Bearer tok123");
        assert_eq!(server["trust"], true);
        assert_eq!(v["model"]["maxSessionTurns"], 7);
        assert_eq!(
            v["tools"]["core"],
            serde_json::json!(["read_file", "write_file"])
        );
        assert!(!c.args.iter().any(|a| a.contains("tok123")));
    }

    #[test]
    fn goose_gets_the_endpoint_as_a_streamable_http_extension() {
        let c = goose(
            &PresetInput {
                mcp: Some(mcp()),
                ..input(None, None)
            },
            s("goose"),
        );
        let at = c
            .args
            .iter()
            .position(|a| a == "--with-streamable-http-extension")
            .unwrap();
        assert_eq!(c.args[at + 1], "http://127.0.0.1:4100/mcp/tok123");
    }

    #[test]
    fn each_preset_names_its_key_variables() {
        assert!(key_variables(AgentPreset::Claude).contains(&"ANTHROPIC_API_KEY"));
        assert!(key_variables(AgentPreset::Codex).contains(&"OPENAI_API_KEY"));
        assert!(key_variables(AgentPreset::Gemini).contains(&"GEMINI_API_KEY"));
        assert!(key_variables(AgentPreset::Command).is_empty());
        for p in [AgentPreset::Claude, AgentPreset::Codex, AgentPreset::Gemini] {
            for k in required_keys(p) {
                assert!(key_variables(p).contains(k), "{k}");
            }
            assert!(!key_variables(p).contains(&"DATABASE_URL"));
        }
    }
}
