// The migrations are embedded by `sqlx::migrate!`: rebuild when one is added or edited.
// `--version` names the commit: from NIGHTCRIER_COMMIT when set (builds from a tarball), else
// from git; "unknown" without either.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=NIGHTCRIER_COMMIT");
    let commit = std::env::var("NIGHTCRIER_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves (a checkout or a commit), so the printed commit stays true.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rustc-env=NIGHTCRIER_COMMIT={commit}");
}
