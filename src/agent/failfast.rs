//! `nightcrier run --check`: what the Go nightcrier refused to start without, checked before
//! anything runs: an agent binary for the preset, the preset's API key, and the kubeconfig of
//! every cluster whose triage names one. One line per problem.
//!
//! This module only looks (PATH, files, configuration); it starts nothing. The permission
//! preflight (`preflight.rs`) is the deeper, slower check that asks the cluster.

use std::path::{Path, PathBuf};

use crate::config::{AgentConfig, AgentPreset, Config, ContainerRuntime};

use super::presets;

/// The variables that authenticate each preset's CLI; one of them must be in `agent.env`, since
/// agents do not inherit nightcrier's environment. Goose reads the key of whichever provider it
/// is set up for, so any of the common ones counts.
pub fn api_key_vars(preset: AgentPreset) -> &'static [&'static str] {
    match preset {
        AgentPreset::Claude => &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"],
        AgentPreset::Codex => &["OPENAI_API_KEY", "CODEX_API_KEY"],
        AgentPreset::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
        AgentPreset::Goose => &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"],
        AgentPreset::Command => &[],
    }
}

/// `name` as found on `PATH`, or the path itself when it has a directory part and is a file.
pub fn find_executable(name: &Path, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.components().count() > 1 || name.is_absolute() {
        return executable(name).then(|| name.to_path_buf());
    }
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Every problem, each on one line naming the key to fix. Empty: nothing found wrong.
pub fn check(config: &Config) -> Vec<String> {
    let path_var = std::env::var_os("PATH");
    let mut problems = Vec::new();
    check_agent(&config.agent, "agent", path_var.as_deref(), &mut problems);
    for (i, c) in config.clusters.iter().enumerate() {
        if let Some(agent) = &c.agent {
            check_agent(
                agent,
                &format!("clusters[{i}].agent ({})", c.name),
                path_var.as_deref(),
                &mut problems,
            );
        }
        if !c.triage.enabled {
            continue;
        }
        if let Some(k) = &c.triage.kubeconfig {
            if !k.is_file() {
                problems.push(format!(
                    "clusters[{i}].triage.kubeconfig ({}): {} does not exist; triage on this cluster needs it (or set triage.enabled: false)",
                    c.name,
                    k.display()
                ));
            }
        }
    }
    problems
}

fn check_agent(
    a: &AgentConfig,
    key: &str,
    path_var: Option<&std::ffi::OsStr>,
    out: &mut Vec<String>,
) {
    // In a container the CLI lives in the image; what must exist here is the runtime.
    if let Some(c) = &a.container {
        let runtime = match c.runtime {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Podman => "podman",
        };
        if find_executable(Path::new(runtime), path_var).is_none() {
            out.push(format!(
                "{key}.container.runtime: `{runtime}` is not on PATH; agents cannot start"
            ));
        }
    } else {
        let program: Option<PathBuf> = match (a.preset, &a.binary) {
            (_, Some(b)) => Some(b.clone()),
            (AgentPreset::Command, None) => a.command.first().map(PathBuf::from),
            (p, None) => Some(PathBuf::from(presets::default_binary(p))),
        };
        match program {
            Some(p) if find_executable(&p, path_var).is_none() => out.push(format!(
                "{key}: the {} agent binary {} is not {}; install it or set {key}.binary",
                preset_name(a.preset),
                p.display(),
                if p.components().count() > 1 {
                    "an executable file"
                } else {
                    "on PATH"
                }
            )),
            _ => {}
        }
    }
    let vars = api_key_vars(a.preset);
    if !vars.is_empty() && !vars.iter().any(|v| a.env.contains_key(*v)) {
        out.push(format!(
            "{key}.env: no {} for the {} agent (agents get only agent.env: set it there or with NIGHTCRIER_AGENT__ENV__{})",
            vars.join(" or "),
            preset_name(a.preset),
            vars[0]
        ));
    }
}

fn preset_name(p: AgentPreset) -> &'static str {
    match p {
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
    use crate::config::{ClusterConfig, McpConfig, Secret, TriageConfig};

    #[test]
    fn names_each_missing_piece_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.agent.binary = Some(dir.path().join("no-such-claude"));
        c.clusters.push(ClusterConfig {
            name: "prod".into(),
            mcp: McpConfig::new("http://127.0.0.1:1/mcp"),
            triage: TriageConfig {
                enabled: true,
                kubeconfig: Some(dir.path().join("missing.yaml")),
            },
            agent: None,
            evidence: Default::default(),
            environment: None,
            labels: Default::default(),
        });
        let p = check(&c);
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(p[0].contains("no-such-claude"), "{}", p[0]);
        assert!(p[1].contains("ANTHROPIC_API_KEY"), "{}", p[1]);
        assert!(p[2].contains("missing.yaml"), "{}", p[2]);
        assert!(p.iter().all(|l| !l.contains('\n')));

        // Fixed: a real executable, the key, the file.
        let bin = dir.path().join("claude");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        c.agent.binary = Some(bin);
        c.agent
            .env
            .insert("ANTHROPIC_API_KEY".into(), Secret::new("sk"));
        std::fs::write(dir.path().join("missing.yaml"), "x").unwrap();
        assert_eq!(check(&c), Vec::<String>::new());
    }
}
