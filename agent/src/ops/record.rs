//! `record`: a take straight from the capture device to disk, no controller.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::capture::{self, CaptureSpec};
use crate::cli::FileFormat;
use crate::config::{Config, DeviceSelector};
use crate::exit::Failure;
use crate::inventory::{audio, select};
use crate::record::encoder::Container;
use crate::record::take::{self, TakeSpec};

#[derive(Debug)]
pub struct Args {
    pub duration: Duration,
    pub output: PathBuf,
    pub device: Option<String>,
    pub channels: Option<u16>,
    pub format: Option<FileFormat>,
    pub segment: Option<Duration>,
    pub take_id: Option<String>,
}

/// Resolves a selector to an exact device name (enumerating only if needed).
fn resolve(selector: &DeviceSelector) -> anyhow::Result<String> {
    if let DeviceSelector::Exact(name) = selector {
        return Ok(name.clone());
    }
    let devices = audio::discover();
    match select::choose(selector, &devices) {
        (Some(d), why) => {
            tracing::info!(device = %d.name, reason = %why, "capture device chosen");
            Ok(d.name.clone())
        }
        (None, why) => bail!("{why}"),
    }
}

fn selector(arg: Option<&str>, config: &Config) -> DeviceSelector {
    match arg.map(str::trim) {
        None => config.capture.device.clone(),
        Some("" | "auto") => DeviceSelector::Auto,
        Some(p) if p.contains(['*', '?']) => DeviceSelector::Pattern(p.to_owned()),
        Some(d) => DeviceSelector::Exact(d.to_owned()),
    }
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let container = match args.format {
        Some(FileFormat::Flac) => Container::Flac,
        Some(FileFormat::Wav) => Container::Wav,
        Some(FileFormat::W64) => Container::W64,
        None => config.capture.format,
    };
    if let Some(legacy) = &config.capture.legacy_sample_format {
        tracing::info!(capture_format = %legacy, "sample format is negotiated with the device; recording {container:?}");
    }
    let device = resolve(&selector(args.device.as_deref(), config)).context(Failure::Capture)?;
    let spec = CaptureSpec {
        device: device.clone(),
        channels: args.channels.or(config.capture.channels),
        sample_rate: config.capture.sample_rate,
        buffer_frames: config.capture.buffer_frames,
    };
    let mut cap = capture::open(&spec).context(Failure::Capture)?;
    let take_id = args.take_id.unwrap_or_else(|| {
        let now = time::OffsetDateTime::now_utc();
        format!(
            "take-{:04}{:02}{:02}-{:02}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        )
    });
    let frames = (args.duration.as_secs_f64() * f64::from(cap.sample_rate)).round() as u64;
    let spec = TakeSpec {
        take_id,
        output: args.output,
        container,
        frames: Some(frames),
        segment_frames: (args.segment.unwrap_or(config.capture.segment).as_secs_f64()
            * f64::from(cap.sample_rate))
        .round()
        .max(1.0) as u64,
        channel_names: (1..=cap.channels).map(|i| format!("Input {i}")).collect(),
        device,
    };
    tracing::info!(
        device = %spec.device,
        channels = cap.channels,
        rate = cap.sample_rate,
        format = %cap.format,
        frames,
        "recording"
    );
    let stop = AtomicBool::new(false);
    let (dir, manifest) = take::record(&mut cap, &spec, &stop).context(Failure::Capture)?;
    drop(cap);
    println!("take {}: {}", manifest.take_id, dir.display());
    println!("manifest: {}", dir.join("manifest.json").display());
    println!(
        "{} frames x {} channels at {} Hz, {:?}, {} segment(s), {} files, {} gap(s), {} xrun(s)",
        manifest.frames,
        manifest.channels,
        manifest.sample_rate,
        manifest.format,
        manifest.segments,
        manifest.files.len(),
        manifest.gaps.len(),
        manifest.xruns
    );
    Ok(())
}
