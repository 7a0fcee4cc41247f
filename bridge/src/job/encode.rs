//! The encoder end of a render: one file written with ffmpeg-next, a
//! frame of samples (one per output channel, left-justified 24-bit in
//! i32) at a time. 24-bit FLAC and WAV take packed i32 (the encoders store
//! the top 24 bits); LAME takes planar i32. A fresh frame follows every
//! encode, as the encoder may still hold the last one's buffers.

use std::path::Path;

use anyhow::{Context, anyhow};
use ffmpeg_next::{ChannelLayout, Packet, Rational, codec, encoder, format, frame};

use super::plan::Codec;

/// Frames per encoder call for codecs without a frame size (PCM).
const PCM_FRAMES: usize = 4096;

/// An encoder writing one file.
pub(super) struct Writer {
    output: format::context::Output,
    encoder: encoder::Audio,
    frame: frame::Audio,
    step: usize,
    filled: usize,
    pts: i64,
    planar: bool,
    channels: usize,
}

fn layout(n: usize) -> ChannelLayout {
    match n {
        1 => ChannelLayout::MONO,
        2 => ChannelLayout::STEREO,
        n => ChannelLayout::default(n as i32),
    }
}

impl Writer {
    pub(super) fn create(
        path: &Path,
        c: Codec,
        channels: usize,
        rate: u32,
    ) -> anyhow::Result<Self> {
        let mut output = format::output_as(path, c.extension())
            .with_context(|| format!("creating {}", path.display()))?;
        let (found, sample) = match c {
            Codec::Flac => (encoder::find(codec::Id::FLAC), format::sample::Type::Packed),
            Codec::Wav => (
                encoder::find(codec::Id::PCM_S24LE),
                format::sample::Type::Packed,
            ),
            Codec::Mp3 { .. } => (
                encoder::find_by_name("libmp3lame"),
                format::sample::Type::Planar,
            ),
        };
        let found = found.ok_or_else(|| anyhow!("this FFmpeg has no {} encoder", c.extension()))?;
        let mut enc = codec::context::Context::new_with_codec(found)
            .encoder()
            .audio()?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout(channels));
        enc.set_format(format::Sample::I32(sample));
        enc.set_time_base(Rational::new(1, rate as i32));
        if let Codec::Mp3 { kbps, vbr } = c {
            if vbr {
                // LAME's -V scale from the bitrate, as Rakkr's agent maps it;
                // FFmpeg takes it as global_quality in lambda units (118).
                let q: u32 = match kbps {
                    245.. => 0,
                    225..=244 => 1,
                    190..=224 => 2,
                    175..=189 => 3,
                    165..=174 => 4,
                    128..=164 => 5,
                    112..=127 => 6,
                    96..=111 => 7,
                    80..=95 => 8,
                    _ => 9,
                };
                enc.set_flags(codec::Flags::QSCALE);
                enc.set_quality(q as usize * 118);
            } else {
                enc.set_bit_rate(kbps as usize * 1000);
            }
        }
        let encoder = enc
            .open_as(found)
            .with_context(|| format!("opening the {} encoder", c.extension()))?;
        {
            let mut st = output.add_stream(found)?;
            st.set_parameters(&encoder);
            st.set_time_base(Rational::new(1, rate as i32));
        }
        output
            .write_header()
            .with_context(|| format!("writing the header of {}", path.display()))?;
        let step = match encoder.frame_size() as usize {
            0 => PCM_FRAMES,
            n => n,
        };
        let mut frame = frame::Audio::new(format::Sample::I32(sample), step, layout(channels));
        frame.set_rate(rate);
        Ok(Self {
            output,
            encoder,
            frame,
            step,
            filled: 0,
            pts: 0,
            planar: sample == format::sample::Type::Planar,
            channels,
        })
    }

    /// Adds one frame of samples (one per output channel).
    pub(super) fn push(&mut self, samples: &[i32]) -> anyhow::Result<()> {
        let i = self.filled;
        if self.planar {
            for (c, s) in samples.iter().enumerate() {
                self.frame.plane_mut::<i32>(c)[i] = *s;
            }
        } else {
            let n = self.channels;
            self.frame.plane_mut::<i32>(0)[i * n..(i + 1) * n].copy_from_slice(samples);
        }
        self.filled += 1;
        if self.filled == self.step {
            self.encode()?;
        }
        Ok(())
    }

    fn encode(&mut self) -> anyhow::Result<()> {
        if self.filled < self.step {
            self.frame.set_samples(self.filled);
        }
        self.frame.set_pts(Some(self.pts));
        self.pts += self.filled as i64;
        self.filled = 0;
        self.encoder.send_frame(&self.frame)?;
        self.drain()?;
        // NOTE: the encoder may still hold the old buffers: a fresh frame.
        let mut f = frame::Audio::new(self.frame.format(), self.step, layout(self.channels));
        f.set_rate(self.frame.rate());
        self.frame = f;
        Ok(())
    }

    fn drain(&mut self) -> anyhow::Result<()> {
        let tb = self.encoder.time_base();
        let st = self.output.stream(0).map_or(tb, |s| s.time_base());
        let mut p = Packet::empty();
        while self.encoder.receive_packet(&mut p).is_ok() {
            p.set_stream(0);
            p.rescale_ts(tb, st);
            p.write_interleaved(&mut self.output)?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        if self.filled > 0 {
            self.encode()?;
        }
        self.encoder.send_eof()?;
        self.drain()?;
        self.output.write_trailer()?;
        Ok(())
    }
}
