//! Decodes what the agent wrote with FFmpeg's libraries (ffmpeg-next),
//! independently of the agent's encoder settings.

use std::path::Path;

use ffmpeg_next::{codec, format, frame, media};

/// Decodes the first audio stream of `path`, handing each decoded frame
/// to `each`; panics (a test helper) on anything unreadable.
fn decode_frames(path: &Path, mut each: impl FnMut(&frame::Audio)) {
    let _ = ffmpeg_next::init();
    let mut ictx =
        format::input(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let stream = ictx
        .streams()
        .best(media::Type::Audio)
        .expect("an audio stream");
    let idx = stream.index();
    let mut dec = codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .expect("a decoder");
    let mut f = frame::Audio::empty();
    let mut take = |dec: &mut ffmpeg_next::decoder::Audio| {
        while dec.receive_frame(&mut f).is_ok() {
            each(&f);
        }
    };
    for (s, pkt) in ictx.packets() {
        if s.index() == idx {
            dec.send_packet(&pkt).expect("decoding");
            take(&mut dec);
        }
    }
    dec.send_eof().expect("flushing the decoder");
    take(&mut dec);
}

/// All samples of the first audio stream of `path` as interleaved
/// left-justified i32, with the channel count.
pub fn interleaved_i32(path: &Path) -> (u16, Vec<i32>) {
    let (mut out, mut channels) = (Vec::new(), 0u16);
    decode_frames(path, |f| {
        channels = f.channels();
        let ch = usize::from(channels);
        if f.is_planar() {
            for i in 0..f.samples() {
                for c in 0..ch {
                    out.push(f.plane::<i32>(c)[i]);
                }
            }
        } else {
            out.extend_from_slice(&f.plane::<i32>(0)[..f.samples() * ch]);
        }
    });
    (channels, out)
}

/// All samples of the first audio stream of `path` as interleaved floats
/// in -1..1, whatever the decoder's sample format (lossy codecs decode to
/// float), with the channel count.
pub fn interleaved_f64(path: &Path) -> (u16, Vec<f64>) {
    let (mut out, mut channels) = (Vec::new(), 0u16);
    decode_frames(path, |f| {
        channels = f.channels();
        let ch = usize::from(channels);
        let planar = f.is_planar();
        let at = |c: usize, i: usize| -> f64 {
            let (plane, k) = if planar { (c, i) } else { (0, i * ch + c) };
            match f.format() {
                format::Sample::F32(_) => f64::from(f.plane::<f32>(plane)[k]),
                format::Sample::F64(_) => f.plane::<f64>(plane)[k],
                format::Sample::I16(_) => f64::from(f.plane::<i16>(plane)[k]) / 32_768.0,
                format::Sample::I32(_) => f64::from(f.plane::<i32>(plane)[k]) / 2_147_483_648.0,
                other => panic!("{other:?} samples"),
            }
        };
        for i in 0..f.samples() {
            for c in 0..ch {
                out.push(at(c, i));
            }
        }
    });
    (channels, out)
}

/// The largest normalised correlation of `got` (a decoded channel) with
/// `want` over lags of 0 to `max_lag` frames (a lossy encoder's delay).
pub fn best_correlation(want: &[f64], got: &[f64], max_lag: usize) -> f64 {
    (0..=max_lag)
        .map(|lag| {
            let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
            for (n, x) in want.iter().enumerate() {
                let y = got.get(n + lag).copied().unwrap_or(0.0);
                xy += x * y;
                xx += x * x;
                yy += y * y;
            }
            xy / (xx * yy).sqrt().max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max)
}
