//! `record`: a take straight from the capture device to disk, no
//! controller; `recover`: repair interrupted takes. `record` drives the
//! same engine the daemon uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::FileFormat;
use crate::config::{Config, DeviceSelector};
use crate::exit::Failure;
use crate::record::encoder::Container;
use crate::record::manifest::Manifest;
use crate::record::recover::{self, Recovered};
use crate::recorder::{Engine, EngineConfig, Handle, Output, StartRequest};

/// How long `record` waits for the device to deliver a configuration.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Args {
    pub duration: Option<Duration>,
    pub output: Option<PathBuf>,
    pub device: Option<String>,
    pub channels: Option<u16>,
    pub format: Option<FileFormat>,
    pub segment: Option<Duration>,
    pub take_id: Option<String>,
}

fn selector(arg: Option<&str>, config: &Config) -> DeviceSelector {
    match arg.map(str::trim) {
        None => config.capture.device.clone(),
        Some("" | "auto") => DeviceSelector::Auto,
        Some(p) if p.contains(['*', '?']) => DeviceSelector::Pattern(p.to_owned()),
        Some(d) => DeviceSelector::Exact(d.to_owned()),
    }
}

fn default_take_id() -> String {
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
}

pub fn container_of(f: FileFormat) -> Container {
    match f {
        FileFormat::Flac => Container::Flac,
        FileFormat::Wav => Container::Wav,
        FileFormat::W64 => Container::W64,
    }
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let container = args.format.map_or(config.capture.format, container_of);
    if let Some(legacy) = &config.capture.legacy_sample_format {
        tracing::info!(capture_format = %legacy, "sample format is negotiated with the device; recording {container:?}");
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| config.recordings_path.clone());
    std::fs::create_dir_all(&output)
        .with_context(|| format!("creating {}", output.display()))
        .context(Failure::State)?;
    for r in recover::recover_all(&output).context(Failure::State)? {
        report_recovered(&r);
    }
    let take_id = args.take_id.clone().unwrap_or_else(default_take_id);
    let rate = config.capture.sample_rate;
    let mut cfg = EngineConfig::from_config(config);
    cfg.capture.device = selector(args.device.as_deref(), config);
    cfg.capture.channels = args.channels.or(config.capture.channels);
    cfg.recordings = output;
    cfg.capture.pre_roll = Duration::ZERO;
    cfg.autostart = Some(StartRequest {
        take_id: take_id.clone(),
        channels: None,
        container: Some(container),
        segment: args.segment,
        pre_roll: Duration::ZERO,
        frames: args
            .duration
            .map(|d| ((d.as_secs_f64() * f64::from(rate)).round() as u64).max(1)),
        output: None,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (handle, thread) = Engine::spawn(cfg, Box::new(move |o| drop(tx.send(o))))?;
    let res = rt.block_on(record(&handle, rx, &take_id));
    rt.block_on(handle.shutdown("the record command ended".into()));
    let _ = thread.join();
    let (dir, manifest) = res?;
    println!("take {}: {dir}", manifest.take_id);
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
    if let Some(reason) = &manifest.stop_reason {
        println!("stopped early: {reason}");
        return Err(anyhow::anyhow!("{reason}")).context(Failure::Capture);
    }
    Ok(())
}

/// Waits for the take to start, then for it to end (by its duration or a
/// signal). Returns the take directory and the final manifest.
async fn record(
    handle: &Handle,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Output>,
    take_id: &str,
) -> anyhow::Result<(String, Manifest)> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut dir = None;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(Output::Started(info)) => {
                    println!("recording take {} into {}", info.take_id, info.dir);
                    println!("manifest: {}/manifest.json", info.dir);
                    dir = Some(info.dir);
                }
                Some(Output::StartFailed { refusal, .. }) => {
                    return Err(anyhow::anyhow!("{refusal}")).context(Failure::Capture);
                }
                Some(Output::Stopped { manifest, .. }) => {
                    return Ok((dir.unwrap_or_default(), *manifest));
                }
                Some(_) => {}
                None => bail!("the recorder engine ended unexpectedly"),
            },
            _ = tick.tick(), if dir.is_none() => {
                let st = handle.status().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                if let (false, Some(err)) = (st.device_ok, st.error) {
                    return Err(anyhow::anyhow!("{err}")).context(Failure::Capture);
                }
                if Instant::now() > deadline {
                    return Err(anyhow::anyhow!("the capture device did not open within {OPEN_TIMEOUT:?}")).context(Failure::Capture);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("stopping the take");
    let (_, m) = handle
        .stop(take_id.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((dir.unwrap_or_default(), m))
}

fn report_recovered(r: &Recovered) {
    let m = &r.manifest;
    println!(
        "recovered take {} ({}): {} frames in {} segment(s), {} saved from the interrupted segment",
        m.take_id,
        r.dir.display(),
        m.frames,
        m.segments,
        m.recovery.as_ref().map_or(0, |x| x.frames_saved)
    );
}

/// `recover [DIR]`: DIR is a take directory or a directory of takes.
pub fn recover(config: &Config, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| config.recordings_path.clone());
    let found = if dir.join(crate::record::manifest::FILE_NAME).is_file() {
        recover::recover_take(&dir)
            .context(Failure::State)?
            .into_iter()
            .collect()
    } else {
        recover::recover_all(&dir).context(Failure::State)?
    };
    for r in &found {
        report_recovered(r);
    }
    if found.is_empty() {
        println!("nothing to recover under {}", dir.display());
    }
    Ok(())
}
