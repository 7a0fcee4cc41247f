//! Release tooling that runs without a release build: the next calendar
//! version from existing tags.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn next(dir: &Path, day: &str) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/next-version.sh");
    let out = Command::new(script)
        .arg(day)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .trim()
        .to_owned(),
    )
}

#[test]
fn next_version_counts_the_days_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    git(d, &["init", "-q"]);
    git(d, &["commit", "-q", "--allow-empty", "-m", "one"]);
    assert_eq!(next(d, "2026.11.23"), (Some(0), "2026.11.23-1".into()));
    for t in [
        "agent-v2026.11.23-1",
        "agent-v2026.11.23-2",
        "agent-v2026.11.23-10",
        "agent-v2026.11.22-7",
        "other-v2026.11.23-99",
    ] {
        git(d, &["tag", t]);
    }
    // Numeric, not lexical: 10 beats 2; other days and prefixes do not count.
    assert_eq!(next(d, "2026.11.23"), (Some(0), "2026.11.23-11".into()));
    assert_eq!(next(d, "2026.11.22"), (Some(0), "2026.11.22-8".into()));
    assert_eq!(next(d, "2026.11.24"), (Some(0), "2026.11.24-1".into()));
    let (code, err) = next(d, "2026.1.1");
    assert_eq!(code, Some(2));
    assert!(err.contains("YYYY.MM.DD"), "{err}");
}
