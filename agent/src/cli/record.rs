//! `record`: a take straight from the capture device to disk, no
//! controller; `recover`: repair interrupted takes. `record` drives the
//! same engine the daemon uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::FileFormat;
use crate::config::{Config, DeviceSelector};
use crate::engine::{Engine, EngineConfig, Handle, Output, StartRequest};
use crate::exit::Failure;
use crate::take::encoder::Container;
use crate::take::manifest::Manifest;
use crate::take::recover::{self, Recovered};
use crate::take::writer::Ending;

/// How long `record` waits for the device to deliver a configuration.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long: 30s, 2m, 1h, 1500ms (a bare number is seconds); default: until Ctrl-C / SIGTERM.
    #[arg(long, value_parser = crate::cli::args::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Directory to create the take directory in; default: storage.recordings_path.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Capture device (exact ALSA name, glob, or auto); default: capture.device.
    #[arg(long)]
    pub device: Option<String>,
    /// Channels: a count to capture (1-512), or which device channels to
    /// record, as a list with ranges (`1,2,17-24`); default:
    /// capture.channels, else all the device offers.
    #[arg(long, value_parser = parse_channels)]
    pub channels: Option<Channels>,
    /// File format; default: capture.format (flac).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// Longest segment (e.g. 30m); default: capture.segment_seconds (1 h).
    #[arg(long, value_parser = crate::cli::args::parse_duration)]
    pub segment: Option<std::time::Duration>,
    /// Take id (default: take-<UTC date and time>).
    #[arg(long)]
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
    // A bad --output is the caller's mistake (2); a bad configured path,
    // the configuration's (3).
    let (output, bad) = match &args.output {
        Some(o) => (o.clone(), (Failure::Usage, "--output")),
        None => (
            config.recordings_path.clone(),
            (Failure::Config, "storage.recordings_path"),
        ),
    };
    if output.exists() && !output.is_dir() {
        return Err(anyhow::anyhow!(
            "{} ({}) is not a directory: give a directory to create the take directory in",
            output.display(),
            bad.1
        ))
        .context(bad.0);
    }
    std::fs::create_dir_all(&output)
        .with_context(|| format!("creating {} ({})", output.display(), bad.1))
        .context(bad.0)?;
    let report = recover::recover_all(&output)
        .with_context(|| format!("looking for interrupted takes in {}", output.display()))
        .context(bad.0)?;
    for r in &report.recovered {
        report_recovered(r);
    }
    for (dir, e) in &report.failed {
        // An old take that cannot be repaired must not keep a new one from
        // recording: said, and left as it is.
        eprintln!(
            "warning: take {} could not be repaired ({e:#}); its files are left as they are, see `takes verify`",
            dir.display()
        );
    }
    let take_id = args.take_id.clone().unwrap_or_else(default_take_id);
    let rate = config.capture.sample_rate;
    let mut cfg = EngineConfig::from_config(config);
    cfg.capture.device = selector(args.device.as_deref(), config);
    let (count, list) = match &args.channels {
        Some(Channels::Count(n)) => (Some(*n), None),
        Some(Channels::List(l)) => (None, Some(l.clone())),
        None => (None, None),
    };
    cfg.capture.channels = count.or(config.capture.channels);
    cfg.recordings = output;
    cfg.capture.pre_roll = Duration::ZERO;
    cfg.autostart = vec![StartRequest {
        container: Some(container),
        segment: args.segment,
        frames: args
            .duration
            .map(|d| ((d.as_secs_f64() * f64::from(rate)).round() as u64).max(1)),
        channel_list: list,
        exclusive: true,
        admit_anyway: true,
        ..StartRequest::named(&take_id)
    }];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (handle, thread) = Engine::spawn(cfg, Box::new(move |o| drop(tx.send(o))))?;
    let res = rt.block_on(record(&handle, rx, &take_id, args.duration));
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
    duration: Option<Duration>,
) -> anyhow::Result<(String, Manifest)> {
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut dir = None;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut started = None;
    let signal_name = loop {
        tokio::select! {
            o = rx.recv() => match o {
                Some(Output::Started(info)) => {
                    println!("recording take {} into {}", info.take_id, info.dir);
                    println!("manifest: {}/manifest.json", info.dir);
                    dir = Some(info.dir);
                    started = Some(Instant::now());
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
            _ = tokio::signal::ctrl_c() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
        }
    };
    tracing::info!(signal = signal_name, "stopping the take");
    // Without --duration a signal is the way to end the take; with one,
    // a signal cuts it short, and the manifest says so.
    let ending = match duration {
        None => Ending::asked(signal_name),
        Some(d) => Ending::early(
            signal_name,
            format!(
                "stopped by {signal_name} after {:.1} s of the {:.1} s asked",
                started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                d.as_secs_f64()
            ),
        ),
    };
    let (_, m) = handle
        .stop(take_id.to_owned(), ending)
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
/// Repairs what a crash interrupted, then verifies every take it looked
/// at (`takes verify`): exit 9 when a take could not be repaired or is
/// damaged.
pub fn recover(config: &Config, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| config.recordings_path.clone());
    if !dir.is_dir() {
        return Err(anyhow::anyhow!(
            "{} is not a directory: give a take directory or a directory of takes",
            dir.display()
        ))
        .context(Failure::Usage);
    }
    let single = dir.join(crate::take::manifest::FILE_NAME).exists();
    let report = if single {
        match recover::recover_take(&dir) {
            Ok(r) => recover::Report {
                recovered: r.into_iter().collect(),
                failed: Vec::new(),
            },
            Err(e) => recover::Report {
                recovered: Vec::new(),
                failed: vec![(dir.clone(), e)],
            },
        }
    } else {
        recover::recover_all(&dir).context(Failure::State)?
    };
    for r in &report.recovered {
        report_recovered(r);
    }
    for (d, e) in &report.failed {
        println!("could not recover take {}: {e:#}", d.display());
    }
    if report.recovered.is_empty() && report.failed.is_empty() {
        println!("nothing to recover under {}", dir.display());
    }
    let dirs = if single {
        vec![dir.clone()]
    } else {
        crate::take::verify::take_dirs(&dir)
            .with_context(|| format!("listing {}", dir.display()))
            .context(Failure::State)?
    };
    let damaged = super::takes::verify_and_print(&dirs, false);
    if !report.failed.is_empty() || damaged > 0 {
        return Err(anyhow::anyhow!(
            "{} take(s) could not be repaired, {damaged} take(s) damaged: their files are kept as they are",
            report.failed.len()
        ))
        .context(Failure::Damaged);
    }
    Ok(())
}

/// `record --channels`: how many to capture, or which to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channels {
    Count(u16),
    List(Vec<u16>),
}

fn parse_channels(s: &str) -> Result<Channels, String> {
    if let Ok(n) = s.trim().parse::<u16>() {
        return match n {
            1..=512 => Ok(Channels::Count(n)),
            _ => Err(format!("{n} channels: capture 1 to 512")),
        };
    }
    rakkr_protocol::takes::parse_channels(s).map(Channels::List)
}
