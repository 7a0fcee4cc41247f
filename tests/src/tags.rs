//! A recording's metadata tags (FLAC Vorbis comments, WAV INFO), read back
//! with FFmpeg: what a DAW or media library shows for the file.

use std::collections::BTreeMap;
use std::path::Path;

/// The container's tags, keys lower-cased.
pub fn of(path: &Path) -> BTreeMap<String, String> {
    ffmpeg_next::init().expect("FFmpeg");
    let ctx = ffmpeg_next::format::input(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    ctx.metadata()
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.to_owned()))
        .collect()
}
