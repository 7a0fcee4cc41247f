//! `takes verify [TAKE]`: every file of a take against its manifest hash
//! and its format's own checks (see `take::verify`); exit 9 when a take
//! is damaged. Also run by `recover` after it repairs.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::exit::Failure;
use crate::take::verify::{Report, take_dirs, verify_take};

/// `takes verify`: TAKE is a take directory, or a take id under the
/// recordings path; without it, every take there.
pub fn verify(config: &Config, take: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let dirs = match take {
        Some(t) => vec![resolve(config, &t)?],
        None => {
            let root = &config.recordings_path;
            match take_dirs(root) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("listing {}", root.display()))
                        .context(Failure::State);
                }
            }
        }
    };
    let damaged = verify_and_print(&dirs, json);
    if damaged > 0 {
        return Err(anyhow::anyhow!(
            "{damaged} of {} take(s) damaged: the files named above do not match their manifest; they are kept as they are",
            dirs.len()
        ))
        .context(Failure::Damaged);
    }
    Ok(())
}

/// A take directory from a path or a take id.
fn resolve(config: &Config, take: &Path) -> anyhow::Result<PathBuf> {
    let manifest = crate::take::manifest::FILE_NAME;
    if take.join(manifest).exists() {
        return Ok(take.to_owned());
    }
    let by_id = config.recordings_path.join(take);
    if take.components().count() == 1 && by_id.join(manifest).exists() {
        return Ok(by_id);
    }
    Err(anyhow::anyhow!(
        "{} is neither a take directory nor a take id under {} (no {manifest})",
        take.display(),
        config.recordings_path.display()
    ))
    .context(Failure::Usage)
}

/// Verifies `dirs`, prints a report per take (JSON lines with `json`) and
/// returns how many are damaged.
pub fn verify_and_print(dirs: &[PathBuf], json: bool) -> usize {
    let mut damaged = 0;
    for dir in dirs {
        let r = verify_take(dir);
        damaged += usize::from(!r.ok());
        if json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else {
            print_report(&r);
        }
    }
    damaged
}

fn print_report(r: &Report) {
    let verdict = if r.skipped {
        "skipped"
    } else if r.ok() {
        "ok"
    } else {
        "DAMAGED"
    };
    println!(
        "take {} ({}): {verdict}, {} file(s) checked, status {}",
        if r.take_id.is_empty() {
            "?"
        } else {
            &r.take_id
        },
        r.dir.display(),
        r.files_checked,
        if r.status.is_empty() {
            "unknown"
        } else {
            &r.status
        }
    );
    for p in &r.problems {
        println!("  damaged: {p}");
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
}
