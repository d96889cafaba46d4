use std::path::Path;
use std::process::ExitCode;

use crate::config;

/// `nightcrier config check`: validation errors go to stderr with a non-zero exit (via the
/// caller); the effective configuration, redacted, to stdout.
pub fn check(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path, std::env::vars())?;
    let source = loaded.path.as_ref().map_or_else(
        || "built-in defaults (no file found)".to_string(),
        |p| p.display().to_string(),
    );
    println!("# configuration OK: {source}");
    if !loaded.overrides.is_empty() {
        println!("# overridden by: {}", loaded.overrides.join(", "));
    }
    for w in &loaded.warnings {
        println!("# warning: {w}");
    }
    print!("{}", loaded.config.to_redacted_yaml());
    Ok(ExitCode::SUCCESS)
}
