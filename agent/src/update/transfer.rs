//! Getting the artifact into `<staging>/artifact`, hashing as it arrives
//! (constant memory).
//!
//! Over the link ([`pull`]): the agent asks for [`CHUNK`]-sized pieces with
//! [`Fetch`], keeping at most [`WINDOW`] bytes requested ahead of what it
//! has written (flow control is the agent's pace). The link task carries
//! the requests and hands back [`Chunk`]s; after a reconnect (a new session
//! generation) or a stall, the agent asks again from the first byte it does
//! not have, so a cut link resumes at its offset.
//!
//! Over HTTPS ([`fetch_url`]): rustls, trusting the fleet CA bundle and the
//! system's roots.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rakkr_protocol::{Chunk, Fetch};
use sha2::{Digest, Sha256};

use super::UpdateError;
use super::channel::UpdateChannel;

/// Bytes per request (the protocol's maximum chunk).
pub const CHUNK: u32 = rakkr_protocol::MAX_CHUNK_LEN;
/// Bytes requested ahead of what is written.
pub const WINDOW: u64 = 8 * CHUNK as u64;
/// Nothing arrived for this long while connected: ask again.
const STALL: Duration = Duration::from_secs(10);
/// Give up when the artifact has not grown for this long (link down).
const GIVE_UP: Duration = Duration::from_secs(600);
/// Dirty data handed to writeback as the file grows, so the final fsync
/// has little left to do.
const WRITEBACK: u64 = 8 << 20;

struct Sink {
    file: std::fs::File,
    hash: Sha256,
    path: PathBuf,
    written: u64,
    flushed: u64,
}

impl Sink {
    fn create(path: &Path) -> Result<Self, UpdateError> {
        Ok(Self {
            file: std::fs::File::create(path)
                .map_err(UpdateError::io(format!("creating {}", path.display())))?,
            hash: Sha256::new(),
            path: path.to_owned(),
            written: 0,
            flushed: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), UpdateError> {
        self.hash.update(data);
        self.file
            .write_all(data)
            .map_err(UpdateError::io(format!("writing {}", self.path.display())))?;
        self.written += data.len() as u64;
        if self.written - self.flushed >= WRITEBACK {
            // NOTE: on Linux, POSIX_FADV_DONTNEED starts writeback of the
            // range's dirty pages without waiting for it (and drops pages
            // already clean): the device writes while the link receives.
            // Advice only: a failure changes nothing but speed.
            // See: https://github.com/torvalds/linux/blob/master/mm/fadvise.c
            let _ = nix::fcntl::posix_fadvise(
                &self.file,
                self.flushed as i64,
                (self.written - self.flushed) as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
            self.flushed = self.written;
        }
        Ok(())
    }

    fn finish(self) -> Result<(String, u64), UpdateError> {
        self.file
            .sync_all()
            .map_err(UpdateError::io(format!("fsync {}", self.path.display())))?;
        Ok((hex::encode(self.hash.finalize()), self.written))
    }
}

/// Hashes and writes on its own thread, so the link task only receives:
/// chunks go through a bounded channel (the window bounds it anyway).
/// Dropped early (a refused transfer), its channel closes and the thread
/// ends by itself; nothing waits for it.
struct Writer {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<Result<(String, u64), UpdateError>>>,
}

impl Writer {
    fn start(path: &Path) -> Result<Self, UpdateError> {
        let mut sink = Sink::create(path)?;
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Vec<u8>>(WINDOW.div_ceil(u64::from(CHUNK)) as usize);
        let thread = std::thread::Builder::new()
            .name("rakkr-update-writer".into())
            .spawn(move || {
                while let Some(data) = rx.blocking_recv() {
                    sink.write(&data)?;
                }
                sink.finish()
            })
            .map_err(UpdateError::io("starting the update writer thread"))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    async fn write(&mut self, data: Vec<u8>) -> Result<(), UpdateError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(data).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The thread stopped: its error says why.
            self.finish().await.map(|_| ())
        }
    }

    /// Waits for everything to be written, hashed and fsynced.
    async fn finish(&mut self) -> Result<(String, u64), UpdateError> {
        self.tx = None;
        let thread = self
            .thread
            .take()
            .ok_or_else(|| UpdateError::Transfer("the update writer already stopped".into()))?;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| UpdateError::Transfer(e.to_string()))?
            .map_err(|_| UpdateError::Transfer("the update writer thread panicked".into()))?
    }
}

/// Pulls transfer `id` of `size` bytes over the link (`channel`) into
/// `out`; `sessions` changes when the link reconnects (the transfer then
/// resumes at the first byte it does not have).
pub async fn pull(
    channel: &UpdateChannel,
    mut sessions: tokio::sync::watch::Receiver<u64>,
    id: &str,
    size: u64,
    out: &Path,
) -> Result<(String, u64), UpdateError> {
    let mut chunks = channel.open_transfer();
    let mut writer = Writer::start(out)?;
    let (mut have, mut asked) = (0u64, 0u64);
    let mut last_progress = tokio::time::Instant::now();
    let ask = |asked: &mut u64, have: u64| {
        while *asked < size && *asked < have + WINDOW {
            channel.fetch(Fetch {
                transfer_id: id.to_owned(),
                offset: *asked,
                len: CHUNK,
            });
            *asked += u64::from(CHUNK);
        }
    };
    ask(&mut asked, have);
    while have < size {
        tokio::select! {
            c = chunks.recv() => match c {
                None => return Err(UpdateError::Transfer("the link task went away".into())),
                Some(Err(message)) => return Err(UpdateError::Transfer(format!("the controller refused the transfer: {message}"))),
                Some(Ok(Chunk { transfer_id, offset, data })) => {
                    // Stale answers (asked again after a reconnect) are skipped.
                    if transfer_id != id || offset != have {
                        continue;
                    }
                    if data.is_empty() {
                        return Err(UpdateError::Size { expected: size, actual: have });
                    }
                    let n = data.len() as u64;
                    if have + n > size {
                        return Err(UpdateError::Size { expected: size, actual: have + n });
                    }
                    // A short chunk is the artifact's end (every request
                    // asks for CHUNK bytes): short of `size`, it is truncated.
                    if n < u64::from(CHUNK) && have + n < size {
                        return Err(UpdateError::Size { expected: size, actual: have + n });
                    }
                    writer.write(data).await?;
                    have += n;
                    last_progress = tokio::time::Instant::now();
                    ask(&mut asked, have);
                }
            },
            changed = sessions.changed() => {
                if changed.is_err() {
                    return Err(UpdateError::Transfer("the link task went away".into()));
                }
                tracing::info!(offset = have, size, "link back: resuming the update transfer");
                asked = have;
                ask(&mut asked, have);
            }
            _ = tokio::time::sleep(STALL) => {
                if last_progress.elapsed() > GIVE_UP {
                    return Err(UpdateError::Transfer(format!("no progress for {GIVE_UP:?} at offset {have} of {size}")));
                }
                asked = have;
                ask(&mut asked, have);
            }
        }
    }
    writer.finish().await
}

/// Downloads `url` into `out` (blocking). `ca_bundle`: extra trusted roots.
pub fn fetch_url(
    url: &str,
    ca_bundle: &Path,
    max: u64,
    out: &Path,
) -> Result<(String, u64), UpdateError> {
    let agent = https_agent(ca_bundle)?;
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| UpdateError::Transfer(format!("GET {url}: {e}")))?;
    let mut body = resp.into_body().into_reader().take(max + 1);
    let mut sink = Sink::create(out)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let r = body
            .read(&mut buf)
            .map_err(|e| UpdateError::Transfer(format!("reading {url}: {e}")))?;
        if r == 0 {
            break;
        }
        n += r as u64;
        if n > max {
            return Err(UpdateError::Size {
                expected: max,
                actual: n,
            });
        }
        sink.write(&buf[..r])?;
    }
    sink.finish()
}

/// Fetches a small text of at most `max` bytes; `Ok(None)` when the
/// server says 404 (there is none).
pub fn fetch_text(url: &str, ca_bundle: &Path, max: usize) -> Result<Option<String>, UpdateError> {
    let agent = https_agent(ca_bundle)?;
    let resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(404)) => return Ok(None),
        Err(e) => return Err(UpdateError::Transfer(format!("GET {url}: {e}"))),
    };
    resp.into_body()
        .with_config()
        .limit(max as u64)
        .read_to_string()
        .map(Some)
        .map_err(|e| UpdateError::Transfer(format!("reading {url} (at most {max} bytes): {e}")))
}

/// The signed release manifest and its signature published beside
/// `artifact_url` (a release's assets share one directory), verified.
pub fn fetch_release_beside(
    artifact_url: &str,
    ca_bundle: &Path,
    keys: &super::release::Keys,
) -> Result<super::release::SignedRelease, UpdateError> {
    use rakkr_protocol::limits::{RELEASE_MANIFEST_MAX, SIGNATURE_MAX};
    let dir = artifact_url
        .rsplit_once('/')
        .map(|(d, _)| d)
        .unwrap_or(artifact_url);
    let manifest_url = format!("{dir}/release-manifest.json");
    let sig_url = format!("{manifest_url}.minisig");
    let unsigned = |what: &str| {
        UpdateError::Signature(format!(
            "no {what} beside the artifact (404); an agent installs only signed releases"
        ))
    };
    let manifest = fetch_text(&manifest_url, ca_bundle, RELEASE_MANIFEST_MAX)?
        .ok_or_else(|| unsigned(&manifest_url))?;
    let sig = fetch_text(&sig_url, ca_bundle, SIGNATURE_MAX)?.ok_or_else(|| unsigned(&sig_url))?;
    super::release::verify(manifest.as_bytes(), &sig, keys)
}

fn https_agent(ca_bundle: &Path) -> Result<ureq::Agent, UpdateError> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let mut roots = Vec::new();
    for p in [ca_bundle, Path::new("/etc/ssl/certs/ca-certificates.crt")] {
        if let Ok(pem) = std::fs::read(p) {
            for c in ureq::tls::parse_pem(&pem).flatten() {
                if let ureq::tls::PemItem::Certificate(c) = c {
                    roots.push(c);
                }
            }
        }
    }
    if roots.is_empty() {
        return Err(UpdateError::Transfer(format!(
            "no trusted roots for HTTPS (neither {} nor the system bundle)",
            ca_bundle.display()
        )));
    }
    let roots: Vec<Certificate<'static>> = roots;
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into())
}
