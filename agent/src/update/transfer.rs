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
use crate::node::Node;

/// Bytes per request.
pub const CHUNK: u32 = 256 * 1024;
/// Bytes requested ahead of what is written.
pub const WINDOW: u64 = 8 * CHUNK as u64;
/// Nothing arrived for this long while connected: ask again.
const STALL: Duration = Duration::from_secs(10);
/// Give up when the artifact has not grown for this long (link down).
const GIVE_UP: Duration = Duration::from_secs(600);

struct Sink {
    file: std::fs::File,
    hash: Sha256,
    path: PathBuf,
}

impl Sink {
    fn create(path: &Path) -> Result<Self, UpdateError> {
        Ok(Self {
            file: std::fs::File::create(path)
                .map_err(UpdateError::io(format!("creating {}", path.display())))?,
            hash: Sha256::new(),
            path: path.to_owned(),
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), UpdateError> {
        self.hash.update(data);
        self.file
            .write_all(data)
            .map_err(UpdateError::io(format!("writing {}", self.path.display())))
    }

    fn finish(self, size: u64) -> Result<(String, u64), UpdateError> {
        self.file
            .sync_all()
            .map_err(UpdateError::io(format!("fsync {}", self.path.display())))?;
        Ok((hex::encode(self.hash.finalize()), size))
    }
}

/// Pulls transfer `id` of `size` bytes over the link into `out`.
pub async fn pull(
    node: &Arc<Node>,
    id: &str,
    size: u64,
    out: &Path,
) -> Result<(String, u64), UpdateError> {
    let mut chunks = node.open_transfer();
    let mut sessions = node.sessions.subscribe();
    let mut sink = Some(Sink::create(out)?);
    let (mut have, mut asked) = (0u64, 0u64);
    let mut last_progress = tokio::time::Instant::now();
    let ask = |asked: &mut u64, have: u64| {
        while *asked < size && *asked < have + WINDOW {
            node.fetch(Fetch {
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
                    let mut s = sink.take().ok_or_else(|| UpdateError::Transfer("writer lost".into()))?;
                    let (s, r) = tokio::task::spawn_blocking(move || { let r = s.write(&data); (s, r) })
                        .await
                        .map_err(|e| UpdateError::Transfer(e.to_string()))?;
                    r?;
                    sink = Some(s);
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
    let s = sink
        .take()
        .ok_or_else(|| UpdateError::Transfer("writer lost".into()))?;
    tokio::task::spawn_blocking(move || s.finish(size))
        .await
        .map_err(|e| UpdateError::Transfer(e.to_string()))?
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
    sink.finish(n)
}

/// Fetches a small text (the `.sha256` beside an artifact).
pub fn fetch_text(url: &str, ca_bundle: &Path) -> Result<String, UpdateError> {
    let agent = https_agent(ca_bundle)?;
    agent
        .get(url)
        .call()
        .map_err(|e| UpdateError::Transfer(format!("GET {url}: {e}")))?
        .into_body()
        .read_to_string()
        .map_err(|e| UpdateError::Transfer(format!("reading {url}: {e}")))
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
