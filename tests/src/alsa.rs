//! ALSA test devices without sound hardware (see shared/notes/alsa-test-device.md).

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Writes an alsa-lib configuration defining `x32file`: a 32-channel
/// capture PCM (the `file` plugin over a `multi` of 32 channels over
/// `null`) that reads raw interleaved S32_LE from `infile`. Returns the
/// value for `ALSA_CONFIG_PATH`.
pub fn x32file_config(dir: &Path, infile: &Path) -> String {
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
