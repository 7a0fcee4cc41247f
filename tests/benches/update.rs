//! Self-update numbers, each against a reference measured in the same run:
//!
//! 1. `update apply` (verify + install) of a 10 MiB artifact, median of 5,
//!    vs what the Ansible role does today: `sha256sum` + `install -m 0755` +
//!    `sync`.
//! 2. Streamed transfer throughput over the link on loopback (the running
//!    agent pulls `BENCH_UPDATE_MB`, default 256 MiB, from the reference
//!    controller) vs raw TLS 1.3 throughput (same certificates, same
//!    machine, 256 KiB writes). Goal: >= 0.5x and >= 100 MB/s. Also
//!    printed, to show where the time goes: raw TLS written to a file and
//!    hashed the way the agent does it, and the disk's own write + fsync
//!    rate.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rakkr_controller::{Artifact, ControllerEvent};
use rakkr_devpki::Validity;
use rakkr_e2e::agent::{AgentProcess, agent_env};
use rakkr_e2e::update::sha256_hex;
use rakkr_e2e::{TestPki, start_controller, wait_for};
use rakkr_protocol::tls::{self, Identity};
use rakkr_protocol::{CommandBody, EventBody, UpdateOffer, UpdateSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agent = rakkr_e2e::agent_bin();
    let tmp = tempfile::tempdir().unwrap();

    // 1. Verify + install of a 10 MiB artifact: the agent binary padded with
    // zeros (the ELF loader ignores trailing bytes).
    let artifact = tmp.path().join("artifact");
    let mut bytes = std::fs::read(&agent).unwrap();
    bytes.resize(bytes.len().max(10 << 20), 0);
    std::fs::write(&artifact, &bytes).unwrap();
    std::fs::set_permissions(
        &artifact,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sha = sha256_hex(&artifact);
    // A signed release listing it (update apply installs only those).
    let key = rakkr_e2e::update::ReleaseKey::new();
    let version = String::from_utf8_lossy(
        &Command::new(&agent)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_owned();
    let target = rakkr_e2e::agent::target_of(&agent);
    let manifest = rakkr_e2e::update::release_manifest(&version, &target, &agent, &artifact);
    rakkr_e2e::update::signed_manifest(&key, tmp.path(), artifact.clone(), manifest);
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let dir = tmp.path().join(format!("bin{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let state = tmp.path().join(format!("state{i}"));
        let t = Instant::now();
        let out = Command::new(&agent)
            .env_clear()
            .env("RAKKR_CONFIG", "/dev/null")
            .env("RAKKR_STATE_DIR", &state)
            .env("RAKKR_UPDATE_TRUSTED_KEYS", key.public())
            .args([
                "update",
                "apply",
                "--no-restart",
                "--sha256",
                &sha,
                "--artifact",
            ])
            .arg(&artifact)
            .arg("--install-path")
            .arg(dir.join("rakkr-recorder-agent"))
            .output()
            .unwrap();
        ours.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let t = Instant::now();
        let s = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sha256sum '{a}' >/dev/null && install -m 0755 '{a}' '{d}/ref' && sync",
                a = artifact.display(),
                d = dir.display()
            ))
            .status()
            .unwrap();
        reference.push(t.elapsed());
        assert!(s.success());
    }
    let (o, r) = (median(ours), median(reference));
    println!(
        "verify+install: {:.1} MiB artifact, update apply median {:.1} ms (signature, hash, ELF check, --version run, install, fsyncs); sha256sum+install+sync {:.1} ms; ratio {:.2}x",
        bytes.len() as f64 / (1 << 20) as f64,
        o.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3,
        o.as_secs_f64() / r.as_secs_f64()
    );

    // 2. Streamed transfer throughput.
    let mb: usize = std::env::var("BENCH_UPDATE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mb << 20;
    let payload: Arc<Vec<u8>> = Arc::new(
        (0..size)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
            .collect(),
    );
    let pki = TestPki::new();
    let ctl = start_controller(pki.server_config(), |c| {
        c.heartbeat = Duration::from_secs(5)
    })
    .await;
    let h = ctl.handle();
    let mut events = h.subscribe();
    let state = tmp.path().join("node");
    pki.node_trust(&state, "bench-upd", Validity::days(1));
    let key = rakkr_e2e::update::ReleaseKey::new();
    let mut env = agent_env(&state, ctl.local_addr());
    env.insert("RAKKR_UPDATE_TRUSTED_KEYS".into(), key.public().to_owned());
    let _agent = AgentProcess::spawn(&env);
    let target = wait_for(
        &mut events,
        Duration::from_secs(30),
        "Connected",
        |e| match e {
            ControllerEvent::Connected { hello, .. } => Some(hello.build_target.clone()),
            _ => None,
        },
    )
    .await;
    h.publish_artifact(
        "bench",
        Artifact {
            bytes: payload.clone(),
            cut_at: None,
        },
    );
    // A hash that cannot match: the whole artifact streams, then it is refused.
    let offer = UpdateOffer {
        version: "2099.01.01-1".into(),
        target,
        size: size as u64,
        sha256: "00".repeat(32),
        source: UpdateSource::Stream {
            transfer_id: "bench".into(),
        },
        force: false,
        allow_downgrade: false,
    };
    // Signed: a manifest listing that hash, by a key the agent trusts.
    let manifest = format!(
        r#"{{"version":"2099.01.01-1","targets":{{"{}":{{"archive":"bench.tar.gz","archiveSha256":"{}","archiveSize":{size},"binarySha256":"{}","binarySize":1}}}}}}"#,
        offer.target,
        "00".repeat(32),
        "11".repeat(32)
    );
    let signature = key.sign(manifest.as_bytes());
    let answer = h
        .command(
            "bench-upd",
            CommandBody::UpdateSigned(rakkr_protocol::SignedUpdate {
                offer,
                release_manifest: manifest,
                signature,
            }),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        answer.outcome,
        rakkr_protocol::Outcome::Done(rakkr_protocol::Reply::Update(
            rakkr_protocol::UpdateAck::Started
        )),
        "the agent refused the benchmark's offer (BENCH_UPDATE_MB is at most 512)"
    );
    let mut first = None;
    wait_for(
        &mut events,
        Duration::from_secs(600),
        "the end of the transfer",
        |e| match e {
            ControllerEvent::Fetched { .. } => {
                first.get_or_insert_with(Instant::now);
                None
            }
            ControllerEvent::Event { event, .. } => {
                matches!(event.body, EventBody::UpdateFailed { .. }).then_some(())
            }
            _ => None,
        },
    )
    .await;
    let link = first.unwrap().elapsed();
    let link_mbs = size as f64 / link.as_secs_f64() / 1e6;

    // References in the same run: raw TLS 1.3 over loopback (same
    // certificates, 256 KiB writes) into memory, the same into a file with
    // SHA-256 on a writer thread and fsync at the end (the work any verified
    // download does), and the disk alone (256 KiB writes + fsync).
    let raw_mbs = raw_tls(&pki, &payload, None).await;
    let sink_mbs = raw_tls(&pki, &payload, Some(&tmp.path().join("raw-sink"))).await;
    let disk = tmp.path().join("disk");
    let t = Instant::now();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&disk).unwrap();
        for c in payload.chunks(256 * 1024) {
            f.write_all(c).unwrap();
        }
        f.sync_all().unwrap();
    }
    let disk_mbs = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!(
        "streamed transfer: {mb} MiB over the link {link_mbs:.0} MB/s (written and hashed, fsync at the end; goal >= 100 MB/s); raw TLS 1.3 {raw_mbs:.0} MB/s: ratio {:.2}x (goal >= 0.5x); raw TLS 1.3 written and hashed the same way {sink_mbs:.0} MB/s: ratio {:.2}x; the disk alone (write + fsync) {disk_mbs:.0} MB/s",
        link_mbs / raw_mbs,
        link_mbs / sink_mbs,
    );
    ctl.shutdown().await;
}

/// Receives `payload` over a fresh TLS 1.3 connection on loopback; with
/// `sink`, a writer thread hashes it and writes it there (fsync at the end).
/// Returns MB/s.
async fn raw_tls(pki: &TestPki, payload: &Arc<Vec<u8>>, sink: Option<&std::path::Path>) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let data = payload.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = acceptor.accept(tcp).await.unwrap();
        for c in data.chunks(256 * 1024) {
            s.write_all(c).await.unwrap();
        }
        s.shutdown().await.unwrap();
    });
    let node = pki.ca.issue_node("bench-raw", Validity::days(1)).unwrap();
    let id =
        Identity::from_pem(node.cert_pem.as_bytes(), node.key_pem.as_bytes(), "bench").unwrap();
    let cfg = tls::client_config(std::slice::from_ref(&pki.ca.cert_der), id).unwrap();
    let writer = sink.map(|path| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
        let mut f = std::fs::File::create(path).unwrap();
        let thread = std::thread::spawn(move || {
            use sha2::Digest;
            use std::io::Write;
            let mut h = sha2::Sha256::new();
            for buf in rx {
                h.update(&buf);
                f.write_all(&buf).unwrap();
            }
            f.sync_all().unwrap();
            hex::encode(h.finalize())
        });
        (tx, thread)
    });
    let t = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(tls::server_name("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut got = 0usize;
    // One reused buffer into memory; a copy per read only for the writer.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if let Some((tx, _)) = &writer {
                    tx.send(buf[..n].to_vec()).unwrap();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("{e}"),
        }
    }
    if let Some((tx, thread)) = writer {
        drop(tx);
        assert_eq!(thread.join().unwrap().len(), 64);
    }
    let took = t.elapsed();
    assert_eq!(got, payload.len());
    payload.len() as f64 / took.as_secs_f64() / 1e6
}
