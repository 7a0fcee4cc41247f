//! Damaged takes, with the real agent and the real ALSA test devices:
//! recovery keeps every intact sample of every channel and takes nothing
//! it cannot verify as audio; `takes verify` finds damage to closed files
//! and changes nothing; `encode` refuses input that is not whole frames;
//! a take's status says what ended it; a refused take leaves nothing.

use rakkr_e2e::takecheck::manifest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use rakkr_e2e::agent::{AgentProcess, run_agent};
use rakkr_e2e::alsa::{PacedFeeder, write_x32_signal, x32_config_for};
use rakkr_e2e::init_logging;

fn paced_env(tmp: &Path, fifo: &Path) -> HashMap<String, String> {
    HashMap::from([
        ("ALSA_CONFIG_PATH".to_owned(), x32_config_for(tmp, fifo)),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.join("state").display().to_string(),
        ),
        ("RAKKR_STORAGE_MIN_FREE_MB".to_owned(), "16".to_owned()),
        ("RAKKR_STORAGE_STOP_FREE_MB".to_owned(), "8".to_owned()),
        ("RAKKR_CAPTURE_BUFFER_FRAMES".to_owned(), "512".to_owned()),
    ])
}

/// A take `kill -9`ed in its second segment, as the crash left it, and
/// an undamaged copy of it (`reference`) to compare recoveries with.
struct Crashed {
    _tmp: tempfile::TempDir,
    take: PathBuf,
    reference: PathBuf,
    env: HashMap<String, String>,
    /// What the simulated console dropped (a late reader on a busy machine).
    drops: Vec<std::ops::Range<u64>>,
}

impl Crashed {
    /// Samples per file once the undamaged copy is recovered.
    fn reference_counts(&self) -> HashMap<String, u64> {
        let out = run_agent(&["recover", self.reference.to_str().unwrap()], &self.env);
        assert!(out.status.success(), "{out:?}");
        content(&self.reference, &manifest(&self.reference), &self.drops)
    }
}

fn crashed(format: &str) -> Crashed {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("x32.fifo");
    let feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(60));
    let out = tmp.path().join("takes");
    let env = paced_env(tmp.path(), &fifo);
    let args = [
        "record",
        "--device",
        "x32file",
        "--format",
        format,
        "--segment",
        "2s",
        "--take-id",
        "crash",
        "--output",
        out.to_str().unwrap(),
    ];
    let mut agent = AgentProcess::spawn_args(&args, &env);
    agent.wait_log(&["segment closed", "segment=1"], 1, Duration::from_secs(30));
    // More than one sync (0.5 s) into segment 2: the header declares audio.
    rakkr_e2e::wait_until(Duration::from_secs(30), "a sync in segment 2", || {
        rakkr_e2e::segment_synced(&out.join("crash"), 2)
    });
    agent.signal(Signal::SIGKILL);
    assert!(agent.wait_exit(Duration::from_secs(5)).is_some());
    let drops = feeder.drops().ranges();
    drop(feeder);
    let take = out.join("crash");
    assert_eq!(manifest(&take)["status"], "recording");
    let reference = tmp.path().join("reference").join("crash");
    std::fs::create_dir_all(&reference).unwrap();
    for e in std::fs::read_dir(&take).unwrap().flatten() {
        std::fs::copy(e.path(), reference.join(e.file_name())).unwrap();
    }
    Crashed {
        _tmp: tmp,
        take,
        reference,
        env,
        drops,
    }
}

/// Decodes every file and checks it against the known signal (from the
/// take's first frame, but for what the device dropped); returns samples
/// per file name.
fn content(
    take: &Path,
    m: &serde_json::Value,
    drops: &[std::ops::Range<u64>],
) -> HashMap<String, u64> {
    rakkr_e2e::takecheck::check_content(take, m, drops);
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["samples"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn open_files(take: &Path) -> Vec<String> {
    manifest(take)["openFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_owned())
        .collect()
}

fn recover(c: &Crashed) -> std::process::Output {
    run_agent(&["recover", c.take.to_str().unwrap()], &c.env)
}

#[test]
fn recovery_keeps_every_intact_sample_of_the_other_channels_when_one_is_cut() {
    let c = crashed("flac");
    let open = open_files(&c.take);
    let victim = c.take.join(&open[4]);
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = recover(&c);
    assert!(out.status.success(), "{out:?}");
    let m = manifest(&c.take);
    assert_eq!(m["status"], "recovered");
    let got = content(&c.take, &m, &c.drops);
    let want = c.reference_counts();
    for f in open.iter().filter(|f| *f != &open[4]) {
        assert_eq!(
            got[f], want[f],
            "{f}: the cut channel costs the others nothing"
        );
    }
    assert!(want[&open[0]] > 20_000, "{want:?}");
    assert!(
        got[&open[4]] < want[&open[4]],
        "the cut channel keeps what it holds"
    );
    let actions = m["recovery"]["actions"].to_string();
    assert!(actions.contains("shorter than the longest"), "{actions}");
}

#[test]
fn garbage_after_the_last_flac_frame_is_set_aside_and_costs_no_other_channel() {
    let c = crashed("flac");
    let open = open_files(&c.take);
    // Pseudo-random bytes appended after whatever the crash left.
    let victim = c.take.join(&open[7]);
    let mut garbage: Vec<u8> = (0..5_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.append(&mut garbage);
    std::fs::write(&victim, bytes).unwrap();
    let out = recover(&c);
    assert!(out.status.success(), "{out:?}");
    let m = manifest(&c.take);
    let got = content(&c.take, &m, &c.drops);
    let want = c.reference_counts();
    for f in open.iter().filter(|f| *f != &open[7]) {
        assert_eq!(
            got[f], want[f],
            "{f}: the damaged channel costs the others nothing"
        );
    }
    assert_eq!(
        got[&open[7]], want[&open[7]],
        "garbage is never audio, and it costs the damaged channel no intact frame"
    );
    let aside = std::fs::metadata(c.take.join(format!("{}.unverified", open[7]))).unwrap();
    assert!(
        aside.len() >= 5_000,
        "the garbage is kept aside, not deleted"
    );
}

#[test]
fn garbage_appended_to_open_wav_files_is_not_taken_as_audio() {
    let c = crashed("wav");
    let open = open_files(&c.take);
    for f in &open {
        let mut bytes = std::fs::read(c.take.join(f)).unwrap();
        bytes.extend((0..30_000u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8));
        std::fs::write(c.take.join(f), bytes).unwrap();
    }
    let out = recover(&c);
    assert!(out.status.success(), "{out:?}");
    let m = manifest(&c.take);
    assert_eq!(m["status"], "recovered");
    // Bit-exact to the signal: not one garbage byte became audio, and
    // every file keeps what it held before the garbage came.
    let got = content(&c.take, &m, &c.drops);
    let want = c.reference_counts();
    for f in &open {
        assert_eq!(got[f], want[f], "{f}");
        assert!(got[f] > 0, "{f}: the synced audio is kept");
    }
    for f in &open {
        let aside = std::fs::metadata(c.take.join(format!("{f}.unverified"))).unwrap();
        assert!(aside.len() >= 30_000, "{f}: set aside, not deleted");
    }
    assert!(m["recovery"]["actions"].to_string().contains("last sync"));
}

/// A 1-second take from the unpaced file device.
fn quick_take(tmp: &Path, format: &str) -> (PathBuf, HashMap<String, String>) {
    let infile = tmp.join("x32.raw");
    write_x32_signal(&infile, 32, 60_000);
    let env = HashMap::from([
        ("ALSA_CONFIG_PATH".to_owned(), x32_config_for(tmp, &infile)),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.join("state").display().to_string(),
        ),
        (
            "RAKKR_STORAGE_RECORDINGS_PATH".to_owned(),
            tmp.join("takes").display().to_string(),
        ),
    ]);
    let args = [
        "record",
        "--duration",
        "1s",
        "--segment",
        "400ms",
        "--format",
        format,
        "--device",
        "x32file",
        "--take-id",
        "q",
    ];
    let out = run_agent(&args, &env);
    assert!(out.status.success(), "{out:?}");
    (tmp.join("takes").join("q"), env)
}

#[test]
fn takes_verify_finds_a_truncated_closed_flac_and_changes_nothing() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let (take, env) = quick_take(tmp.path(), "flac");
    let ok = run_agent(&["takes", "verify", "q"], &env);
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok, 96 file(s) checked"));
    let m = manifest(&take);
    let name = m["files"][40]["file"].as_str().unwrap().to_owned();
    let victim = take.join(&name);
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 3_333)
        .unwrap();
    let before = std::fs::read(&victim).unwrap();
    for args in [
        vec!["takes", "verify", take.to_str().unwrap()],
        vec!["takes", "verify"],
        vec!["recover", take.to_str().unwrap()],
    ] {
        let out = run_agent(&args, &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(9), "{args:?}: {out:?}");
        assert!(stdout.contains("DAMAGED"), "{stdout}");
        assert!(
            stdout.contains(&format!("damaged: {name}: SHA-256")),
            "{stdout}"
        );
    }
    assert_eq!(std::fs::read(&victim).unwrap(), before, "kept as it was");
    let json = run_agent(&["takes", "verify", "--json", "q"], &env);
    let r: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(r["problems"].as_array().unwrap().len(), 2, "{r}");
}

#[test]
fn encode_refuses_partial_frames_and_a_wrong_channel_count() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("dump.raw");
    write_x32_signal(&raw, 32, 4_800);
    let mut bytes = std::fs::read(&raw).unwrap();
    bytes.extend_from_slice(&[0; 77]);
    let ragged = tmp.path().join("ragged.raw");
    std::fs::write(&ragged, &bytes).unwrap();
    let env = HashMap::from([(
        "RAKKR_STATE_DIR".to_owned(),
        tmp.path().join("state").display().to_string(),
    )]);
    let encode = |input: &Path, channels: &str, id: &str, extra: &[&str]| {
        let out_dir = tmp.path().join("out");
        let mut args = vec![
            "encode",
            "--input",
            input.to_str().unwrap(),
            "--channels",
            channels,
            "--output",
            out_dir.to_str().unwrap(),
            "--take-id",
            id,
        ];
        args.extend_from_slice(extra);
        run_agent(&args, &env)
    };
    let out = encode(&ragged, "32", "a", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("77 bytes left over") && err.contains("--keep-whole-frames"),
        "{err}"
    );
    assert!(!tmp.path().join("out/a").exists(), "nothing written");
    let out = encode(&raw, "31", "b", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "31 channels of 32-channel data: {out:?}"
    );
    let out = encode(&raw, "0", "c", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = encode(&ragged, "32", "d", &["--keep-whole-frames"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("dropping the last 77 bytes"));
    let m = manifest(&tmp.path().join("out/d"));
    assert_eq!(m["frames"], 4_800);
    assert_eq!(m["status"], "complete");
}

#[test]
fn a_signal_that_cuts_a_timed_take_short_makes_it_stopped_and_says_by_what() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("x32.fifo");
    let _feeder = PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(60));
    let env = paced_env(tmp.path(), &fifo);
    let out = tmp.path().join("takes");
    let args = [
        "record",
        "--device",
        "x32file",
        "--format",
        "wav",
        "--duration",
        "30s",
        "--take-id",
        "cut",
        "--output",
        out.to_str().unwrap(),
    ];
    let mut agent = AgentProcess::spawn_args(&args, &env);
    agent.wait_log(&["take started"], 1, Duration::from_secs(30));
    agent.signal(Signal::SIGTERM);
    let st = agent.wait_exit(Duration::from_secs(20)).expect("it exits");
    assert_eq!(st.code(), Some(8), "a take cut short: {:?}", agent.log());
    let m = manifest(&out.join("cut"));
    assert_eq!(m["status"], "stopped");
    assert_eq!(m["endedBy"], "SIGTERM");
    assert!(
        m["stopReason"]
            .as_str()
            .unwrap()
            .contains("of the 30.0 s asked"),
        "{m}"
    );
}

#[test]
fn a_refused_take_leaves_no_directory_behind() {
    init_logging();
    let tmp = tempfile::tempdir().unwrap();
    let infile = tmp.path().join("x32.raw");
    write_x32_signal(&infile, 32, 60_000);
    let out = tmp.path().join("takes");
    let env = HashMap::from([
        (
            "ALSA_CONFIG_PATH".to_owned(),
            x32_config_for(tmp.path(), &infile),
        ),
        (
            "RAKKR_STATE_DIR".to_owned(),
            tmp.path().join("state").display().to_string(),
        ),
        (
            "RAKKR_STORAGE_MIN_FREE_MB".to_owned(),
            "999999999".to_owned(),
        ),
    ]);
    let args = [
        "record",
        "--duration",
        "1s",
        "--device",
        "x32file",
        "--take-id",
        "refused",
        "--output",
        out.to_str().unwrap(),
    ];
    let r = run_agent(&args, &env);
    assert_eq!(r.status.code(), Some(8), "{r:?}");
    assert!(String::from_utf8_lossy(&r.stderr).contains("storage.min_free_mb"));
    assert!(!out.join("refused").exists(), "no empty take directory");
}
