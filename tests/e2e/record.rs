//! `record` from the ALSA `file`-plugin device: 32 channels at 48 kHz,
//! 24-bit content in S32, a known signal per channel; what the agent wrote,
//! decoded independently, must equal the input bit for bit.

use std::collections::HashMap;

use rakkr_e2e::agent::run_agent;
use rakkr_e2e::alsa::{write_x32_signal, x32_config_for, x32_sample};
use rakkr_e2e::init_logging;
use sha2::{Digest, Sha256};

#[test]
fn record_flac_is_bit_exact_on_every_channel_and_the_manifest_matches_the_files() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let infile = tmp.path().join("x32.raw");
    // The plugin is unpaced: give it more than the take needs.
    write_x32_signal(&infile, 32, 60_000);
    let env = HashMap::from([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            x32_config_for(tmp.path(), &infile),
        ),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().join("state").display().to_string(),
        ),
    ]);
    let out_dir = tmp.path().join("takes");
    let out = run_agent(
        &[
            "record",
            "--duration",
            "1s",
            "--device",
            "x32file",
            "--take-id",
            "t1",
            "--output",
            out_dir.to_str().unwrap(),
        ],
        &env,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "record failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let take = out_dir.join("t1");
    assert!(
        stdout.contains(&format!(
            "manifest: {}",
            take.join("manifest.json").display()
        )),
        "{stdout}"
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(take.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["frames"], 48_000);
    assert_eq!(manifest["channels"], 32);
    assert_eq!(manifest["sampleRate"], 48_000);
    assert_eq!(manifest["gaps"], serde_json::json!([]));
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 32);
    for (c, f) in files.iter().enumerate() {
        let path = take.join(f["file"].as_str().unwrap());
        assert_eq!(f["channel"], c + 1);
        assert_eq!(f["samples"], 48_000);
        assert_eq!(f["firstSample"], 0);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes)),
            "{}",
            path.display()
        );
        let decoded = rakkr_e2e::decode::mono_i32(&path);
        assert_eq!(decoded.len(), 48_000, "{}", path.display());
        for (n, s) in decoded.iter().enumerate() {
            assert_eq!(
                *s,
                x32_sample(c, n as u64),
                "channel {} frame {n} in {}",
                c + 1,
                path.display()
            );
        }
    }
}

#[test]
fn record_from_a_missing_device_exits_8_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let env = HashMap::from([(
        "RAKKR_STATE_DIR".to_owned(),
        tmp.path().display().to_string(),
    )]);
    let out = run_agent(
        &[
            "record",
            "--duration",
            "1s",
            "--device",
            "no-such-pcm",
            "--output",
            tmp.path().to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-pcm"));
}
