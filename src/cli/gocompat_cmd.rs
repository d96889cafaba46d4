//! `config import-go` and `migrate --import-go`: moving from the Go nightcrier.

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::gocompat::{self, GO_ENV_VARS};
use crate::store::Store;

fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    // One byte over the bound lets the import report the file as too large.
    file.take(gocompat::MAX_GO_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {} (is it a text file?)", path.display()))?;
    Ok(text)
}

/// Prints the translated configuration on stdout and a one-line summary on stderr.
pub fn import_config(go_config: &Path, tuning: Option<&Path>) -> anyhow::Result<ExitCode> {
    let text = read_bounded(go_config)?;
    let tuning_text = tuning.map(read_bounded).transpose()?;
    let env = std::env::vars().filter(|(k, _)| GO_ENV_VARS.iter().any(|(n, ..)| n == k));
    let out = gocompat::import_config(&text, go_config, tuning_text.as_deref(), env)?;
    print!("{}", out.yaml);
    eprintln!(
        "imported {}: {} note(s) at the end of the output{}",
        go_config.display(),
        out.notes.len(),
        if out.env_seen.is_empty() {
            String::new()
        } else {
            format!(
                "; Go environment variables used: {}",
                out.env_seen.join(", ")
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies the Go database's incidents into the configured (already migrated) database.
pub async fn import_database(store: &Store, go_db: &Path) -> anyhow::Result<()> {
    let summary = store
        .import_go(go_db)
        .await
        .with_context(|| format!("importing the Go database {}", go_db.display()))?;
    println!(
        "imported {} incident(s) from the Go database {} ({} already present, {} skipped); the Go file was not modified",
        summary.imported,
        go_db.display(),
        summary.already_present,
        summary.skipped_total
    );
    for s in &summary.skipped {
        println!("  skipped {s}");
    }
    Ok(())
}
