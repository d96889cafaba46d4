//! `nightcrier config check` and `--config` handling, through the real binary.

use std::process::Command;

fn nightcrier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightcrier"));
    // Keep the developer's own overrides out of the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTCRIER_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn the_example_configuration_is_valid_and_printed_redacted() {
    let out = nightcrier()
        .args(["config", "check", "--config", "examples/nightcrier.yaml"])
        .env(
            "NIGHTCRIER_DATABASE__URL",
            "postgres://nc:s3cret-pw@db:5432/nc",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("# configuration OK: examples/nightcrier.yaml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# overridden by: NIGHTCRIER_DATABASE__URL"),
        "{stdout}"
    );
    assert!(stdout.contains("name: prod-eu-1"), "{stdout}");
    for secret in ["s3cret-pw", "Bearer change-me", "set-me-or-use"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
}

#[test]
fn config_is_accepted_before_or_after_the_subcommand() {
    for args in [
        ["--config", "examples/nightcrier.yaml", "config", "check"],
        ["config", "--config", "examples/nightcrier.yaml", "check"],
        ["config", "check", "--config", "examples/nightcrier.yaml"],
    ] {
        let out = nightcrier().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_invalid_file_fails_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nc.yaml");
    std::fs::write(
        &path,
        "limits:\n  max_concurrent_agents: 2\nclusters:\n  - name: a\n    mcp:\n      endpoint: http://a/mcp\n      endpiont: typo\n",
    )
    .unwrap();
    let out = nightcrier()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("clusters[0].mcp"), "{stderr}");
    assert!(stderr.contains("unknown field `endpiont`"), "{stderr}");
    assert!(stderr.contains("line 7"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn without_a_file_the_defaults_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let out = nightcrier()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("built-in defaults"), "{stdout}");
    assert!(
        stdout.contains("url: sqlite://./data/nightcrier.db"),
        "{stdout}"
    );
}
