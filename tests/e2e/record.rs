//! `record` from the ALSA `file`-plugin device: 32 channels at 48 kHz,
//! 24-bit content in S32, a known signal per channel. What the agent wrote,
//! decoded independently and segments concatenated, must equal the input
//! bit for bit, for every format.

use std::collections::HashMap;
use std::path::Path;

use rakkr_e2e::agent::run_agent;
use rakkr_e2e::alsa::{write_x32_signal, x32_config_for, x32_sample};
use rakkr_e2e::init_logging;
use sha2::{Digest, Sha256};

const FRAMES: u64 = 48_000;

/// Records 1 s in `format` with 0.3 s segments; checks manifest and audio.
fn record_and_check(format: &str) {
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
    let args = [
        "record",
        "--duration",
        "1s",
        "--segment",
        "300ms",
        "--format",
        format,
        "--device",
        "x32file",
        "--take-id",
        "t1",
    ];
    let out = run_agent(
        &[&args[..], &["--output", out_dir.to_str().unwrap()]].concat(),
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
    assert_eq!(manifest["frames"], FRAMES);
    assert_eq!(manifest["channels"], 32);
    assert_eq!(manifest["format"], format);
    assert_eq!(manifest["segments"], 4, "1 s in 0.3 s segments");
    assert_eq!(manifest["gaps"], serde_json::json!([]));
    // Per channel, the concatenation of its segments, checked against the input.
    let mut per_channel: Vec<Vec<i32>> = vec![Vec::new(); 32];
    let mut expected_first = HashMap::<u64, u64>::new();
    for f in manifest["files"].as_array().unwrap() {
        let path = take.join(f["file"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            f["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes)),
            "{}",
            path.display()
        );
        let channels: Vec<usize> = f["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as usize)
            .collect();
        let (ch, samples) = rakkr_e2e::decode::interleaved_i32(&path);
        assert_eq!(usize::from(ch), channels.len(), "{}", path.display());
        assert_eq!(
            samples.len() as u64,
            f["samples"].as_u64().unwrap() * u64::from(ch),
            "{}",
            path.display()
        );
        let first = f["firstSample"].as_u64().unwrap();
        let seg = f["segment"].as_u64().unwrap();
        assert_eq!(
            *expected_first.entry(seg).or_insert(first),
            first,
            "one start per segment"
        );
        for (i, s) in samples.iter().enumerate() {
            let c = channels[i % channels.len()] - 1;
            assert_eq!(
                per_channel[c].len() as u64,
                first + (i / channels.len()) as u64,
                "segments are in order and continuous"
            );
            per_channel[c].push(*s);
        }
    }
    for (c, got) in per_channel.iter().enumerate() {
        assert_eq!(got.len() as u64, FRAMES, "channel {}", c + 1);
        if let Some(n) = (0..FRAMES).find(|&n| got[n as usize] != x32_sample(c, n)) {
            panic!("channel {} differs from the input at frame {n}", c + 1);
        }
    }
    if format == "wav" {
        assert_bext(&take, &manifest);
    }
}

/// Each WAV segment's bext time reference is its first sample's time of day.
fn assert_bext(take: &Path, manifest: &serde_json::Value) {
    let mut refs = HashMap::new();
    for f in manifest["files"].as_array().unwrap() {
        let bytes = std::fs::read(take.join(f["file"].as_str().unwrap())).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == b"bext")
            .expect("bext chunk");
        let tr = u64::from_le_bytes(bytes[at + 8 + 338..at + 8 + 346].try_into().unwrap());
        refs.insert(
            f["segment"].as_u64().unwrap(),
            (tr, f["firstSample"].as_u64().unwrap()),
        );
    }
    let (t1, _) = refs[&1];
    for (tr, first) in refs.values() {
        let expected = t1 + first;
        assert!(
            tr.abs_diff(expected) <= 48,
            "segment time reference {tr} vs {expected}"
        );
    }
}

#[test]
fn record_flac_with_segments_is_bit_exact() {
    record_and_check("flac");
}

#[test]
fn record_bwf_wav_with_segments_is_bit_exact() {
    record_and_check("wav");
}

#[test]
fn record_w64_interleaved_with_segments_is_bit_exact() {
    record_and_check("w64");
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

/// A node without alsa-lib's configuration files (the static binary on a
/// system without libasound2's data): the embedded configuration defines
/// the devices and still reads the user's ~/.asoundrc, here the test device.
#[test]
fn records_without_alsa_lib_configuration_files() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let infile = tmp.path().join("x32.raw");
    write_x32_signal(&infile, 32, 60_000);
    x32_config_for(tmp.path(), &infile);
    std::fs::copy(
        tmp.path().join("x32file.conf"),
        tmp.path().join(".asoundrc"),
    )
    .unwrap();
    let env = HashMap::from([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            "/nonexistent/alsa.conf".to_owned(),
        ),
        ("HOME".to_owned(), tmp.path().display().to_string()),
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
            "500ms",
            "--format",
            "wav",
            "--device",
            "x32file",
            "--take-id",
            "t-noconf",
            "--output",
            out_dir.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("t-noconf/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["frames"], 24_000);
    let frames = rakkr_e2e::takecheck::check_content(&out_dir.join("t-noconf"), &m, &[]);
    assert_eq!(frames, 24_000);
}
