//! `reporting:` and `notifications:` through the real binary's `config check`: defaults, the
//! webhook URL redacted, and clear errors that still do not echo it.

use std::process::Command;

fn nightcrier() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightcrier"));
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTCRIER_") {
            c.env_remove(k);
        }
    }
    c
}

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightcrier.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = nightcrier()
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), all)
}

#[test]
fn the_webhook_url_is_redacted_and_defaults_are_shown() {
    let (ok, out) = check(
        "reporting:\n  base_url: https://nightcrier.example.com\nnotifications:\n  slack:\n    webhook_url: https://hooks.slack.com/services/T1/B2/SeCrEtToKeN\n",
    );
    assert!(ok, "{out}");
    assert!(!out.contains("SeCrEtToKeN"), "{out}");
    assert!(out.contains("webhook_url: <redacted>"), "{out}");
    assert!(out.contains("failure_threshold: 3"), "{out}");
    assert!(out.contains("poll_interval: 2s"), "{out}");
}

#[test]
fn bad_values_are_named_without_echoing_the_webhook() {
    let (ok, out) = check(
        "reporting:\n  base_url: not a url\n  artifacts:\n    url: ftp://x/y\nnotifications:\n  failure_threshold: 0\n  slack:\n    webhook_url: hooks.slack.com/SeCrEtToKeN\n",
    );
    assert!(!ok, "{out}");
    for key in [
        "reporting.base_url",
        "reporting.artifacts.url",
        "notifications.failure_threshold",
        "notifications.slack.webhook_url",
    ] {
        assert!(out.contains(key), "{key} not named:\n{out}");
    }
    assert!(!out.contains("SeCrEtToKeN"), "{out}");
}

#[test]
fn slack_app_mode_keys_are_checked_and_the_bot_token_redacted() {
    let base = "reporting:\n  base_url: https://n.example\nclusters:\n  - name: prod\n    mcp: {endpoint: \"http://h:8080/mcp\"}\n";
    let (ok, out) = check(&format!(
        "{base}notifications:\n  slack:\n    bot_token: xoxb-SeCrEtToKeN\n    channel: C0123\n    channels: {{prod: C0456}}\n    post_on_open: [critical]\n"
    ));
    assert!(ok, "{out}");
    assert!(
        out.contains("bot_token: <redacted>") && !out.contains("SeCrEtToKeN"),
        "{out}"
    );
    assert!(out.contains("notify_on_failure: true"), "{out}");

    for (slack, key) in [
        // Both modes at once.
        ("webhook_url: https://hooks.slack.com/services/T/B/X\n    bot_token: xoxb-SeCrEtToKeN\n    channel: C1", "notifications.slack"),
        // Neither.
        ("timeout: 5s", "notifications.slack"),
        // No channel for a cluster.
        ("bot_token: xoxb-SeCrEtToKeN", "notifications.slack.channel"),
        ("bot_token: xoxb-SeCrEtToKeN\n    channel: C1\n    channels: {nope: C2}", "notifications.slack.channels.nope"),
        ("bot_token: xoxb-SeCrEtToKeN\n    channel: \"two words\"", "notifications.slack.channel"),
        ("webhook_url: https://hooks.slack.com/services/T/B/X\n    channel: C1", "notifications.slack.channel"),
        ("bot_token: xoxb-SeCrEtToKeN\n    channel: C1\n    api_url: ftp://x", "notifications.slack.api_url"),
    ] {
        let (ok, out) = check(&format!("{base}notifications:\n  slack:\n    {slack}\n"));
        assert!(!ok, "{slack}: {out}");
        assert!(out.contains(key), "{key} not named for {slack}:\n{out}");
        assert!(!out.contains("SeCrEtToKeN"), "{out}");
    }
    // Slack without reporting.base_url: links would point at 127.0.0.1.
    let (ok, out) = check(
        "notifications:\n  slack:\n    webhook_url: https://hooks.slack.com/services/T/B/X\n",
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("reporting.base_url") && out.contains("required"),
        "{out}"
    );
}
