//! Recording numbers, each against a reference tool measured in the same
//! run on the same input (`cargo bench -p rakkr-e2e --bench recording`):
//!
//! 1. Writer CPU time for 60 s × 32 ch × 48 kHz of 24-bit pink noise into 32
//!    mono FLAC files: the agent's writer (`encode`, the same `Take` code a
//!    live take runs) vs the `ffmpeg` CLI doing the same job from the same
//!    raw file (one `-af pan=mono|c0=cN` output per channel). Goal ≤ 0.8×.
//!    The same for 24-bit WAV (goal ≤ 1.0×). The agent runs as a live take
//!    does (`--threads auto`: one encoder thread while it keeps up), and
//!    again on every core (`--threads N`) for the wall time with all cores.
//!    Medians of `BENCH_RUNS` (default 3) alternating runs.
//! 2. A live take from the paced 32-channel test device: the agent's peak
//!    RSS (goal ≤ 48 MiB) and CPU % vs `arecord` capturing the same device
//!    to WAV for the same time; xruns and gaps in the take (goal: none).
//!
//! 3. A real-time take from the JACK test device (dummy backend, 256-frame
//!    periods, `BENCH_RT_SECS`, default 60; 600 for the 10-minute check):
//!    xruns and gaps (goal: none), agent CPU %.
//!
//! `BENCH_SECS` (default 60) sets the input length and the live take length.
//! Installs the `ffmpeg` CLI with apt-get if it is missing.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use rakkr_e2e::alsa::{PacedFeeder, x32_config_for};

/// (user, system) CPU seconds of every child reaped so far.
fn cpu_children() -> (f64, f64) {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    (t(u.user_time()), t(u.system_time()))
}

/// One measured run of a command.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// CPU seconds, user + system.
    cpu: f64,
    /// User CPU seconds alone.
    ///
    /// NOTE: on this project's VMs the system time of a process that writes
    /// a few hundred MB without fsync varies several-fold from run to run
    /// (the ffmpeg CLI's: 0.3 to 4.3 s for the same FLAC job, in the same
    /// sequence of runs), while user time stays within a few percent; the
    /// user-only ratio is printed beside the goal's.
    user: f64,
    wall: f64,
    /// Peak RSS, KiB.
    rss: u64,
}

/// Runs `cmd` to completion and measures it.
/// Also prints the largest anonymous and file-backed RSS seen (KiB).
fn measure(mut cmd: Command) -> Run {
    let before = cpu_children();
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0;
    let (mut anon, mut file) = (0u64, 0u64);
    let field = |s: &str, name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            hwm = hwm.max(field(&s, "VmHWM:"));
            anon = anon.max(field(&s, "RssAnon:"));
            file = file.max(field(&s, "RssFile:"));
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    if hwm > 8 * 1024 {
        println!(
            "       (peak RSS {} MiB: anonymous up to {} MiB, file-backed up to {} MiB)",
            hwm >> 10,
            anon >> 10,
            file >> 10
        );
    }
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    let after = cpu_children();
    Run {
        cpu: (after.0 - before.0) + (after.1 - before.1),
        user: after.0 - before.0,
        wall: t.elapsed().as_secs_f64(),
        rss: hwm,
    }
}

/// 24-bit pink noise (Paul Kellet's refined filter over xorshift white
/// noise) at about -12 dBFS, independent per channel, as raw S32_LE.
fn write_pink(path: &Path, channels: usize, frames: usize) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut seeds: Vec<u64> = (0..channels)
        .map(|c| 0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) * 0xBF58_476D_1CE4_E5B9))
        .collect();
    let mut state = vec![[0f64; 7]; channels];
    for _ in 0..frames {
        for c in 0..channels {
            let s = &mut seeds[c];
            *s ^= *s << 13;
            *s ^= *s >> 7;
            *s ^= *s << 17;
            let white = (*s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let b = &mut state[c];
            b[0] = 0.99886 * b[0] + white * 0.0555179;
            b[1] = 0.99332 * b[1] + white * 0.0750759;
            b[2] = 0.96900 * b[2] + white * 0.1538520;
            b[3] = 0.86650 * b[3] + white * 0.3104856;
            b[4] = 0.55000 * b[4] + white * 0.5329522;
            b[5] = -0.7616 * b[5] - white * 0.0168980;
            let pink = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + white * 0.5362;
            b[6] = white * 0.115926;
            let v = ((pink * 0.05).clamp(-1.0, 1.0) * 8_388_607.0) as i32;
            f.write_all(&(v << 8).to_le_bytes()).unwrap();
        }
    }
    f.flush().unwrap();
}

fn ffmpeg_cmd(input: &Path, out: &Path, codec: &str, ext: &str) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args([
        "-v", "error", "-y", "-f", "s32le", "-ar", "48000", "-ac", "32", "-i",
    ])
    .arg(input);
    for n in 0..32 {
        c.args([
            "-map",
            "0:a",
            "-af",
            &format!("pan=mono|c0=c{n}"),
            "-c:a",
            codec,
        ]);
        if codec == "flac" {
            c.args(["-sample_fmt", "s32", "-bits_per_raw_sample", "24"]);
        }
        c.arg(out.join(format!("{n:02}.{ext}")));
    }
    c
}

fn main() {
    let secs: usize = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    rakkr_e2e::ensure_tool(&["ffmpeg", "-version"], "ffmpeg");
    let agent = rakkr_e2e::agent_bin();
    println!("agent binary: {}", agent.display());
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("pink.raw");
    write_pink(&raw, 32, secs * 48_000);
    let _ = std::fs::read(&raw); // into the page cache for both sides
    println!(
        "input: {secs} s x 32 ch x 48 kHz, 24-bit pink noise ({} MB raw)",
        std::fs::metadata(&raw).unwrap().len() >> 20
    );
    let env: HashMap<String, String> = HashMap::from([
        (
            "RAKKR_STATE_DIR".into(),
            tmp.path().join("state").display().to_string(),
        ),
        ("RAKKR_STORAGE_MIN_FREE_MB".into(), "64".into()),
        ("RAKKR_STORAGE_STOP_FREE_MB".into(), "32".into()),
        ("RAKKR_CONFIG".into(), "/dev/null".into()),
        ("RAKKR_LOG".into(), "warn".into()),
    ]);

    // NOTE: this machine is shared and noisy (one run of the same job has
    // varied by ±15 %); each side runs `BENCH_RUNS` times, alternating, and
    // the medians are compared.
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("\n1. writer: 32 mono files from the same raw file (median of {runs} runs each)");
    println!(
        "{:<6} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "format", "agent CPU s", "ffmpeg CPU s", "agent wall s", "ffmpeg wall", "CPU ratio"
    );
    for (fmt, codec, ext, goal) in [
        ("flac", "flac", "flac", 0.8),
        ("wav", "pcm_s24le", "wav", 1.0),
    ] {
        let ours_dir = tmp.path().join(format!("ours-{fmt}"));
        let theirs_dir = tmp.path().join(format!("ffmpeg-{fmt}"));
        // `threads`: "auto" is what a live take does (one encoder thread
        // while it keeps up); a number spreads over that many cores.
        let ours = |threads: &str| {
            let _ = std::fs::remove_dir_all(&ours_dir);
            let mut c = Command::new(&agent);
            c.env_clear()
                .envs(&env)
                .args([
                    "encode",
                    "--channels",
                    "32",
                    "--format",
                    fmt,
                    "--take-id",
                    "bench",
                    "--segment",
                    "1h",
                    "--threads",
                    threads,
                    "--input",
                ])
                .arg(&raw)
                .arg("--output")
                .arg(&ours_dir);
            measure(c)
        };
        let theirs = || {
            let _ = std::fs::remove_dir_all(&theirs_dir);
            std::fs::create_dir_all(&theirs_dir).unwrap();
            measure(ffmpeg_cmd(&raw, &theirs_dir, codec, ext))
        };
        let (mut o, mut f, mut all) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            o.push(ours("auto"));
            f.push(theirs());
            all.push(ours(&cores.to_string()));
        }
        let med = |v: &[Run], pick: fn(&Run) -> f64| -> f64 {
            let mut x: Vec<f64> = v.iter().map(pick).collect();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        let (oc, ow, ou) = (med(&o, |r| r.cpu), med(&o, |r| r.wall), med(&o, |r| r.user));
        let (fc, fw, fu) = (med(&f, |r| r.cpu), med(&f, |r| r.wall), med(&f, |r| r.user));
        let (ac, aw) = (med(&all, |r| r.cpu), med(&all, |r| r.wall));
        let ratio = oc / fc;
        println!(
            "{fmt:<6} {oc:>12.2} {fc:>12.2} {ow:>12.2} {fw:>12.2} {ratio:>9.2}x  (goal <= {goal}x: {})",
            if ratio <= goal { "met" } else { "NOT met" }
        );
        println!(
            "       user CPU alone: agent {ou:.2} s, ffmpeg {fu:.2} s: {:.2}x",
            ou / fu
        );
        let spread = |v: &[Run]| {
            v.iter()
                .map(|r| format!("{:.2} ({:.2} user)", r.cpu, r.user))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "       each run's CPU s: agent {}; ffmpeg {}",
            spread(&o),
            spread(&f)
        );
        println!(
            "       agent on all {cores} cores (--threads {cores}): wall {aw:.2} s, CPU {ac:.2} s ({:.2}x the CLI's CPU)",
            ac / fc
        );
        // The agent also hashes every file for the manifest and fsyncs as it
        // goes (at most 1 s at risk); the CLI does neither. The same work
        // done after it with coreutils shows what that costs.
        let mut finish = Command::new("sh");
        finish
            .arg("-c")
            .arg("sha256sum \"$0\"/* >/dev/null && sync \"$0\"/*")
            .arg(&theirs_dir);
        let Run {
            cpu: hc, wall: hw, ..
        } = measure(finish);
        println!(
            "       ffmpeg + sha256sum + sync: CPU {:.2} s, wall {:.2} s; agent / that: {:.2}x",
            fc + hc,
            fw + hw,
            oc / (fc + hc)
        );
        let size = |d: &Path| -> u64 { walk(d) };
        println!(
            "       output bytes: agent {} MB, ffmpeg {} MB",
            size(&ours_dir.join("bench")) >> 20,
            size(&theirs_dir) >> 20
        );
        let _ = std::fs::remove_dir_all(&ours_dir);
        let _ = std::fs::remove_dir_all(&theirs_dir);
    }

    println!("\n2. live: {secs} s from the paced 32-channel device (FLAC)");
    let live = |name: &str, make: &dyn Fn(&Path, &HashMap<String, String>) -> Command| -> Run {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("x32.fifo");
        let _feeder = PacedFeeder::start(
            &fifo,
            32,
            48_000,
            512,
            Duration::from_secs(secs as u64 + 60),
        );
        let mut e = env.clone();
        e.insert("ALSA_CONFIG_PATH".into(), x32_config_for(&dir, &fifo));
        e.insert("RAKKR_CAPTURE_BUFFER_FRAMES".into(), "512".into());
        measure(make(&dir, &e))
    };
    let Run {
        cpu: ac,
        wall: aw,
        rss: arss,
        ..
    } = live("agent", &|dir, e| {
        let mut c = Command::new(&agent);
        c.env_clear()
            .envs(e)
            .args([
                "record",
                "--device",
                "x32file",
                "--format",
                "flac",
                "--take-id",
                "live",
                "--duration",
                &format!("{secs}s"),
                "--output",
            ])
            .arg(dir);
        c
    });
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("agent/live/manifest.json")).unwrap(),
    )
    .unwrap();
    let Run {
        cpu: rc,
        wall: rw,
        rss: rrss,
        ..
    } = live("arecord", &|dir, e| {
        let mut c = Command::new("arecord");
        c.env_clear()
            .envs(e)
            .args([
                "-q",
                "-D",
                "x32file",
                "-c",
                "32",
                "-f",
                "S32_LE",
                "-r",
                "48000",
                "--period-size=512",
                "--buffer-size=2048",
                "-d",
                &secs.to_string(),
                "-t",
                "wav",
            ])
            .arg(dir.join("out.wav"));
        c
    });
    println!(
        "{:<10} {:>10} {:>10} {:>12}",
        "", "CPU %", "wall s", "peak RSS MiB"
    );
    println!(
        "{:<10} {:>10.1} {:>10.1} {:>12.1}",
        "agent",
        100.0 * ac / aw,
        aw,
        arss as f64 / 1024.0
    );
    println!(
        "{:<10} {:>10.1} {:>10.1} {:>12.1}",
        "arecord",
        100.0 * rc / rw,
        rw,
        rrss as f64 / 1024.0
    );
    println!(
        "agent/arecord CPU ratio {:.2}x; agent peak RSS {:.1} MiB (goal <= 48: {})",
        (ac / aw) / (rc / rw),
        arss as f64 / 1024.0,
        if arss <= 48 * 1024 { "met" } else { "NOT met" }
    );
    println!(
        "take: {} frames, {} xruns, {} gaps (goal: 0 and 0)",
        m["frames"],
        m["xruns"],
        m["gaps"].as_array().map_or(0, Vec::len)
    );
    let rt: u64 = std::env::var("BENCH_RT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    if is_static(&agent) {
        // NOTE: a static alsa-lib cannot dlopen the `jack` PCM plugin.
        println!(
            "\n3. real time: skipped: {} is static and cannot load ALSA's jack plugin; run the bench without RAKKR_E2E_AGENT_BIN for it",
            agent.display()
        );
        return;
    }
    realtime(&agent, tmp.path(), &env, rt);
}

/// Whether `bin` is a static ELF executable (no PT_INTERP program header).
fn is_static(bin: &Path) -> bool {
    let elf = std::fs::read(bin).unwrap();
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(54), u16_at(56));
    // PT_INTERP = 3: the dynamic loader a dynamic executable names.
    !(0..count).any(|i| u32::from_le_bytes(elf[phoff + i * size..][..4].try_into().unwrap()) == 3)
}

/// Section 3: a long take from the JACK device.
fn realtime(agent: &Path, tmp: &Path, env: &HashMap<String, String>, secs: u64) {
    let dir = tmp.join("rt");
    std::fs::create_dir_all(&dir).unwrap();
    let jack =
        rakkr_e2e::jack::JackDevice::start(Path::new(env!("CARGO_BIN_EXE_rakkr-jack-feeder")));
    let mut c = Command::new(agent);
    c.env_clear()
        .envs(env)
        .envs(jack.env(&dir))
        .env("RAKKR_CAPTURE_BUFFER_FRAMES", "256")
        .args([
            "record",
            "--device",
            "x32jack",
            "--format",
            "flac",
            "--take-id",
            "rt",
            "--duration",
            &format!("{secs}s"),
            "--output",
        ])
        .arg(&dir);
    let Run { cpu, wall, rss, .. } = measure(c);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("rt/manifest.json")).unwrap()).unwrap();
    println!(
        "\n3. real time: {secs} s take from the JACK device: {} frames, {} xruns, {} gaps (goal: 0 and 0); agent CPU {:.1} %, peak RSS {:.1} MiB",
        m["frames"],
        m["xruns"],
        m["gaps"].as_array().map_or(0, Vec::len),
        100.0 * cpu / wall,
        rss as f64 / 1024.0
    );
    drop(jack);
}

fn walk(d: &Path) -> u64 {
    std::fs::read_dir(d).map_or(0, |r| {
        r.flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}
