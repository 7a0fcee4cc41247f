//! `encode`: turns a raw capture (interleaved S32_LE, e.g. an emergency
//! `arecord -t raw` dump) into a take — same writer, segments and manifest
//! as a live take. Also what the writer benchmark measures.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::exit::Failure;
use crate::record::encoder::Container;
use crate::record::spread::Threads;
use crate::record::take::{Take, TakeSpec};

#[derive(Debug)]
pub struct Args {
    pub input: PathBuf,
    pub channels: u16,
    pub rate: u32,
    pub container: Container,
    pub output: PathBuf,
    pub take_id: String,
    pub segment: std::time::Duration,
    pub threads: Threads,
}

pub fn run(config: &Config, a: Args) -> anyhow::Result<()> {
    if a.channels == 0 {
        bail!("--channels must be at least 1");
    }
    // NOTE: no BufReader: blocks are read straight into the sample buffer
    // (one copy from the page cache, none in userspace).
    let mut input =
        std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let ch = usize::from(a.channels);
    let spec = TakeSpec {
        take_id: a.take_id.clone(),
        output: a.output.clone(),
        container: a.container,
        segment_frames: ((a.segment.as_secs_f64() * f64::from(a.rate)) as u64).max(1),
        channel_names: (1..=a.channels)
            .map(|n| config.capture.channel_name(n))
            .collect(),
        device: format!("file:{}", a.input.display()),
        disk: config.disk.clone(),
        sample_rate: a.rate,
        capture_format: "i32".into(),
        threads: a.threads,
    };
    let mut take = Take::start(spec).context(Failure::Capture)?;
    // NOTE: aligned, or the kernel's copy into it costs several times more
    // (see `aligned`).
    let mut block = crate::aligned::Aligned::<i32>::new(4096 * ch);
    let mut events = Vec::new();
    loop {
        let n = read_full(&mut input, bytemuck::cast_slice_mut(&mut block))
            .with_context(|| format!("reading {}", a.input.display()))?;
        let whole = n / (ch * 4) * ch;
        if whole == 0 {
            break;
        }
        // The input is little-endian; a no-op on the targets we ship.
        for s in &mut block[..whole] {
            *s = i32::from_le(*s);
        }
        let full = n == block.len() * 4;
        if let Some(stop) = take.write(&block[..whole], &mut events)? {
            let m = take.finish(Some(stop.0.clone()), &mut events)?;
            bail!(
                "{} (take {} kept with {} frames)",
                stop.0,
                m.take_id,
                m.frames
            );
        }
        events.clear();
        if !full {
            break;
        }
    }
    let m = take.finish(None, &mut events)?;
    println!(
        "take {}: {} frames x {} channels, {} segment(s), {} files in {}",
        m.take_id,
        m.frames,
        m.channels,
        m.segments,
        m.files.len(),
        a.output.join(&m.take_id).display()
    );
    Ok(())
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
