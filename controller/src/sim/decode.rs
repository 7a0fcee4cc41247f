//! Decodes what the agent wrote with FFmpeg's libraries (ffmpeg-next),
//! independently of the agent's encoder settings.

use std::path::Path;

use ffmpeg_next::{codec, format, frame, media};

/// All samples of the first audio stream of `path` as interleaved
/// left-justified i32, with the channel count.
pub fn interleaved_i32(path: &Path) -> (u16, Vec<i32>) {
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
    let mut out = Vec::new();
    let mut channels = 0u16;
    let mut f = frame::Audio::empty();
    let mut take = |dec: &mut ffmpeg_next::decoder::Audio, out: &mut Vec<i32>| {
        while dec.receive_frame(&mut f).is_ok() {
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
        }
    };
    for (s, pkt) in ictx.packets() {
        if s.index() == idx {
            dec.send_packet(&pkt).expect("decoding");
            take(&mut dec, &mut out);
        }
    }
    dec.send_eof().expect("flushing the decoder");
    take(&mut dec, &mut out);
    (channels, out)
}
