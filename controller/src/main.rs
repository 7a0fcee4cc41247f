//! rakkr-controller: the reference controller for demos and tests.
//!
//! - `dev-certs --out DIR --node ID…`: a development CA, a controller
//!   certificate (localhost, 127.0.0.1, ::1) and node trust directories.
//! - `serve --certs DIR`: accept agents; print every controller event as a
//!   JSON line on stdout; read commands on stdin (`help` lists them).
//! - `demo`: both ends in one go: dev certificates, a controller, the real
//!   agent connecting; prints the node's inventory, sends commands, stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rakkr_controller::{Controller, ControllerConfig, ControllerEvent, ControllerHandle};
use rakkr_protocol::tls::{self, Identity};
use rakkr_protocol::{CommandBody, Outcome, Reply, VersionRange};
use tokio::io::AsyncBufReadExt;

#[derive(Debug, Parser)]
#[command(
    name = "rakkr-controller",
    about = "Rakkr reference controller (demos and tests)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a development PKI.
    DevCerts {
        #[arg(long)]
        out: PathBuf,
        /// Node ids to issue certificates for.
        #[arg(long = "node", default_value = "demo-node")]
        nodes: Vec<String>,
    },
    /// Serve agents.
    Serve {
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Directory written by `dev-certs` (uses its controller/ subdirectory).
        #[arg(long)]
        certs: PathBuf,
        /// Keep node event logs here (survives restarts), and pull every
        /// node's takes into its takes/ directory (verified, receipted).
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long, default_value_t = 15_000)]
        heartbeat_ms: u64,
        #[arg(long, default_value_t = rakkr_protocol::version::SUPPORTED.min)]
        min_version: u16,
        #[arg(long, default_value_t = rakkr_protocol::version::SUPPORTED.max)]
        max_version: u16,
        /// Also print heartbeat events.
        #[arg(long)]
        show_heartbeats: bool,
    },
    /// Serve, wait for NODE and listen to it: raw mono S16LE PCM to stdout
    /// (`| aplay -f S16_LE -r RATE -c 1`) or a WAV file.
    Listen {
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Directory written by `dev-certs`.
        #[arg(long)]
        certs: PathBuf,
        #[arg(long)]
        node: String,
        /// 1-based channels mixed to mono, e.g. 1,2 (default: all).
        #[arg(long, value_delimiter = ',')]
        channels: Vec<u16>,
        /// 16000 or 48000.
        #[arg(long, default_value_t = 16_000)]
        rate: u32,
        /// Audio per frame, 10-100 ms.
        #[arg(long, default_value_t = 100)]
        frame_ms: u32,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3_600)]
        seconds: u64,
        /// Write a WAV file here instead of raw PCM to stdout.
        #[arg(long)]
        wav: Option<PathBuf>,
    },
    /// The takes this controller holds (pulled into <store>/takes).
    Takes {
        #[arg(long)]
        store: PathBuf,
    },
    /// Run a controller and a real agent against each other, then stop both.
    Demo {
        /// The agent binary (default: next to this binary).
        #[arg(long)]
        agent: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(async move {
            match cli.command {
                Cmd::DevCerts { out, nodes } => dev_certs(&out, &nodes),
                Cmd::Serve {
                    listen,
                    certs,
                    store,
                    heartbeat_ms,
                    min_version,
                    max_version,
                    show_heartbeats,
                } => {
                    serve(
                        listen,
                        &certs,
                        store,
                        heartbeat_ms,
                        VersionRange {
                            min: min_version,
                            max: max_version,
                        },
                        show_heartbeats,
                    )
                    .await
                }
                Cmd::Demo { agent } => demo(agent).await,
                Cmd::Listen {
                    listen,
                    certs,
                    node,
                    channels,
                    rate,
                    frame_ms,
                    seconds,
                    wav,
                } => {
                    let req = rakkr_protocol::ListenRequest {
                        channels,
                        rate,
                        frame_ms,
                    };
                    listen_to(listen, &certs, &node, req, seconds, wav).await
                }
                Cmd::Takes { store } => {
                    let held = rakkr_controller::takes::held(&store.join("takes"));
                    if held.is_empty() {
                        println!("no takes in {}", store.join("takes").display());
                    }
                    for (node, take, files, bytes) in held {
                        println!(
                            "{node:<24} {take:<32} {files:>5} files {:>10.1} MiB",
                            bytes as f64 / (1 << 20) as f64
                        );
                    }
                    Ok(())
                }
            }
        }),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dev_certs(out: &Path, nodes: &[String]) -> anyhow::Result<()> {
    let ids: Vec<&str> = nodes.iter().map(String::as_str).collect();
    rakkr_devpki::write_dev_pki(out, &ids)
        .with_context(|| format!("writing dev PKI to {}", out.display()))?;
    println!(
        "wrote {}/ca.pem, controller/ and nodes/{{{}}}/",
        out.display(),
        ids.join(",")
    );
    Ok(())
}

fn server_tls(certs: &Path) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    let dir = certs.join("controller");
    let read = |n: &str| {
        std::fs::read(dir.join(n)).with_context(|| format!("reading {}", dir.join(n).display()))
    };
    let ca = tls::certs_from_pem(&read("ca.pem")?, "controller/ca.pem")?;
    let id = Identity::from_pem(
        &read("controller.pem")?,
        &read("controller.key")?,
        "controller/controller.pem",
    )?;
    Ok(tls::server_config(&ca, id, tls::TLS13_ONLY)?)
}

/// `listen`: a controller that listens to one node.
async fn listen_to(
    listen: SocketAddr,
    certs: &Path,
    node: &str,
    req: rakkr_protocol::ListenRequest,
    seconds: u64,
    wav: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::io::{Seek, Write};
    let cfg = ControllerConfig::new(listen, server_tls(certs)?);
    let controller = Controller::start(cfg)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let handle = controller.handle();
    eprintln!("waiting for {node} on {}", controller.local_addr());
    let length = Duration::from_secs(seconds);
    let heard = match &wav {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(&rakkr_controller::listen::wav_header(req.rate, 0))?;
            let mut w = std::io::BufWriter::new(f);
            let heard =
                rakkr_controller::listen::listen(&handle, node, &req, length, &mut w).await?;
            let mut f = w.into_inner().map_err(|e| e.into_error())?;
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(&rakkr_controller::listen::wav_header(
                req.rate,
                heard.samples,
            ))?;
            f.sync_all()?;
            heard
        }
        None => {
            let mut out = std::io::stdout().lock();
            rakkr_controller::listen::listen(&handle, node, &req, length, &mut out).await?
        }
    };
    eprintln!(
        "heard {} frames ({:.1} s), {} missing; capture to controller: p50 {} ms, p99 {} ms",
        heard.frames,
        heard.samples as f64 / f64::from(req.rate),
        heard.missing,
        heard.latency(0.5).unwrap_or(0),
        heard.latency(0.99).unwrap_or(0)
    );
    controller.shutdown().await;
    Ok(())
}

fn print_json(v: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(v) {
        println!("{s}");
    }
}

async fn serve(
    listen: SocketAddr,
    certs: &Path,
    store: Option<PathBuf>,
    heartbeat_ms: u64,
    versions: VersionRange,
    show_heartbeats: bool,
) -> anyhow::Result<()> {
    let mut cfg = ControllerConfig::new(listen, server_tls(certs)?);
    cfg.takes = store.as_ref().map(|s| s.join("takes"));
    cfg.store = store;
    cfg.heartbeat = Duration::from_millis(heartbeat_ms);
    cfg.versions = versions;
    let controller = Controller::start(cfg)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let handle = controller.handle();
    let mut events = handle.subscribe();
    print_json(&serde_json::json!({"type": "listening", "addr": controller.local_addr()}));
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            if show_heartbeats || !matches!(ev, ControllerEvent::Heartbeat { .. }) {
                print_json(&ev);
            }
        }
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = stdin.next_line() => match line {
                Ok(Some(line)) => {
                    if !stdin_command(&handle, line.trim()).await {
                        break;
                    }
                }
                // stdin closed: keep serving until a signal.
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                    break;
                }
            },
        }
    }
    controller.shutdown().await;
    Ok(())
}

/// One operator command; false means quit.
async fn stdin_command(handle: &ControllerHandle, line: &str) -> bool {
    let mut words = line.splitn(3, ' ');
    let t = Duration::from_secs(30);
    match (words.next().unwrap_or(""), words.next(), words.next()) {
        ("", ..) => {}
        ("quit" | "exit", ..) => return false,
        ("nodes", ..) => {
            let nodes: Vec<_> = handle
                .nodes()
                .into_iter()
                .map(|n| serde_json::json!({"node": n.node_id, "peer": n.peer, "agentVersion": n.hello.agent_version, "protocol": n.version}))
                .collect();
            print_json(&serde_json::json!({"type": "nodes", "nodes": nodes}));
        }
        ("inventory", Some(node), _) => match handle.command(node, CommandBody::Inventory, t).await
        {
            Ok(r) => print_json(&r),
            Err(e) => eprintln!("error: {e}"),
        },
        ("annotate", Some(node), Some(text)) => match handle
            .command(node, CommandBody::Annotate { text: text.into() }, t)
            .await
        {
            Ok(r) => print_json(&r),
            Err(e) => eprintln!("error: {e}"),
        },
        ("clock-offset", Some(ms), _) => match ms.parse::<i64>() {
            Ok(ms) => handle.set_clock_offset_ms(ms),
            Err(_) => eprintln!("error: clock-offset takes milliseconds, e.g. clock-offset 7000"),
        },
        ("disconnect", Some(node), _) => {
            if let Err(e) = handle.disconnect(node).await {
                eprintln!("error: {e}");
            }
        }
        ("take", Some(verb), rest) => {
            match rakkr_controller::console::take(&format!("{verb} {}", rest.unwrap_or(""))) {
                Ok((node, body)) => match handle.command(&node, body, t).await {
                    Ok(r) => print_json(&r),
                    Err(e) => eprintln!("error: {e}"),
                },
                Err(e) => eprintln!("error: {e}"),
            }
        }
        ("takes", Some(node), _) => {
            match handle.command(node, CommandBody::RunningTakes, t).await {
                Ok(r) => print_json(&r),
                Err(e) => eprintln!("error: {e}"),
            }
        }
        ("configure", Some(node), Some(rest)) => match configure(handle, node, rest).await {
            Ok(r) => print_json(&r),
            Err(e) => eprintln!("error: {e:#}"),
        },
        ("update", Some(node), Some(rest)) => match push_update(handle, node, rest).await {
            Ok(r) => print_json(&r),
            Err(e) => eprintln!("error: {e:#}"),
        },
        _ => eprintln!(
            "commands: nodes | inventory NODE | annotate NODE TEXT | disconnect NODE | update NODE VERSION FILE [force] | configure NODE VERSION FILE.json [force] | take start NODE TAKE [--channels 1,2,17-24] [--format flac] [--segment 10s] [--duration 30s] [--job ID] | take stop NODE TAKE | take mark NODE LABEL | takes NODE | clock-offset MS | quit"
        ),
    }
    true
}

/// `VERSION FILE [force]` of an operator command (`usage` when missing).
fn version_file<'a>(rest: &'a str, usage: &str) -> anyhow::Result<(&'a str, &'a str, bool)> {
    let mut w = rest.split_whitespace();
    let (Some(version), Some(file)) = (w.next(), w.next()) else {
        bail!("usage: {usage}");
    };
    Ok((version, file, w.next() == Some("force")))
}

/// `configure NODE VERSION FILE.json [force]`: pushes the settings in
/// FILE.json (sections of keys, as in the agent's config file) as
/// configuration version VERSION.
async fn configure(
    handle: &ControllerHandle,
    node: &str,
    rest: &str,
) -> anyhow::Result<rakkr_protocol::CommandResult> {
    let (version, file, force) = version_file(rest, "configure NODE VERSION FILE.json [force]")?;
    let version = version
        .parse()
        .with_context(|| format!("version {version:?} is not a whole number"))?;
    let document = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let push = rakkr_protocol::ConfigPush {
        version,
        document,
        force,
    };
    Ok(handle
        .command(node, CommandBody::Configure(push), Duration::from_secs(30))
        .await?)
}

/// `update NODE VERSION FILE [force]`: publishes FILE (a release .tar.gz or
/// a bare binary) and tells the node to stream it, with the release's
/// signed manifest from beside FILE (`release-manifest.json` and its
/// `.minisig`, as `packaging/build-release.sh` leaves them in `dist/`); the
/// outcome arrives as Update* events.
async fn push_update(
    handle: &ControllerHandle,
    node: &str,
    rest: &str,
) -> anyhow::Result<rakkr_protocol::CommandResult> {
    use sha2::Digest;
    let (version, file, force) = version_file(rest, "update NODE VERSION FILE [force]")?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let target = handle
        .node(node)
        .with_context(|| format!("node {node} is not connected"))?
        .hello
        .build_target;
    let dir = std::path::Path::new(file)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let manifest_path = dir.join("release-manifest.json");
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| {
            format!(
                "reading {} (the agent installs only signed releases: keep the release's manifest and .minisig beside the artifact)",
                p.display()
            )
        })
    };
    let release_manifest = read(&manifest_path)?;
    let signature = read(&dir.join("release-manifest.json.minisig"))?;
    let transfer_id = format!("update-{version}-{:08x}", fastrand_u32());
    let offer = rakkr_protocol::UpdateOffer {
        version: version.into(),
        target,
        size: bytes.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        source: rakkr_protocol::UpdateSource::Stream {
            transfer_id: transfer_id.clone(),
        },
        force,
        allow_downgrade: false,
    };
    handle.publish_artifact(
        &transfer_id,
        rakkr_controller::Artifact {
            bytes: std::sync::Arc::new(bytes),
            cut_at: None,
        },
    );
    Ok(handle
        .command(
            node,
            CommandBody::UpdateSigned(rakkr_protocol::SignedUpdate {
                offer,
                release_manifest,
                signature,
            }),
            Duration::from_secs(30),
        )
        .await?)
}

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

fn summarize(json: &str) -> anyhow::Result<()> {
    let inv: serde_json::Value = serde_json::from_str(json).context("inventory is not JSON")?;
    let s = |k: &str| inv[k].as_str().unwrap_or("?").to_owned();
    println!("  id           {}", s("id"));
    println!("  alias        {}", s("alias"));
    println!("  hostname     {}", s("hostname"));
    println!(
        "  agent        {} ({})",
        s("agentVersion"),
        inv["build"]["target"].as_str().unwrap_or("?")
    );
    println!(
        "  libraries    FFmpeg {}, alsa-lib {}",
        inv["build"]["ffmpegVersion"].as_str().unwrap_or("?"),
        inv["build"]["alsaLibVersion"].as_str().unwrap_or("?")
    );
    println!("  status       {}", s("status"));
    println!(
        "  trust        {} (certificate {})",
        inv["trust"]["status"].as_str().unwrap_or("?"),
        inv["trust"]["certificate"]["subject"]
            .as_str()
            .unwrap_or("-")
    );
    let ifaces = inv["interfaces"].as_array().cloned().unwrap_or_default();
    println!("  interfaces   {}", ifaces.len());
    for i in &ifaces {
        println!(
            "    - {} ({}): {} channels, rates {}",
            i["id"].as_str().unwrap_or("?"),
            i["systemName"].as_str().unwrap_or("?"),
            i["channelCount"],
            i["sampleRates"]
        );
    }
    println!(
        "  selected     {}",
        inv["selectedDevice"]["reason"].as_str().unwrap_or("?")
    );
    println!(
        "  storage      {} ({} bytes free)",
        inv["storage"]["recordingsPath"].as_str().unwrap_or("?"),
        inv["storage"]["freeBytes"]
    );
    Ok(())
}

async fn demo(agent: Option<PathBuf>) -> anyhow::Result<()> {
    let agent = match agent {
        Some(a) => a,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("rakkr-recorder-agent"),
    };
    if !agent.exists() {
        bail!(
            "agent binary {} not found: build it with `cargo build -p rakkr-recorder-agent` or pass --agent",
            agent.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    // The ALSA test device: 32 channels at 48 kHz fed in real time.
    let fifo = tmp.path().join("x32.fifo");
    let feeder =
        rakkr_controller::sim::PacedFeeder::start(&fifo, 32, 48_000, 512, Duration::from_secs(120));
    let alsa_config = rakkr_controller::sim::x32_config_for(tmp.path(), &fifo);
    let pki = tmp.path().join("pki");
    rakkr_devpki::write_dev_pki(&pki, &["demo-node"])?;
    println!("1. development PKI written to {}", pki.display());
    let mut cfg = ControllerConfig::new("127.0.0.1:0".parse()?, server_tls(&pki)?);
    cfg.heartbeat = Duration::from_secs(2);
    let takes = tmp.path().join("controller-takes");
    cfg.takes = Some(takes.clone());
    let controller = Controller::start(cfg).await?;
    let addr = controller.local_addr();
    let handle = controller.handle();
    let mut events = handle.subscribe();
    println!("2. reference controller listening on {addr}");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("trust"))?;
    for f in ["ca.pem", "node.pem", "node.key"] {
        std::fs::copy(
            pki.join("nodes/demo-node").join(f),
            state.join("trust").join(f),
        )?;
    }
    let config = tmp.path().join("recorder-agent.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nalias = \"Demo recorder\"\nsite = \"Demo site\"\nroom = \"Demo room\"\n\n[controller]\nurl = \"rakkr://{addr}\"\n\n[storage]\nmin_free_mb = 64\nstop_free_mb = 32\n\n[capture]\ndevice = \"x32file\"\nbuffer_frames = 512\n"
        ),
    )?;
    let mut child = tokio::process::Command::new(&agent)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .arg("run")
        .env("RAKKR_LOG", "info")
        .env("ALSA_CONFIG_PATH", &alsa_config)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    println!(
        "3. agent {} started (pid {:?})",
        agent.display(),
        child.id()
    );
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Ok(ControllerEvent::Connected { hello, .. }) => return Ok(hello),
                Ok(ControllerEvent::HandshakeFailed { error, .. }) => {
                    bail!("handshake failed: {error}")
                }
                Ok(ControllerEvent::Rejected { reject, .. }) => {
                    bail!("rejected: {}", reject.message)
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => bail!("{e}"),
            }
        }
    });
    let hello = tokio::select! {
        r = connected => r.context("the agent did not connect within 30 s")??,
        st = child.wait() => bail!("the agent exited before connecting: {}", st?),
    };
    println!(
        "4. node {} registered over mutual TLS (agent {}, {}); its inventory:",
        hello.node_id, hello.agent_version, hello.build_target
    );
    summarize(&hello.inventory_json)?;
    let t = Duration::from_secs(10);
    let r = handle
        .command(
            &hello.node_id,
            CommandBody::Annotate {
                text: "demo: hello from the controller".into(),
            },
            t,
        )
        .await?;
    let Outcome::Done(Reply::Annotated { seq }) = r.outcome else {
        bail!("annotate failed: {:?}", r.outcome)
    };
    println!("5. command {} answered: the note became event {seq}", r.id);
    tokio::time::timeout(t, async {
        loop {
            if let Ok(ControllerEvent::Event { event, .. }) = events.recv().await
                && event.seq == seq
            {
                println!(
                    "6. event {} arrived and was acknowledged: {:?}",
                    event.seq, event.body
                );
                return;
            }
        }
    })
    .await
    .context("the note's event did not arrive")?;
    println!("7. the controller records a 4 s take from the ALSA test device:");
    let mut transfer_events = handle.subscribe();
    rakkr_controller::demo::record_take(&handle, &hello.node_id, "demo-take", 4, &feeder.drops())
        .await?;
    let node_take = state.join("recordings/demo-take");
    let copy = takes.join(&hello.node_id).join("demo-take");
    let n = rakkr_controller::demo::arrived(&mut transfer_events, &node_take, &copy).await?;
    println!(
        "8. the take arrived on the controller as it recorded: {n} files in {}, each SHA-256 equal to the node's manifest; the node recorded every receipt",
        copy.display()
    );
    let prune = tokio::process::Command::new(&agent)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["takes", "prune"])
        .env("RAKKR_RETENTION_DELETE_RECEIVED_AFTER_HOURS", "0")
        .output()
        .await?;
    if !prune.status.success() || node_take.exists() {
        bail!(
            "takes prune did not free the node's copy: {}",
            String::from_utf8_lossy(&prune.stderr)
        );
    }
    println!(
        "9. with retention.delete_received_after_hours = 0, `takes prune` frees the node's copy:\n   {}",
        String::from_utf8_lossy(&prune.stdout).trim()
    );
    if let Some(pid) = child.id() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("agent did not stop")??;
    println!("10. agent stopped on SIGTERM: {status}");
    controller.shutdown().await;
    println!("11. controller stopped");
    if !status.success() {
        bail!("agent exited with {status}");
    }
    Ok(())
}
