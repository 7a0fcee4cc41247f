//! `encode`: turns a raw capture (interleaved S32_LE, e.g. an emergency
//! `arecord -t raw` dump) into a take — same writer, segments and manifest
//! as a live take. Also what the writer benchmark measures.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::exit::Failure;

use crate::take::spread::Threads;
use crate::take::writer::{Ending, Take, TakeSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The raw file.
    #[arg(long)]
    pub input: PathBuf,
    /// Channels interleaved in the input (1-512).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub channels: u16,
    /// Sample rate in Hz (8000-384000).
    #[arg(long, default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8_000..=384_000))]
    pub rate: u32,
    /// Encode the whole frames of an input whose size is not a whole
    /// number of frames, dropping the bytes after the last one (without
    /// it such an input is refused: it usually means a wrong --channels).
    #[arg(long)]
    pub keep_whole_frames: bool,
    #[arg(long, value_enum, default_value = "flac")]
    pub format: crate::cli::args::FileFormat,
    /// Directory to create the take directory in.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long)]
    pub take_id: String,
    /// Longest segment (e.g. 30m); default: capture.segment_seconds.
    #[arg(long, value_parser = crate::cli::args::parse_duration)]
    pub segment: Option<std::time::Duration>,
    /// Encoder threads: "auto" (one while it encodes faster than twice
    /// real time, as a live take does; every core otherwise) or a number.
    #[arg(long, default_value = "auto")]
    pub threads: Threads,
}

pub fn run(config: &Config, a: Args) -> anyhow::Result<()> {
    let container = crate::cli::record::container_of(a.format);
    let segment = a.segment.unwrap_or(config.capture.segment);
    // NOTE: no BufReader: blocks are read straight into the sample buffer
    // (one copy from the page cache, none in userspace).
    let mut input = std::fs::File::open(&a.input)
        .with_context(|| format!("opening {}", a.input.display()))
        .context(Failure::Usage)?;
    let ch = usize::from(a.channels);
    let frame = ch as u64 * 4;
    // A regular file's size is known: a partial last frame is refused
    // before anything is written (for a pipe, it is found at its end).
    let size = input
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    if let Some(size) = size {
        check_whole(size, frame, a.channels, a.keep_whole_frames)?;
        eprintln!(
            "{}: {} frames of {} channels ({:.2} s at {} Hz)",
            a.input.display(),
            size / frame,
            a.channels,
            (size / frame) as f64 / f64::from(a.rate),
            a.rate
        );
    }
    let spec = TakeSpec {
        take_id: a.take_id.clone(),
        output: a.output.clone(),
        container,
        segment_frames: ((segment.as_secs_f64() * f64::from(a.rate)) as u64).max(1),
        channel_names: (1..=a.channels)
            .map(|n| config.capture.channel_name(n))
            .collect(),
        device: format!("file:{}", a.input.display()),
        disk: config.disk.clone(),
        sample_rate: a.rate,
        capture_format: "i32".into(),
        threads: a.threads,
        clock: None,
        continues: None,
        device_channels: Vec::new(),
        job_id: None,
        ends_at_ms: None,
        console: None,
    };
    let mut take = Take::start(spec).context(Failure::Capture)?;
    // NOTE: aligned, or the kernel's copy into it costs several times more
    // (see `aligned`).
    let mut block = crate::aligned::Aligned::<i32>::new(4096 * ch);
    let mut events = Vec::new();
    let mut total = 0u64;
    let ending = loop {
        let n = match read_full(&mut input, bytemuck::cast_slice_mut(&mut block)) {
            Ok(n) => n,
            Err(e) => {
                break Ending::early("error", format!("reading {}: {e}", a.input.display()));
            }
        };
        total += n as u64;
        let whole = n / (ch * 4) * ch;
        // The input is little-endian; a no-op on the targets we ship.
        for s in &mut block[..whole] {
            *s = i32::from_le(*s);
        }
        match take.write(&block[..whole], &mut events) {
            Ok(None) => {}
            Ok(Some(stop)) => break Ending::early("disk", stop.0),
            Err(e) => break Ending::early("error", format!("writing failed: {e:#}")),
        }
        events.clear();
        if n < block.len() * 4 {
            break match check_whole(total, frame, a.channels, a.keep_whole_frames) {
                Ok(()) => Ending::asked("end of input"),
                Err(e) => Ending::early("error", format!("{e:#}")),
            };
        }
    };
    let early = ending.early.clone();
    let f = take.finish(ending, &mut events);
    let m = &f.manifest;
    println!(
        "take {}: {} frames x {} channels, {} segment(s), {} files in {}",
        m.take_id,
        m.frames,
        m.channels,
        m.segments,
        m.files.len(),
        a.output.join(&m.take_id).display()
    );
    if let Err(e) = f.persisted {
        return Err(e).context(Failure::Capture);
    }
    if let Some(why) = early {
        bail!("{why} (take {} kept with {} frames)", m.take_id, m.frames);
    }
    Ok(())
}

/// Refuses `size` bytes that are not whole frames, unless asked to keep
/// the whole ones (then says what is dropped).
fn check_whole(size: u64, frame: u64, channels: u16, keep: bool) -> anyhow::Result<()> {
    let extra = size % frame;
    if extra == 0 {
        return Ok(());
    }
    if keep {
        eprintln!(
            "dropping the last {extra} bytes: not a whole frame of {channels} channels ({frame} bytes)"
        );
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "the input is {size} bytes, not a whole number of {channels}-channel S32_LE frames ({frame} bytes each; {extra} bytes left over): check --channels, or pass --keep-whole-frames to encode the whole frames and drop the rest"
    ))
    .context(Failure::Usage)
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
