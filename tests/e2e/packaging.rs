//! Release tooling that runs without a release build: the next calendar
//! version from existing tags, and the apt helpers every install step uses
//! (`packaging/lib/apt.sh`).

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

/// Runs `body` in bash with `packaging/lib/apt.sh` sourced (strict mode).
fn with_apt_sh(body: &str, env: &[(&str, &Path)]) -> std::process::Output {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/lib/apt.sh");
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; . \"$0\"; {body}"))
        .arg(lib)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn apt_mirror_reads_deb822_when_there_is_no_sources_list() {
    // A fresh Debian 12 image: only sources.list.d/debian.sources, whose
    // first URL is a commented snapshot, beside a disabled one-line list.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("sources.list.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("debian.sources"),
        "Types: deb deb-src\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
         URIs: http://mirror.example.invalid/debian\nSuites: bookworm\nComponents: main\n",
    )
    .unwrap();
    std::fs::write(
        d.join("other.list.disabled"),
        "deb http://disabled.example.invalid/debian bookworm main\n",
    )
    .unwrap();
    let out = with_apt_sh(&format!("apt_mirror '{}'", tmp.path().display()), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "http://mirror.example.invalid/debian"
    );
    // No apt configuration at all: nothing, and no failure.
    let out = with_apt_sh("apt_mirror /nonexistent/apt", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}

#[test]
fn apt_commands_of_concurrent_installers_run_one_at_a_time() {
    // Two installers at once (the CI's release build and a test, on a fresh
    // machine): the second waits for the first instead of failing on apt's
    // lock. Each "apt command" here claims a directory only one may hold.
    let tmp = tempfile::tempdir().unwrap();
    let lock = tmp.path().join("apt.lock");
    let held = tmp.path().join("held");
    let body = format!(
        "apt_locked sh -c 'mkdir \"{0}\" && sleep 0.3 && rmdir \"{0}\"'",
        held.display()
    );
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let (body, lock) = (body.clone(), lock.clone());
            std::thread::spawn(move || with_apt_sh(&body, &[("RAKKR_APT_LOCK", &lock)]))
        })
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "an apt command ran while another held the lock: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Installing what is installed does nothing (and needs no apt at all).
    let out = with_apt_sh("apt_install bash coreutils", &[("RAKKR_APT_LOCK", &lock)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
