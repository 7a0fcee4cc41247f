//! One output file written with ffmpeg-next: 24-bit FLAC (mono), BWF WAV
//! (mono, `bext` chunk) or W64 (all channels interleaved, no 4 GiB limit).
//!
//! Input is interleaved left-justified `i32` (see `capture`). The FLAC
//! encoder is told the content is 24-bit; the PCM encoder for 24-bit
//! little-endian stores the top 24 bits of each S32 sample. On `finish`
//! the muxers rewrite their headers (FLAC STREAMINFO with the sample count,
//! WAV/W64 sizes), the FLAC MD5 goes in (see `md5`: hashed beside the
//! encoder, many files at once) and the file is fsynced.
//!
//! NOTE: a WAV/W64 header always declares the audio made durable so far:
//! 0 when the file is created, the synced length at every `sync` (see
//! `riffscan`). Recovery takes no PCM byte past it as audio.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ffmpeg_next::{ChannelLayout, Dictionary, Packet, Rational, codec, encoder, format, frame};
use serde::Serialize;

use super::md5::SampleMd5;
use super::tail::{DiskFull, Tail};

/// Frames per encoder call for codecs without a fixed frame size (PCM).
const PCM_CHUNK_FRAMES: usize = 4096;

pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}

/// Recording file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// One mono 24-bit FLAC file per channel.
    Flac,
    /// One mono 24-bit Broadcast WAV file per channel.
    Wav,
    /// One interleaved multichannel 24-bit Sony Wave64 file.
    W64,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Flac => "flac",
            Container::Wav => "wav",
            Container::W64 => "w64",
        }
    }

    /// Whether each channel gets a file of its own.
    pub fn per_channel(self) -> bool {
        !matches!(self, Container::W64)
    }

    /// The format as the wire names it.
    pub fn wire(self) -> rakkr_protocol::TakeFormat {
        match self {
            Container::Flac => rakkr_protocol::TakeFormat::Flac,
            Container::Wav => rakkr_protocol::TakeFormat::Wav,
            Container::W64 => rakkr_protocol::TakeFormat::W64,
        }
    }

    /// Bytes one frame of `channels` takes in the file (24-bit PCM).
    pub fn frame_bytes(self, channels: u16) -> u64 {
        3 * u64::from(channels)
    }
}

/// Broadcast WAV `bext` facts (EBU Tech 3285).
#[derive(Debug, Clone)]
pub struct Bext {
    pub description: String,
    /// When the first sample was captured (UTC).
    pub origination: time::OffsetDateTime,
    /// First sample's position, in samples since midnight.
    pub time_reference: u64,
}

pub struct TrackWriter {
    path: PathBuf,
    /// A second handle on the file: fsync works on the inode, so syncing it
    /// makes what libavformat wrote durable.
    sync_handle: std::fs::File,
    octx: format::context::Output,
    enc: encoder::Audio,
    channels: u16,
    /// The one frame this writer fills and hands to the encoder, over and
    /// over: samples go straight into it (no staging copy, no allocation
    /// per encoder call).
    frame: frame::Audio,
    /// Frames `frame` holds so far.
    filled: usize,
    /// Frames per encoder call: the encoder's frame size, or
    /// `PCM_CHUNK_FRAMES` for codecs that take any size.
    step: usize,
    pts: i64,
    frames: u64,
    /// FLAC only: the MD5 of the samples handed to the encoder.
    md5: Option<SampleMd5>,
    /// WAV/W64 only: where the audio starts, and the audio bytes the
    /// header declares (the length at the last sync).
    pcm: Option<(Container, super::riffscan::DataChunk, u64)>,
    /// Room held past the end of the file (see `tail`).
    tail: Tail,
}

impl std::fmt::Debug for TrackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackWriter")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

#[allow(unsafe_code)]
fn set_bits_per_raw_sample(enc: &mut encoder::audio::Audio, bits: i32) {
    // SAFETY: the pointer is the encoder context ffmpeg-next owns; this
    // plain int field is read by avcodec_open2, which has not run yet.
    unsafe { (*enc.as_mut_ptr()).bits_per_raw_sample = bits };
}

/// Tells FFmpeg's FLAC encoder to leave the STREAMINFO MD5 to us (the
/// option our FFmpeg build has; see `md5`). False with a stock FFmpeg,
/// whose encoder then hashes too, and ours is checked against it.
#[allow(unsafe_code)]
fn leave_md5_to_us(enc: &mut encoder::audio::Audio) -> bool {
    // SAFETY: priv_data is the encoder's private context, allocated with
    // its option defaults when the context was made for the codec, and not
    // opened yet; av_opt_set only looks the option up and stores an int.
    unsafe {
        let priv_data = (*enc.as_mut_ptr()).priv_data;
        !priv_data.is_null()
            && ffmpeg_next::ffi::av_opt_set(priv_data, c"md5".as_ptr(), c"0".as_ptr(), 0) >= 0
    }
}

#[allow(unsafe_code)]
fn release_untouched_state(enc: &mut encoder::audio::Encoder) {
    // SAFETY: priv_data is the encoder's own heap block, allocated by
    // avcodec_open2 and used only by this thread, which is here.
    let released = unsafe { super::reclaim::zero_pages((*enc.as_mut_ptr()).priv_data.cast()) };
    tracing::trace!(released, "encoder state pages released");
}

/// Where the next byte written to the file will go, counting what
/// libavformat still buffers (its buffer is 32 KiB to 256 KiB, depending
/// on the FFmpeg version), without flushing anything.
#[allow(unsafe_code)]
fn avio_position(octx: &mut format::context::Output) -> Option<u64> {
    // SAFETY: as in `avio_flush`; avio_seek(pb, 0, SEEK_CUR) only reads
    // the buffer position (libavformat answers it before any seeking).
    let pos = unsafe {
        let pb = (*octx.as_mut_ptr()).pb;
        if pb.is_null() {
            return None;
        }
        ffmpeg_next::ffi::avio_seek(pb, 0, nix::libc::SEEK_CUR)
    };
    u64::try_from(pos).ok()
}

#[allow(unsafe_code)]
fn avio_flush(octx: &mut format::context::Output) {
    // SAFETY: `pb` is the open AVIOContext of this output context (set by
    // avio_open in format::output_as), valid until the context is dropped.
    unsafe {
        let pb = (*octx.as_mut_ptr()).pb;
        if !pb.is_null() {
            ffmpeg_next::ffi::avio_flush(pb);
        }
    }
}

#[allow(unsafe_code)]
fn make_writable(f: &mut frame::Audio) -> anyhow::Result<()> {
    // SAFETY: `f` is a valid frame with buffers (from `new_frame`). When the
    // encoder still holds a reference to them, this gives `f` fresh ones.
    let ret = unsafe { ffmpeg_next::ffi::av_frame_make_writable(f.as_mut_ptr()) };
    if ret < 0 {
        anyhow::bail!("av_frame_make_writable failed ({ret}): out of memory");
    }
    Ok(())
}

fn layout(channels: u16) -> ChannelLayout {
    if channels == 1 {
        ChannelLayout::MONO
    } else {
        ChannelLayout::empty()
    }
}

#[allow(unsafe_code)]
fn new_frame(channels: u16, samples: usize, rate: u32) -> frame::Audio {
    let mut f = frame::Audio::empty();
    f.set_format(format::Sample::I32(format::sample::Type::Packed));
    f.set_samples(samples);
    f.set_channel_layout(layout(channels));
    // 32 channels have no named layout: the channel count stands alone.
    f.set_channels(channels);
    f.set_rate(rate);
    // SAFETY: format, sample count and channel count are set, which is all
    // av_frame_get_buffer reads; the frame owns the buffers it allocates.
    let ret = unsafe { ffmpeg_next::ffi::av_frame_get_buffer(f.as_mut_ptr(), 0) };
    assert!(
        ret >= 0,
        "av_frame_get_buffer failed ({ret}): out of memory"
    );
    f
}

impl TrackWriter {
    /// Creates `path` with `channels` interleaved channels at `rate` Hz.
    pub fn create(
        path: &Path,
        container: Container,
        channels: u16,
        rate: u32,
        title: &str,
        bext: Option<&Bext>,
    ) -> anyhow::Result<Self> {
        Self::create_tagged(path, container, channels, rate, title, None, bext)
    }

    /// [`create`](Self::create) with a comment too: a FLAC Vorbis comment
    /// `DESCRIPTION`, a WAV `INFO` chunk's `ICMT` (FFmpeg's muxers map its
    /// `comment` key so), beside the title (`TITLE`, `INAM`).
    pub fn create_tagged(
        path: &Path,
        container: Container,
        channels: u16,
        rate: u32,
        title: &str,
        comment: Option<&str>,
        bext: Option<&Bext>,
    ) -> anyhow::Result<Self> {
        init();
        let ctx = |what: &str| format!("{what} {}", path.display());
        let mut octx =
            format::output_as(path, container.extension()).with_context(|| ctx("creating"))?;
        let id = if container == Container::Flac {
            codec::Id::FLAC
        } else {
            codec::Id::PCM_S24LE
        };
        let codec =
            encoder::find(id).ok_or_else(|| anyhow!("this FFmpeg has no {id:?} encoder"))?;
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .with_context(|| ctx("preparing the encoder for"))?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout(channels));
        enc.set_channels(i32::from(channels));
        enc.set_format(format::Sample::I32(format::sample::Type::Packed));
        enc.set_time_base(Rational::new(1, rate as i32));
        set_bits_per_raw_sample(&mut enc, 24);
        if container == Container::Flac {
            let ours = leave_md5_to_us(&mut enc);
            tracing::trace!(ours, "FLAC STREAMINFO MD5");
        }
        let mut enc = enc
            .open_as(codec)
            .with_context(|| ctx("opening the encoder for"))?;
        release_untouched_state(&mut enc);
        {
            let mut ost = octx
                .add_stream(codec)
                .with_context(|| ctx("adding a stream to"))?;
            ost.set_parameters(&enc);
            ost.set_time_base(Rational::new(1, rate as i32));
        }
        let mut meta = Dictionary::new();
        meta.set("title", title);
        if let Some(c) = comment {
            meta.set("comment", c);
        }
        meta.set(
            "encoder",
            &format!("rakkr-recorder-agent {}", crate::build_info::VERSION),
        );
        let mut options = Dictionary::new();
        if let Some(b) = bext {
            // FFmpeg's wav muxer fills the bext chunk from these keys.
            meta.set("description", &b.description);
            meta.set("originator", "Rakkr");
            meta.set(
                "origination_date",
                &format!(
                    "{:04}-{:02}-{:02}",
                    b.origination.year(),
                    u8::from(b.origination.month()),
                    b.origination.day()
                ),
            );
            meta.set(
                "origination_time",
                &format!(
                    "{:02}:{:02}:{:02}",
                    b.origination.hour(),
                    b.origination.minute(),
                    b.origination.second()
                ),
            );
            meta.set("time_reference", &b.time_reference.to_string());
            options.set("write_bext", "1");
        }
        if container == Container::Wav {
            // NOTE: segments roll over before 4 GiB; a WAV never needs RF64.
            options.set("rf64", "never");
        }
        octx.set_metadata(meta);
        octx.write_header_with(options)
            .with_context(|| ctx("writing the header of"))?;
        let step = match enc.frame_size() as usize {
            0 => PCM_CHUNK_FRAMES,
            n => n,
        };
        let sync_handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| ctx("opening for sync"))?;
        let pcm = if container == Container::Flac {
            None
        } else {
            // The header on disk, declaring no audio yet, before any audio.
            avio_flush(&mut octx);
            let data = super::riffscan::find_data(path, container)?;
            super::riffscan::write_sizes(&sync_handle, container, data, 0)
                .and_then(|()| sync_handle.sync_data())
                .with_context(|| ctx("writing the header sizes of"))?;
            Some((container, data, 0))
        };
        let mut w = Self {
            tail: Tail::new(container.frame_bytes(channels), step),
            sync_handle,
            path: path.to_owned(),
            octx,
            enc,
            channels,
            frame: new_frame(channels, step, rate),
            filled: 0,
            step,
            pts: 0,
            frames: 0,
            md5: (container == Container::Flac).then(|| SampleMd5::new(step)),
            pcm,
        };
        w.hold_tail();
        Ok(w)
    }

    /// Says on `full` when the disk has no room left for what comes next
    /// (see `tail`); the take stops on it. Holds the room again now, so
    /// that a file opened on a full disk says so at once.
    pub fn report_full_to(&mut self, full: DiskFull) {
        self.tail.report_to(full);
        self.hold_tail();
    }

    /// Holds room past the end of the file now (see `tail`).
    fn hold_tail(&mut self) {
        let end = avio_position(&mut self.octx).unwrap_or(0);
        self.tail
            .hold(&self.sync_handle, &self.path, self.frames, end);
    }

    /// Appends interleaved samples (a whole number of frames).
    pub fn write(&mut self, mut interleaved: &[i32]) -> anyhow::Result<()> {
        let ch = usize::from(self.channels);
        debug_assert_eq!(interleaved.len() % ch, 0);
        while interleaved.len() >= ch {
            let n = (self.step - self.filled).min(interleaved.len() / ch);
            let at = self.filled * ch;
            self.frame.plane_mut::<i32>(0)[at..at + n * ch].copy_from_slice(&interleaved[..n * ch]);
            interleaved = &interleaved[n * ch..];
            self.advance(n)?;
        }
        Ok(())
    }

    /// Appends channel `channel` of an interleaved block of `channels`
    /// channels (a mono writer's input straight from the capture block),
    /// encoding each time a whole encoder frame is there.
    pub fn push_channel(
        &mut self,
        block: &[i32],
        channel: usize,
        channels: usize,
    ) -> anyhow::Result<()> {
        debug_assert_eq!(self.channels, 1);
        debug_assert_eq!(block.len() % channels, 0);
        let mut rows = block.chunks_exact(channels);
        while rows.len() > 0 {
            let n = (self.step - self.filled).min(rows.len());
            let dst = &mut self.frame.plane_mut::<i32>(0)[self.filled..self.filled + n];
            for (d, row) in dst.iter_mut().zip(rows.by_ref()) {
                *d = row[channel];
            }
            self.advance(n)?;
        }
        Ok(())
    }

    /// Counts `n` more frames in `frame`; encodes it once it is full.
    fn advance(&mut self, n: usize) -> anyhow::Result<()> {
        self.filled += n;
        self.frames += n as u64;
        if self.filled == self.step {
            self.encode()?;
        }
        Ok(())
    }

    /// Hands the `filled` frames of `frame` to the encoder and writes what
    /// comes out; `frame` is then free to fill again.
    fn encode(&mut self) -> anyhow::Result<()> {
        let full = self.filled == self.step;
        if !full {
            // Only the last call of a file is short (the encoders take a
            // short last frame).
            self.frame.set_samples(self.filled);
        }
        if let Some(m) = self.md5.as_mut() {
            m.push(&self.frame.plane::<i32>(0)[..self.filled]);
        }
        self.frame.set_pts(Some(self.pts));
        self.pts += self.filled as i64;
        self.filled = 0;
        self.enc
            .send_frame(&self.frame)
            .with_context(|| format!("encoding {}", self.path.display()))?;
        self.drain()?;
        if self.tail.due(self.frames) {
            self.hold_tail();
        }
        // NOTE: the encoder took a reference to the frame's buffers; it has
        // let go of them once its packets are out (then this is a no-op).
        make_writable(&mut self.frame)
    }

    /// The MD5 of a FLAC file's samples, for hashing many files together
    /// (`md5::update_together`).
    pub fn md5_mut(&mut self) -> Option<&mut SampleMd5> {
        self.md5.as_mut()
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let enc_tb = self.enc.time_base();
        let st_tb = self.octx.stream(0).map_or(enc_tb, |s| s.time_base());
        let mut pkt = Packet::empty();
        while self.enc.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(enc_tb, st_tb);
            pkt.write_interleaved(&mut self.octx)
                .with_context(|| format!("writing {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Makes everything written so far durable: pushes libavformat's buffer
    /// to the file, then fsyncs its data.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        avio_flush(&mut self.octx);
        if let Some((container, data, declared)) = self.pcm.as_mut() {
            // Whole frames only: the header never declares a torn one.
            let frame = container.frame_bytes(self.channels);
            let len = self
                .sync_handle
                .metadata()
                .with_context(|| format!("reading the size of {}", self.path.display()))?
                .len();
            let bytes = len.saturating_sub(data.start) / frame * frame;
            if bytes != *declared {
                super::riffscan::write_sizes(&self.sync_handle, *container, *data, bytes)
                    .with_context(|| {
                        format!("writing the header sizes of {}", self.path.display())
                    })?;
                *declared = bytes;
            }
        }
        self.sync_handle
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Flushes, writes the trailer (final headers), syncs the file.
    /// Returns the path and the number of frames written.
    pub fn finish(self) -> anyhow::Result<(PathBuf, u64)> {
        let (path, frames, md5) = self.finish_reporting_md5()?;
        if let Some(Err(e)) = md5 {
            // NOTE: a mismatch with the encoder's own MD5 (stock FFmpeg)
            // is our bug, not the audio's: logged, the file kept as is.
            tracing::error!(error = format!("{e:#}"), "FLAC MD5");
        }
        Ok((path, frames))
    }

    /// `finish`, also saying what became of a FLAC file's MD5.
    fn finish_reporting_md5(
        mut self,
    ) -> anyhow::Result<(PathBuf, u64, Option<anyhow::Result<super::md5::Stored>>)> {
        if self.filled > 0 {
            self.encode()?;
        }
        self.enc
            .send_eof()
            .with_context(|| format!("flushing {}", self.path.display()))?;
        self.drain()?;
        self.octx
            .write_trailer()
            .with_context(|| format!("closing {}", self.path.display()))?;
        drop(self.octx);
        let md5 = self
            .md5
            .take()
            .map(|m| super::md5::store(&self.path, m.finish()));
        super::tail::trim(&self.sync_handle, &self.path);
        self.sync_handle
            .sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        Ok((self.path, self.frames, md5))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes a file back to interleaved left-justified i32 samples.
    pub(crate) fn decode(path: &Path) -> (u16, Vec<i32>) {
        init();
        let mut ictx = format::input(path).unwrap();
        let stream = ictx
            .streams()
            .best(ffmpeg_next::media::Type::Audio)
            .unwrap();
        let idx = stream.index();
        let mut dec = codec::context::Context::from_parameters(stream.parameters())
            .unwrap()
            .decoder()
            .audio()
            .unwrap();
        dec.set_packet_time_base(stream.time_base());
        let mut out = Vec::new();
        let mut f = frame::Audio::empty();
        let mut ch = 0;
        for (s, pkt) in ictx.packets() {
            if s.index() == idx {
                dec.send_packet(&pkt).unwrap();
                while dec.receive_frame(&mut f).is_ok() {
                    ch = f.channels();
                    let n = f.samples() * usize::from(ch);
                    if f.is_planar() {
                        for i in 0..f.samples() {
                            for c in 0..usize::from(ch) {
                                out.push(f.plane::<i32>(c)[i]);
                            }
                        }
                    } else {
                        out.extend_from_slice(&f.plane::<i32>(0)[..n]);
                    }
                }
            }
        }
        (ch, out)
    }

    pub(crate) fn signal(channels: usize, frames: usize) -> Vec<i32> {
        (0..frames)
            .flat_map(|n| {
                (0..channels).map(move |c| {
                    ((((n * 7919 + c * 104_729) % 16_777_216) as i32) - 8_388_608) << 8
                })
            })
            .collect()
    }

    fn round_trip(container: Container, channels: u16) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("t.{}", container.extension()));
        let bext = Bext {
            description: "test".into(),
            origination: time::OffsetDateTime::now_utc(),
            time_reference: 12_345,
        };
        let mut w = TrackWriter::create(
            &path,
            container,
            channels,
            48_000,
            "Kick",
            Some(&bext).filter(|_| container == Container::Wav),
        )
        .unwrap();
        let mut input = signal(usize::from(channels), 10_007);
        input.extend(
            std::iter::repeat_n([i32::MIN, 0x7fff_ff00], usize::from(channels))
                .flatten()
                .take(usize::from(channels)),
        );
        for chunk in input.chunks(333 * usize::from(channels)) {
            w.write(chunk).unwrap();
        }
        let (p, n) = w.finish().unwrap();
        assert_eq!(n as usize, input.len() / usize::from(channels));
        let (ch, decoded) = decode(&p);
        assert_eq!(ch, channels);
        assert_eq!(decoded, input, "{container:?} round trip");
    }

    #[test]
    fn flac_mono_round_trip_is_bit_exact() {
        round_trip(Container::Flac, 1);
    }

    #[test]
    fn flac_streaminfo_md5_is_the_md5_of_the_samples() {
        // Fed like a segment's files (one channel each of an interleaved
        // block, hashed together per tile), including a short last frame.
        use super::super::md5::{Stored, update_together};
        let dir = tempfile::tempdir().unwrap();
        let ch = 3;
        let input = signal(ch, 3 * 4608 + 1001);
        let mut ws: Vec<TrackWriter> = (0..ch)
            .map(|c| {
                let p = dir.path().join(format!("{c}.flac"));
                TrackWriter::create(&p, Container::Flac, 1, 48_000, "t", None).unwrap()
            })
            .collect();
        for tile in input.chunks(ch * 700) {
            for (c, w) in ws.iter_mut().enumerate() {
                w.push_channel(tile, c, ch).unwrap();
            }
            update_together(ws.iter_mut().filter_map(TrackWriter::md5_mut));
        }
        for (c, w) in ws.into_iter().enumerate() {
            let (path, _, md5) = w.finish_reporting_md5().unwrap();
            // Written (our FFmpeg leaves it to us) or Matched (a stock
            // FFmpeg's own MD5 equals ours); a mismatch is an error.
            let how = md5.expect("a FLAC file has an MD5").unwrap();
            assert!(matches!(how, Stored::Written | Stored::Matched));
            let bytes: Vec<u8> = input
                .iter()
                .skip(c)
                .step_by(ch)
                .flat_map(|s| (s >> 8).to_le_bytes().into_iter().take(3))
                .collect();
            use md5_reference::Digest;
            let want: [u8; 16] = md5_reference::Md5::digest(&bytes).into();
            assert_eq!(std::fs::read(&path).unwrap()[26..42], want, "channel {c}");
            assert_eq!(
                decode(&path).1,
                input
                    .iter()
                    .skip(c)
                    .step_by(ch)
                    .copied()
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn wav_mono_round_trip_is_bit_exact() {
        round_trip(Container::Wav, 1);
    }

    #[test]
    fn w64_with_32_interleaved_channels_round_trips_bit_exact() {
        round_trip(Container::W64, 32);
    }

    #[test]
    fn wav_carries_a_bext_chunk_with_the_time_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.wav");
        let origination = time::macros::datetime!(2026-11-23 19:30:05 UTC);
        let bext = Bext {
            description: "Hall A, take 7".into(),
            origination,
            time_reference: 3_369_600_000,
        };
        let mut w =
            TrackWriter::create(&path, Container::Wav, 1, 48_000, "Vox", Some(&bext)).unwrap();
        w.write(&[0, 256, 512]).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == b"bext")
            .expect("a bext chunk");
        let body = &bytes[at + 8..];
        assert!(body.starts_with(b"Hall A, take 7"));
        assert_eq!(&body[256 + 32 + 32..256 + 32 + 32 + 10], b"2026-11-23");
        assert_eq!(&body[256 + 32 + 32 + 10..256 + 32 + 32 + 18], b"19:30:05");
        let tr = u64::from_le_bytes(body[338..346].try_into().unwrap());
        assert_eq!(tr, 3_369_600_000);
    }

    /// A console channel's name and number reach a WAV's `INFO` chunk
    /// (`INAM`, `ICMT`) and a FLAC's Vorbis comments.
    #[test]
    fn the_title_and_comment_are_in_wav_info_and_flac_comments() {
        let dir = tempfile::tempdir().unwrap();
        let comment = "X32 \"FOH\" ch 17 \"Pastor\"";
        for (name, container) in [("c.wav", Container::Wav), ("c.flac", Container::Flac)] {
            let path = dir.path().join(name);
            let mut w = TrackWriter::create_tagged(
                &path,
                container,
                1,
                48_000,
                "Pastor",
                Some(comment),
                None,
            )
            .unwrap();
            w.write(&[0, 256, 512]).unwrap();
            w.finish().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
            assert!(has(comment.as_bytes()), "{name}: the comment");
            assert!(has(b"Pastor"), "{name}: the title");
            if container == Container::Wav {
                assert!(
                    has(b"INFO") && has(b"ICMT") && has(b"INAM"),
                    "{name}: an INFO chunk"
                );
            } else {
                // NOTE: FFmpeg writes its `comment` key as the Vorbis
                // comment field DESCRIPTION (and reads it back as `comment`).
                assert!(has(b"DESCRIPTION=X32"), "{name}: a Vorbis comment");
            }
        }
    }
}
