//! A small HTTPS file server for tests (release artifacts served the way a
//! GitHub release or a fleet mirror serves them): real TLS with a
//! certificate from the test CA, no client authentication, HTTP/1.1 `GET`
//! answered with the file or 404, one request per connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::TestPki;

/// Serves `files` (path → bytes) on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct HttpsFiles {
    pub addr: SocketAddr,
    /// Paths requested so far, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsFiles {
    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }

    /// A server whose certificate is the test PKI's controller certificate
    /// (names 127.0.0.1, issued by the fleet CA).
    pub async fn start(pki: &TestPki, files: HashMap<String, Vec<u8>>) -> Self {
        let cert = CertificateDer::from_pem_slice(pki.controller.cert_pem.as_bytes())
            .expect("server cert");
        let key =
            PrivateKeyDer::from_pem_slice(pki.controller.key_pem.as_bytes()).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server identity");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (files, log) = (Arc::new(files), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, files, log) = (acceptor.clone(), files.clone(), log.clone());
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = serve_one(&mut tls, &files, &log).await;
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }
}

async fn serve_one<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // Bounded: a request head is small.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("")
        .to_owned();
    log.lock().expect("request log").push(path.clone());
    match files.get(&path) {
        Some(body) => {
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(h.as_bytes()).await?;
            s.write_all(body).await?;
        }
        None => {
            s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        }
    }
    s.flush().await?;
    s.shutdown().await
}
