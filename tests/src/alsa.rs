//! ALSA test devices without sound hardware (see shared/notes/alsa-test-device.md).

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Writes an alsa-lib configuration defining `x32file`: a 32-channel
/// capture PCM (the `file` plugin over a `multi` of 32 channels over
/// `null`) that reads raw interleaved S32_LE from `infile`. Returns the
/// value for `ALSA_CONFIG_PATH`.
pub fn x32_config_for(dir: &Path, infile: &Path) -> String {
    let mut bindings = String::new();
    for c in 0..32 {
        let _ = writeln!(bindings, "        {c} {{ slave a channel {c} }}");
    }
    let conf = format!(
        r#"pcm.x32null {{ type null hint {{ show off }} }}
pcm.x32multi {{
    type multi
    hint {{ show off }}
    slaves.a {{ pcm "x32null" channels 32 }}
    bindings {{
{bindings}    }}
}}
pcm.x32file {{
    type file
    slave.pcm "x32multi"
    file "/dev/null"
    infile {{ @func getenv vars [ X32_INFILE ] default "{infile}" }}
    format "raw"
    hint {{ show on description "X32 simulated" }}
}}
"#,
        infile = infile.display()
    );
    let path: PathBuf = dir.join("x32file.conf");
    std::fs::write(&path, conf).expect("writing the ALSA test config");
    format!("/usr/share/alsa/alsa.conf:{}", path.display())
}

/// The known test signal: channel `c` (0-based), frame `n` carries a
/// 24-bit value in an S32 container that names both, so channel order,
/// exact samples and gaps can all be checked.
pub fn x32_sample(c: usize, n: u64) -> i32 {
    (((c as i32) << 18) + (n & 0x3ffff) as i32) << 8
}

/// Writes `frames` frames of the known signal for `channels` channels as
/// raw interleaved S32_LE.
pub fn write_x32_signal(path: &Path, channels: usize, frames: u64) {
    let mut bytes = Vec::with_capacity(frames as usize * channels * 4);
    for n in 0..frames {
        for c in 0..channels {
            bytes.extend_from_slice(&x32_sample(c, n).to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("writing the test signal");
}
