//! `takes`: what takes the node holds and what the controller received of
//! them; `takes prune [--dry-run]`: what retention deletes now and why;
//! `takes verify [TAKE]`: every file of a take against its manifest hash
//! and its format's own checks (see `take::verify`); exit 9 when a take
//! is damaged. Also run by `recover` after it repairs.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Config;
use crate::exit::Failure;
use crate::take::verify::{Report, take_dirs, verify_take};

/// `takes`: one line (or JSON object) per take.
pub fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let root = &config.recordings_path;
    let takes = crate::take::listing::takes(root);
    if !json && takes.is_empty() {
        println!("no takes in {}", root.display());
    }
    for (id, m) in takes {
        let m = match m {
            Ok(m) => m,
            Err(why) => {
                if json {
                    println!("{}", serde_json::json!({ "takeId": id, "error": why }));
                } else {
                    println!("{id:<32} unreadable manifest: {why}");
                }
                continue;
            }
        };
        let s = crate::take::listing::summary(&root.join(&id), &m);
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "takeId": s.take_id,
                    "status": s.status,
                    "startedAt": m.started_at,
                    "channels": s.channels,
                    "sampleRate": s.sample_rate,
                    "format": format!("{:?}", s.format).to_lowercase(),
                    "segments": s.segments,
                    "frames": s.frames,
                    "bytes": s.bytes,
                    "files": s.files,
                    "received": s.received,
                    "unreceived": s.files - s.received,
                    "deviceChannels": m.device_channels,
                    "jobId": m.job_id,
                    "endsAtMs": m.ends_at_ms,
                })
            );
        } else {
            let secs = s.frames as f64 / f64::from(s.sample_rate.max(1));
            println!(
                "{:<32} {:<9} {:>2} ch {:>9.1} s {:>10.1} MiB  received {}/{} files",
                s.take_id,
                s.status,
                s.channels,
                secs,
                s.bytes as f64 / (1 << 20) as f64,
                s.received,
                s.files
            );
        }
    }
    Ok(())
}

/// `takes prune`: runs the retention policy once (or only says what it
/// would do).
pub fn prune(config: &Config, dry_run: bool) -> anyhow::Result<()> {
    use crate::take::retention;
    let root = &config.recordings_path;
    if config.retention.is_keep_all() {
        println!(
            "retention keeps every take (no retention.* setting): nothing to prune in {}",
            root.display()
        );
        return Ok(());
    }
    let disk = crate::jobs::retention::disk(root)
        .with_context(|| format!("reading the free space of {}", root.display()))
        .context(Failure::State)?;
    let plan = retention::plan(
        &retention::candidates(root),
        &config.retention,
        disk,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    if plan.delete.is_empty() {
        println!("nothing to prune in {}", root.display());
    }
    let mut kept = 0;
    for (id, why) in &plan.delete {
        if dry_run {
            println!("would delete {id}: {why}");
            continue;
        }
        match retention::delete(root, id) {
            Ok((files, bytes)) => println!(
                "deleted {id} ({files} files, {:.1} MiB): {why}",
                bytes as f64 / (1 << 20) as f64
            ),
            Err(e) => {
                kept += 1;
                eprintln!("kept {id}: {e:#}");
            }
        }
    }
    if let Some(why) = &plan.blocked {
        eprintln!("warning: {why}");
    }
    if kept > 0 {
        return Err(anyhow::anyhow!(
            "{kept} take(s) the policy chose were kept (see above)"
        ))
        .context(Failure::State);
    }
    Ok(())
}

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
