//! The recording part of `rakkr-controller demo`: the controller starts a
//! take on the agent, which captures the paced 32-channel ALSA test device,
//! marks it, stops it, and lists what was written.

use std::time::Duration;

use crate::ControllerHandle;
use anyhow::{Context, bail};
use rakkr_protocol::{CommandBody, Outcome, Reply, StartTake, TakeFormat};

const T: Duration = Duration::from_secs(10);

async fn command(h: &ControllerHandle, node: &str, body: CommandBody) -> anyhow::Result<Reply> {
    match h.command(node, body, T).await?.outcome {
        Outcome::Done(r) => Ok(r),
        Outcome::Failed(f) => bail!("{:?}: {}", f.code, f.message),
    }
}

/// Records `seconds` of audio as take `take_id`; prints each step.
/// `drops`: what the simulated console dropped (audio nobody read in time),
/// which the content check excuses.
pub async fn record_take(
    h: &ControllerHandle,
    node: &str,
    take_id: &str,
    seconds: u64,
    drops: &crate::sim::DropLog,
) -> anyhow::Result<()> {
    let mut device = String::new();
    for _ in 0..100 {
        if let Reply::TakeStatus {
            device_ok: true,
            device: d,
            ..
        } = command(h, node, CommandBody::TakeStatus).await?
        {
            device = d;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if device.is_empty() {
        bail!("the agent's capture device did not open");
    }
    let Reply::Take { take, .. } = command(
        h,
        node,
        CommandBody::StartTake(StartTake {
            take_id: take_id.into(),
            channels: 0,
            format: Some(TakeFormat::Flac),
            segment_seconds: 2,
            pre_roll_ms: 0,
        }),
    )
    .await
    .context("starting the take")?
    else {
        bail!("unexpected reply to StartTake");
    };
    println!(
        "   take {} recording {} channels at {} Hz from {device} into {}",
        take.take_id, take.channels, take.sample_rate, take.dir
    );
    tokio::time::sleep(Duration::from_secs(seconds / 2)).await;
    if let Reply::Marked { at_sample } = command(
        h,
        node,
        CommandBody::Mark {
            label: "demo marker".into(),
        },
    )
    .await?
    {
        println!("   marker placed at sample {at_sample}");
    }
    tokio::time::sleep(Duration::from_secs(seconds - seconds / 2)).await;
    let Reply::TakeStopped {
        take,
        manifest_json,
    } = command(
        h,
        node,
        CommandBody::StopTake {
            take_id: take_id.into(),
        },
    )
    .await
    .context("stopping the take")?
    else {
        bail!("unexpected reply to StopTake");
    };
    let m: serde_json::Value = serde_json::from_str(&manifest_json)?;
    let files = m["files"].as_array().context("manifest files")?;
    println!(
        "   take stopped: {} frames ({:.1} s) in {} segment(s), {} files, status {}",
        m["frames"],
        m["frames"].as_f64().unwrap_or(0.0) / f64::from(take.sample_rate),
        m["segments"],
        files.len(),
        m["status"]
    );
    for f in files.iter().take(3) {
        println!(
            "     {}  {} samples  sha256 {}…",
            f["file"].as_str().unwrap_or(""),
            f["samples"],
            &f["sha256"].as_str().unwrap_or("")[..16]
        );
    }
    if files.len() > 3 {
        println!("     … and {} more", files.len() - 3);
    }
    println!("   manifest: {}/manifest.json", take.dir);
    let frames =
        crate::sim::check::check_content(std::path::Path::new(&take.dir), &m, &drops.ranges());
    println!("   decoded every file: all 32 channels match the test signal ({frames} frames each)");
    Ok(())
}

/// Waits (up to 60 s) until the controller sent receipts the node accepted
/// for every file of the take in `node_take`, and checks its copy in
/// `copy` against the node's manifest. Returns the number of files.
pub async fn arrived(
    events: &mut tokio::sync::broadcast::Receiver<crate::ControllerEvent>,
    node_take: &std::path::Path,
    copy: &std::path::Path,
) -> anyhow::Result<usize> {
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node_take.join("manifest.json")).context("reading the node's manifest")?,
    )?;
    let files: Vec<(String, String)> = m["files"]
        .as_array()
        .context("manifest files")?
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap_or_default().to_owned(),
                f["sha256"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut got = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Bounded by the deadline.
    while !files.iter().all(|(f, _)| got.contains(f)) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => bail!("not every file reached the controller within 60 s"),
            Ok(Ok(crate::ControllerEvent::TakeReceipt { accepted, .. })) => got.extend(accepted),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => bail!("controller events ended: {e}"),
        }
    }
    for (f, sha) in &files {
        let got = crate::takes::sha256_file(&copy.join(f))
            .with_context(|| format!("reading the copy of {f}"))?;
        if &got != sha {
            bail!("the controller's copy of {f} differs from the node's");
        }
    }
    Ok(files.len())
}
