//! Finds and fixes the sizes in a WAV or W64 header whose writer died.
//!
//! FFmpeg leaves placeholders in the sizes it only knows at the end: the
//! RIFF size and the `data` chunk size (WAV: 0xFFFFFFFF; W64: INT64_MAX).
//! The agent overwrites them with the true sizes when it creates a file
//! (no audio yet) and at every sync (`write_sizes`), so after a crash the
//! header says how much audio was made durable; bytes past that cannot be
//! told from damage (PCM has no checksums) and are not taken as audio.
//! Chunks before `data` are complete. Layouts:
//! - WAV (RIFF): `RIFF` u32le size `WAVE`, then chunks of 4-byte id, u32le
//!   size, body padded to even. Sizes exclude the 8-byte chunk header.
//! - W64 (Sony Wave64): 16-byte `riff` GUID, u64le size of the whole file,
//!   16-byte `wave` GUID, then chunks of 16-byte GUID, u64le size including
//!   the 24-byte chunk header, body padded to 8.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, bail};

use super::encoder::Container;

/// The `data` GUID tail shared by every W64 chunk id.
const W64_GUID_TAIL: [u8; 12] = [
    0xf3, 0xac, 0xd3, 0x11, 0x8c, 0xd1, 0x00, 0xc0, 0x4f, 0x8e, 0xdb, 0x8a,
];

/// Where the audio starts and how many bytes of it the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk {
    /// File offset of the chunk header.
    pub header: u64,
    /// File offset of the first audio byte.
    pub start: u64,
    /// Audio bytes present in the file (to its end).
    pub present: u64,
    /// Audio bytes the header's `data` size declares (the length at the
    /// writer's last sync; the placeholder reads as more than any file).
    pub declared: u64,
}

pub fn find_data(path: &Path, container: Container) -> anyhow::Result<DataChunk> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let w64 = container == Container::W64;
    let (mut pos, hdr_len) = if w64 { (40u64, 24u64) } else { (12u64, 8u64) };
    let mut head = [0u8; 24];
    f.read_exact(&mut head[..if w64 { 24 } else { 12 }])
        .with_context(|| format!("{} is shorter than its header", path.display()))?;
    let ok = if w64 {
        &head[..4] == b"riff"
    } else {
        &head[..4] == b"RIFF" && &head[8..12] == b"WAVE"
    };
    if !ok {
        bail!("{} is not a {} file", path.display(), container.extension());
    }
    while pos + hdr_len <= len {
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut head[..hdr_len as usize])?;
        let (is_data, size) = if w64 {
            let size = u64::from_le_bytes(head[16..24].try_into().unwrap_or_default());
            (&head[..4] == b"data" && head[4..16] == W64_GUID_TAIL, size)
        } else {
            let size = u64::from(u32::from_le_bytes(
                head[4..8].try_into().unwrap_or_default(),
            ));
            (&head[..4] == b"data", size + 8)
        };
        if is_data {
            return Ok(DataChunk {
                header: pos,
                start: pos + hdr_len,
                present: len - pos - hdr_len,
                declared: size.saturating_sub(hdr_len),
            });
        }
        if size < hdr_len {
            bail!("{} has a corrupt chunk at byte {pos}", path.display());
        }
        pos += if w64 {
            size.div_ceil(8) * 8
        } else {
            size + (size & 1)
        };
    }
    bail!(
        "{} has no data chunk (it was cut during its header)",
        path.display()
    )
}

/// Keeps `bytes` of audio after `data.start` and writes the true sizes.
pub fn truncate_at(
    path: &Path,
    container: Container,
    data: DataChunk,
    bytes: u64,
) -> anyhow::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // RIFF pads an odd-sized chunk with one zero byte.
    let pad = u64::from(container == Container::Wav && bytes % 2 == 1);
    f.set_len(data.start + bytes + pad)
        .with_context(|| format!("truncating {}", path.display()))?;
    write_sizes(&f, container, data, bytes)
        .with_context(|| format!("writing the sizes of {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

/// Writes the RIFF and `data` sizes for `bytes` of audio into the header
/// (positioned writes: the file's offset, which FFmpeg may share, is not
/// moved). Does not sync.
pub fn write_sizes(
    f: &std::fs::File,
    container: Container,
    data: DataChunk,
    bytes: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let end = data.start + bytes;
    if container == Container::W64 {
        f.write_all_at(&end.to_le_bytes(), 16)?;
        f.write_all_at(&(24 + bytes).to_le_bytes(), data.header + 16)
    } else {
        let pad = u64::from(bytes % 2 == 1);
        let riff = u32::try_from(end + pad - 8)
            .map_err(|_| std::io::Error::other("a WAV over 4 GiB cannot exist"))?;
        f.write_all_at(&riff.to_le_bytes(), 4)?;
        f.write_all_at(&(bytes as u32).to_le_bytes(), data.header + 4)
    }
}
