//! Each agent CLI's headless argv and environment, in one place per CLI (see
//! `agent-clis.md`): these drift between CLI versions, so each is one small function that is
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
    /// Names of the variables in `agent.env`, for presets whose settings depend on them.
    pub user_env: &'a [&'a str],
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
    args.extend(
        [
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
        ]
        .map(s),
    );
    if let Some(system) = input.system_prompt {
        args.extend([s("--append-system-prompt"), s(system)]);
    }
    PresetCommand {
        program,
        args,
        env: vec![
            (s("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), s("1")),
            (s("CLAUDE_CONFIG_DIR"), p(&config_dir)),
        ],
        dirs: vec![config_dir],
        ..PresetCommand::default()
    }
}

/// `codex exec ... -`: the prompt on stdin from `prompt.md`. `workspace-write` is needed for the
/// report, and network access inside that sandbox for kubectl; `-o` keeps the final message.
pub fn codex(input: &PresetInput<'_>, program: String) -> PresetCommand {
    let home = input.state_dir.to_path_buf();
    let last_message = input.workspace.join("output").join("last-message.txt");
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
        files: vec![(
            home.join("config.toml"),
            s("[analytics]\nenabled = false\n\n[features]\nplugins = false\n"),
        )],
        dirs: vec![home],
    }
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
    let settings = if input.user_env.contains(&"GEMINI_API_KEY") {
        r#"{"privacy":{"usageStatisticsEnabled":false},"security":{"auth":{"selectedType":"gemini-api-key"}}}"#
    } else {
        r#"{"privacy":{"usageStatisticsEnabled":false}}"#
    };
    PresetCommand {
        program,
        args,
        env: vec![
            (s("GEMINI_CLI_NO_RELAUNCH"), s("true")),
            (s("GEMINI_CLI_HOME"), p(&home)),
            (s("TMPDIR"), p(&tmp)),
        ],
        files: vec![(settings_dir.join("settings.json"), s(settings))],
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
}
