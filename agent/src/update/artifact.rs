//! Verifying a candidate before anything is replaced, in this order: the
//! transfer's size and SHA-256 (streamed, constant memory); the signed
//! release manifest must list that SHA-256 for this target
//! (`release::SignedRelease::admit`); a release `.tar.gz` unpacked to its
//! one binary, which must have the signed binary SHA-256, or a bare
//! binary; the ELF class and machine; only then the candidate itself run
//! with `--version` in a subprocess, which must report the signed version.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rakkr_protocol::calver::{Relation, relation};

use super::UpdateError;
use super::release::{Admitted, SignedRelease};
use crate::build_info::TARGET;

/// The binary's file name, inside release archives and when installed.
pub const BINARY_NAME: &str = "rakkr-recorder-agent";
/// Largest binary accepted out of an archive.
const MAX_BINARY: u64 = 512 << 20;
/// How long the candidate gets to print its version.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// What the artifact must be.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The SHA-256 the supplier gave (lowercase hex): a transfer check.
    /// `None`: the signed manifest alone decides.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// The verified release: what makes the artifact authentic. The binary
    /// must report its version.
    pub release: SignedRelease,
}

/// A candidate that passed every check; `path` is executable, in staging.
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: PathBuf,
    pub version: String,
    pub sha256: String,
}

/// Streams a file through SHA-256: (hex digest, size).
pub fn sha256_file(path: &Path) -> Result<(String, u64), UpdateError> {
    crate::util::sha256_file(path).map_err(UpdateError::io(format!("hashing {}", path.display())))
}

/// Parses `--sha256` text: 64 hex digits, or a sha256sum line (`hex  name`).
pub fn parse_sha256(text: &str) -> Option<String> {
    let hex = text.split_whitespace().next()?.to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Checks size and hash (`digest` when the caller hashed while
/// streaming), prepares the candidate binary in `staging` and checks it.
pub fn verify(
    artifact: &Path,
    digest: Option<(String, u64)>,
    staging: &Path,
    expect: &Expect,
) -> Result<Verified, UpdateError> {
    let (sha256, size) = match digest {
        Some(d) => d,
        None => sha256_file(artifact)?,
    };
    if let Some(want) = expect.size.filter(|w| *w != size) {
        return Err(UpdateError::Size {
            expected: want,
            actual: size,
        });
    }
    if let Some(want) = expect.sha256.as_ref().filter(|w| **w != sha256) {
        return Err(UpdateError::Checksum {
            expected: want.clone(),
            actual: sha256,
        });
    }
    // NOTE: nothing below runs for an artifact the signed manifest does not
    // list; the archive is not even opened.
    let admitted = expect.release.admit(TARGET, &sha256, size)?;
    let candidate = staging.join(format!("{BINARY_NAME}.candidate"));
    let _ = std::fs::remove_file(&candidate);
    match &admitted {
        Admitted::Archive { binary_sha256 } => {
            unpack(artifact, &candidate)?;
            let (got, _) = sha256_file(&candidate)?;
            if got != *binary_sha256 {
                let _ = std::fs::remove_file(&candidate);
                return Err(UpdateError::Signature(format!(
                    "the binary in the archive has SHA-256 {got}; the signed release lists {binary_sha256}"
                )));
            }
        }
        Admitted::Binary => {
            std::fs::copy(artifact, &candidate).map_err(UpdateError::io(format!(
                "copying {} to {}",
                artifact.display(),
                candidate.display()
            )))?;
        }
    }
    check_elf(&candidate)?;
    std::fs::set_permissions(&candidate, std::fs::Permissions::from_mode(0o755))
        .map_err(UpdateError::io(format!("chmod {}", candidate.display())))?;
    let version = run_version(&candidate)?;
    let want = &expect.release.manifest.version;
    if *want != version {
        return Err(UpdateError::VersionMismatch {
            expected: want.clone(),
            found: version,
        });
    }
    Ok(Verified {
        path: candidate,
        version,
        sha256,
    })
}

/// What the version rules say about installing `candidate` over `installed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Install,
    AlreadyInstalled,
}

pub fn policy(
    candidate: &str,
    installed: Option<&str>,
    allow_downgrade: bool,
) -> Result<Policy, UpdateError> {
    let Some(installed) = installed else {
        return Ok(Policy::Install);
    };
    match relation(candidate, installed) {
        Relation::Newer => Ok(Policy::Install),
        Relation::Same => Ok(Policy::AlreadyInstalled),
        Relation::NotNewer if allow_downgrade => Ok(Policy::Install),
        Relation::NotNewer => Err(UpdateError::Downgrade {
            candidate: candidate.to_owned(),
            installed: installed.to_owned(),
        }),
    }
}

/// Extracts `<dir>/rakkr-recorder-agent` from a release archive.
fn unpack(archive: &Path, out: &Path) -> Result<(), UpdateError> {
    let bad = |e: std::io::Error| {
        UpdateError::NotExecutable(format!(
            "{} is not a readable release archive: {e}",
            archive.display()
        ))
    };
    let f = std::fs::File::open(archive)
        .map_err(UpdateError::io(format!("opening {}", archive.display())))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let parts: Vec<_> = path.components().collect();
        let is_binary = parts.len() == 2
            && parts[1].as_os_str() == BINARY_NAME
            && entry.header().entry_type().is_file();
        if !is_binary {
            continue;
        }
        if entry.size() > MAX_BINARY {
            return Err(UpdateError::NotExecutable(format!(
                "{} in the archive is {} bytes (limit {MAX_BINARY})",
                path.display(),
                entry.size()
            )));
        }
        let mut w = std::fs::File::create(out)
            .map_err(UpdateError::io(format!("creating {}", out.display())))?;
        std::io::copy(&mut entry, &mut w).map_err(bad)?;
        w.flush()
            .map_err(UpdateError::io(format!("writing {}", out.display())))?;
        return Ok(());
    }
    Err(UpdateError::NotExecutable(format!(
        "{} holds no {BINARY_NAME}-<version>-<target>/{BINARY_NAME}",
        archive.display()
    )))
}

/// ELF `e_machine` of this build's architecture.
pub const fn native_machine() -> u16 {
    if cfg!(target_arch = "aarch64") {
        183
    } else if cfg!(target_arch = "x86_64") {
        62
    } else {
        0
    }
}

pub fn machine_name(m: u16) -> String {
    match m {
        3 => "x86 (32-bit)".into(),
        40 => "arm (32-bit)".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("ELF machine {other}"),
    }
}

/// A 64-bit little-endian ELF executable for this machine.
pub fn check_elf(path: &Path) -> Result<(), UpdateError> {
    let mut head = [0u8; 20];
    let mut f = std::fs::File::open(path)
        .map_err(UpdateError::io(format!("opening {}", path.display())))?;
    let n = f
        .read(&mut head)
        .map_err(UpdateError::io(format!("reading {}", path.display())))?;
    if n < head.len() || &head[..4] != b"\x7fELF" {
        return Err(UpdateError::NotExecutable(format!(
            "{} is not an ELF executable",
            path.display()
        )));
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if head[4] != 2 || head[5] != 1 || machine != native_machine() {
        return Err(UpdateError::WrongArchitecture {
            found: if head[4] != 2 {
                "a 32-bit target".into()
            } else {
                machine_name(machine)
            },
            expected: machine_name(native_machine()),
        });
    }
    let kind = u16::from_le_bytes([head[16], head[17]]);
    if kind != 2 && kind != 3 {
        return Err(UpdateError::NotExecutable(format!(
            "{} is an ELF file but not an executable (type {kind})",
            path.display()
        )));
    }
    Ok(())
}

/// Runs `binary --version` and returns the version from its first line,
/// `rakkr-recorder-agent <version>[ (development build)]`.
pub fn run_version(binary: &Path) -> Result<String, UpdateError> {
    let mut attempts = 0;
    let mut child = loop {
        match Command::new(binary)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => break c,
            // NOTE: a file just written can be briefly "busy" when another
            // thread forked while it was open for writing.
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(UpdateError::NotExecutable(format!(
                    "{} does not run: {e}",
                    binary.display()
                )));
            }
        }
    };
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() < VERSION_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(UpdateError::NotExecutable(format!(
                    "{} --version did not finish within {VERSION_TIMEOUT:?}",
                    binary.display()
                )));
            }
            Err(e) => return Err(UpdateError::io(format!("waiting for {}", binary.display()))(e)),
        }
    };
    let mut out = String::new();
    if let Some(so) = child.stdout.take() {
        let _ = so.take(64 * 1024).read_to_string(&mut out);
    }
    let first = out.lines().next().unwrap_or_default();
    let version = first
        .strip_prefix(BINARY_NAME)
        .map(str::trim)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|_| status.success());
    version.map(str::to_owned).ok_or_else(|| {
        UpdateError::NotExecutable(format!(
            "{} --version exited with {status} and printed {first:?}, not \"{BINARY_NAME} <version>\"",
            binary.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_text_forms() {
        let h = "ab".repeat(32);
        assert_eq!(parse_sha256(&h), Some(h.clone()));
        assert_eq!(
            parse_sha256(&format!("{}  agent.tar.gz\n", h.to_uppercase())),
            Some(h)
        );
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(""), None);
    }

    #[test]
    fn policy_follows_calendar_versions() {
        assert_eq!(
            policy("2026.11.23-2", Some("2026.11.23-1"), false).unwrap(),
            Policy::Install
        );
        assert_eq!(
            policy("2026.11.23-1", Some("2026.11.23-1"), false).unwrap(),
            Policy::AlreadyInstalled
        );
        assert!(matches!(
            policy("2026.11.22-9", Some("2026.11.23-1"), false),
            Err(UpdateError::Downgrade { .. })
        ));
        assert_eq!(
            policy("2026.11.22-9", Some("2026.11.23-1"), true).unwrap(),
            Policy::Install
        );
        assert!(matches!(
            policy("0.1.0+abc", Some("2026.11.23-1"), false),
            Err(UpdateError::Downgrade { .. })
        ));
        assert_eq!(
            policy("2026.11.23-1", Some("0.1.0+abc"), false).unwrap(),
            Policy::Install
        );
        assert_eq!(
            policy("2026.11.23-1", None, false).unwrap(),
            Policy::Install
        );
    }

    #[test]
    fn elf_checks_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(check_elf(&p), Err(UpdateError::NotExecutable(_))));
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[16] = 2;
        let other = if native_machine() == 62 { 183u16 } else { 62 };
        elf[18..20].copy_from_slice(&other.to_le_bytes());
        std::fs::write(&p, &elf).unwrap();
        let err = check_elf(&p).unwrap_err();
        assert!(
            matches!(err, UpdateError::WrongArchitecture { .. }),
            "{err}"
        );
        assert_eq!(err.exit_code(), 11);
        elf[18..20].copy_from_slice(&native_machine().to_le_bytes());
        std::fs::write(&p, &elf).unwrap();
        check_elf(&p).unwrap();
        // Our own binary passes.
        check_elf(&std::env::current_exe().unwrap()).unwrap();
    }
}
