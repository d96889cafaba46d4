//! `agent.container`: the same invocation inside `docker run` / `podman run`. The workspace and
//! the kubeconfig are mounted at their host paths, so every path in the argv and environment
//! means the same inside and out. Environment values never appear in argv (`ps` shows argv to
//! every user): the runtime gets `--env NAME` and reads the value from its own environment.

use std::path::Path;

use uuid::Uuid;

use super::invocation::Invocation;
use crate::config::{ContainerConfig, ContainerRuntime};

pub fn runtime_binary(runtime: ContainerRuntime) -> &'static str {
    match runtime {
        ContainerRuntime::Docker => "docker",
        ContainerRuntime::Podman => "podman",
    }
}

/// The container's name: stable per attempt so a stop command (and an operator) can find it.
pub fn container_name(incident_id: Uuid, attempt: i32) -> String {
    format!("nightcrier-{incident_id}-{attempt}")
}

pub fn wrap(
    inner: Invocation,
    container: &ContainerConfig,
    kubeconfig: Option<&Path>,
    name: &str,
) -> Invocation {
    let runtime = runtime_binary(container.runtime).to_string();
    let ws = inner.cwd.display().to_string();
    // `--init`: the agent is not PID 1 in the container, so it gets default signal handling
    // and its children are reaped.
    let mut args: Vec<String> = ["run", "--rm", "--init", "--name", name]
        .map(String::from)
        .to_vec();
    if inner.stdin.is_some() {
        args.push("-i".into());
    }
    args.extend(["-v".into(), format!("{ws}:{ws}")]);
    if let Some(kc) = kubeconfig {
        let kc = kc.display();
        args.extend(["-v".into(), format!("{kc}:{kc}:ro")]);
    }
    args.extend(["-w".into(), ws]);
    for name in inner.env.keys() {
        args.extend(["--env".into(), name.clone()]);
    }
    args.extend(container.extra_args.iter().cloned());
    args.push(container.image.clone());
    args.push(inner.program);
    args.extend(inner.args);
    Invocation {
        stop_command: Some((runtime.clone(), vec!["kill".into(), name.to_string()])),
        program: runtime,
        args,
        ..inner
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::Secret;

    fn inner(stdin: bool) -> Invocation {
        let mut env = BTreeMap::new();
        env.insert("ANTHROPIC_API_KEY".into(), Secret::new("sk-secret"));
        env.insert("INCIDENT_ID".into(), Secret::new("i1"));
        Invocation {
            program: "claude".into(),
            args: vec!["-p".into(), "Investigate.".into()],
            env,
            stdin: stdin.then(|| PathBuf::from("/ws/i1/prompt.md")),
            cwd: PathBuf::from("/ws/i1"),
            dirs: vec![],
            files: vec![],
            stop_command: None,
        }
    }

    #[test]
    fn docker_argv_mounts_workspace_and_kubeconfig_and_names_env_only() {
        let c = ContainerConfig {
            runtime: ContainerRuntime::Docker,
            image: "ghcr.io/x/agent:1".into(),
            extra_args: vec!["--network".into(), "host".into()],
        };
        let inv = wrap(
            inner(false),
            &c,
            Some(Path::new("/etc/nc/kc.yaml")),
            "nightcrier-i1-1",
        );
        assert_eq!(inv.program, "docker");
        assert_eq!(
            inv.args,
            [
                "run",
                "--rm",
                "--init",
                "--name",
                "nightcrier-i1-1",
                "-v",
                "/ws/i1:/ws/i1",
                "-v",
                "/etc/nc/kc.yaml:/etc/nc/kc.yaml:ro",
                "-w",
                "/ws/i1",
                "--env",
                "ANTHROPIC_API_KEY",
                "--env",
                "INCIDENT_ID",
                "--network",
                "host",
                "ghcr.io/x/agent:1",
                "claude",
                "-p",
                "Investigate.",
            ]
        );
        assert!(!inv.args.iter().any(|a| a.contains("sk-secret")));
        // The values reach the runtime through its environment instead.
        assert_eq!(
            inv.env.get("ANTHROPIC_API_KEY").map(Secret::expose),
            Some("sk-secret")
        );
        assert_eq!(inv.cwd, Path::new("/ws/i1"));
        assert_eq!(
            inv.stop_command,
            Some((
                "docker".into(),
                vec!["kill".into(), "nightcrier-i1-1".into()]
            ))
        );
    }

    #[test]
    fn podman_keeps_stdin_open_when_the_agent_reads_it() {
        let c = ContainerConfig {
            runtime: ContainerRuntime::Podman,
            image: "agent".into(),
            extra_args: vec![],
        };
        let inv = wrap(inner(true), &c, None, "n");
        assert_eq!(inv.program, "podman");
        assert_eq!(
            inv.args[..6],
            ["run", "--rm", "--init", "--name", "n", "-i"]
        );
        assert!(!inv.args.iter().any(|a| a.ends_with(":ro")));
        assert_eq!(inv.stdin.as_deref(), Some(Path::new("/ws/i1/prompt.md")));
        assert_eq!(
            container_name(Uuid::nil(), 3),
            format!("nightcrier-{}-3", Uuid::nil())
        );
    }
}
