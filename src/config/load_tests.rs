use std::time::Duration;

use super::*;

const ISSUE_EXAMPLE: &str = r#"
database:
  url: "sqlite://./data/nightcrier.db"
workspace_root: "./incidents"
limits:
  max_concurrent_agents: 5
  max_agents_per_cluster: 1
dedup:
  cooldown: 30m
clusters:
  - name: prod-eu-1
    mcp:
      endpoint: "http://127.0.0.1:8080/mcp"
    triage:
      enabled: true
      kubeconfig: "./kubeconfigs/prod-eu-1.yaml"
"#;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn empty_text_gives_the_defaults() {
    let l = from_str_with_env("", "t", no_env()).unwrap();
    assert_eq!(l.config, Config::default());
    assert_eq!(
        l.config.database.url.expose(),
        "sqlite://./data/nightcrier.db"
    );
    assert_eq!(l.config.limits.max_concurrent_agents, 5);
    assert_eq!(l.config.dedup.cooldown, Duration::from_secs(1800));
}

#[test]
fn the_documented_example_loads() {
    let l = from_str_with_env(ISSUE_EXAMPLE, "t", no_env()).unwrap();
    let c = &l.config;
    assert_eq!(c.clusters.len(), 1);
    assert_eq!(c.clusters[0].name, "prod-eu-1");
    assert_eq!(c.clusters[0].mcp.max_event_bytes, 4 * 1024 * 1024);
    // The kubeconfig does not exist here: a warning, not an error.
    assert!(
        l.warnings.iter().any(|w| w.contains("kubeconfig")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn unknown_keys_are_reported_with_path_and_position() {
    let text = "limits:\n  max_concurent_agents: 3\n";
    let err = from_str_with_env(text, "nc.yaml", no_env())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("nc.yaml: key `limits"), "{err}");
    assert!(
        err.contains("unknown field `max_concurent_agents`"),
        "{err}"
    );
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn wrong_types_name_the_key() {
    let text = "clusters:\n  - name: a\n    mcp:\n      endpoint: http://x/mcp\n      max_event_bytes: lots\n";
    let err = from_str_with_env(text, "nc.yaml", no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("clusters[0].mcp.max_event_bytes"), "{err}");
    let err = from_str_with_env("dedup:\n  cooldown: soon\n", "nc.yaml", no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("dedup.cooldown"), "{err}");
}

#[test]
fn every_invalid_value_is_listed_at_once() {
    let text = r#"
limits: { max_concurrent_agents: 0 }
http: { listen: "nowhere" }
clusters:
  - { name: "bad name", mcp: { endpoint: "http://a/mcp" } }
  - { name: ok, mcp: { endpoint: "ftp://a/mcp" } }
  - { name: ok, mcp: { endpoint: "http://b/mcp" } }
"#;
    let err = from_str_with_env(text, "nc.yaml", no_env()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "limits.max_concurrent_agents",
            "http.listen",
            "clusters[0].name",
            "clusters[1].mcp.endpoint",
            "clusters[2].name"
        ],
        "{err}"
    );
    assert!(err.to_string().contains("used more than once"));
}

#[test]
fn environment_overrides_file_values() {
    let l = from_str_with_env(
        ISSUE_EXAMPLE,
        "t",
        env(&[
            ("NIGHTCRIER_DATABASE__URL", "postgres://nc:pw@db/nc"),
            ("NIGHTCRIER_LIMITS__MAX_CONCURRENT_AGENTS", "9"),
            (
                "NIGHTCRIER_CLUSTERS__0__MCP__ENDPOINT",
                "http://10.0.0.1:8080/mcp",
            ),
            ("NIGHTCRIER_AGENT__ENV__ANTHROPIC_API_KEY", "sk-test"),
            ("NIGHTCRIER_AGENT__COMMAND", "[/bin/echo, '{incident_id}']"),
            ("NIGHTCRIER_WORKSPACE_ROOT", "/var/lib/nc"),
            // Not configuration: ignored.
            ("NIGHTCRIER_CONFIG", "/elsewhere.yaml"),
            ("NIGHTCRIER_TEST_POSTGRES_URL", "postgres://x"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    let c = &l.config;
    assert_eq!(c.database.url.expose(), "postgres://nc:pw@db/nc");
    assert_eq!(c.limits.max_concurrent_agents, 9);
    assert_eq!(c.clusters[0].mcp.endpoint, "http://10.0.0.1:8080/mcp");
    assert_eq!(c.clusters[0].name, "prod-eu-1");
    assert_eq!(
        c.agent.env.get("ANTHROPIC_API_KEY").map(Secret::expose),
        Some("sk-test")
    );
    assert_eq!(c.agent.command, ["/bin/echo", "{incident_id}"]);
    assert_eq!(c.workspace_root, std::path::PathBuf::from("/var/lib/nc"));
    assert_eq!(l.overrides.len(), 6);
}

#[test]
fn a_bad_override_names_the_variable() {
    let err = from_str_with_env(
        "",
        "t",
        env(&[("NIGHTCRIER_LIMITS__MAX_AGENTS_PER_CLUSTER", "many")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("NIGHTCRIER_LIMITS__MAX_AGENTS_PER_CLUSTER"),
        "{err}"
    );
    assert!(err.contains("limits.max_agents_per_cluster"), "{err}");
    let err = from_str_with_env("", "t", env(&[("NIGHTCRIER_CLUSTERS__3__NAME", "x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("past the end"), "{err}");
}

#[test]
fn redacted_output_hides_every_secret() {
    let text = r#"
database: { url: "postgres://nc:hunter2@db/nc" }
agent:
  env: { ANTHROPIC_API_KEY: sk-ant-secret }
clusters:
  - name: a
    mcp:
      endpoint: http://a:8080/mcp
      headers: { Authorization: "Bearer tok-secret" }
"#;
    let l = from_str_with_env(text, "t", no_env()).unwrap();
    let out = l.config.to_redacted_yaml();
    for secret in ["hunter2", "sk-ant-secret", "tok-secret"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains("ANTHROPIC_API_KEY: <redacted>"), "{out}");
    assert!(out.contains("postgres://nc:REDACTED@db/nc"), "{out}");
    // And the redacted output is itself a loadable configuration shape.
    let again: Result<Config, _> = serde_yaml_ng::from_str(&out);
    assert!(again.is_ok(), "{again:?}");
}

#[test]
fn a_missing_explicit_file_is_an_error_naming_it() {
    let err = load(Some(std::path::Path::new("/nonexistent/nc.yaml")), no_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/nc.yaml"), "{err}");
}

#[test]
fn the_agent_tool_settings_load_and_are_validated_per_block() {
    let text = r#"
agent:
  max_turns: 12
  allowed_tools: [Read, Write]
  additional_prompt: "Answer in French."
  mcp_tools: false
  kubectl: false
  mcp_call_timeout: 5s
clusters:
  - name: a
    mcp: { endpoint: "http://a/mcp" }
    agent: { max_turns: 0, allowed_tools: ["Read Write"], mcp_max_result_bytes: 10, mcp_max_calls: 0 }
"#;
    let err = from_str_with_env(text, "nc.yaml", no_env()).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "clusters[0].agent.max_turns",
            "clusters[0].agent.mcp_max_result_bytes",
            "clusters[0].agent.mcp_max_calls",
            "clusters[0].agent.allowed_tools",
        ],
        "{err}"
    );

    let ok = text.replace(
        "agent: { max_turns: 0, allowed_tools: [\"Read Write\"], mcp_max_result_bytes: 10, mcp_max_calls: 0 }",
        "agent: { preset: codex }",
    );
    let cfg = from_str_with_env(&ok, "nc.yaml", no_env()).unwrap().config;
    assert_eq!(cfg.agent.max_turns, 12);
    assert_eq!(
        cfg.agent.allowed_tools,
        Some(vec!["Read".into(), "Write".into()])
    );
    assert_eq!(
        cfg.agent.additional_prompt.as_deref(),
        Some("Answer in French.")
    );
    assert!(!cfg.agent.mcp_tools && !cfg.agent.kubectl);
    assert_eq!(cfg.agent.mcp_call_timeout, Duration::from_secs(5));
    // A cluster's block replaces the global one: its own defaults apply.
    let cluster_agent = cfg.clusters[0].agent.as_ref().unwrap();
    assert_eq!(cluster_agent.max_turns, 30);
    assert!(cluster_agent.mcp_tools);
}
