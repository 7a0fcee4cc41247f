//! Where the renewal task and the link meet: renewal requests go out on
//! the current session, answers come back by request id. Owned by `Node`;
//! the link takes the receiver while a session runs (one at a time).

use std::sync::Mutex;
use std::time::Duration;

use rakkr_protocol::Renew;
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc, oneshot, watch};

type Waiter = (u64, oneshot::Sender<Result<String, String>>);

#[derive(Debug)]
pub struct TrustChannel {
    requests_tx: mpsc::UnboundedSender<Renew>,
    pub requests_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Renew>>,
    waiting: Mutex<Option<Waiter>>,
    /// Renew now (the controller's RotateTrust, `trust rotate`).
    pub rotate: Notify,
    /// Bumped when trust was installed from outside (`trust install`): the
    /// renewal schedule is computed again from the new certificate.
    pub installed: watch::Sender<u64>,
    /// The controller's certificate chain on the current session (CA
    /// rollover must keep trusting it).
    pub controller_chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl Default for TrustChannel {
    fn default() -> Self {
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        Self {
            requests_tx,
            requests_rx: tokio::sync::Mutex::new(requests_rx),
            waiting: Mutex::new(None),
            rotate: Notify::new(),
            installed: watch::Sender::new(0),
            controller_chain: Mutex::new(Vec::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TrustChannel {
    /// Sends a CSR on the link and waits for the chain (PEM) or the
    /// controller's refusal, at most `timeout`.
    pub async fn request(&self, csr_der: Vec<u8>, timeout: Duration) -> Result<String, String> {
        let request_id = fastrand::u64(..);
        let (tx, rx) = oneshot::channel();
        *lock(&self.waiting) = Some((request_id, tx));
        self.requests_tx
            .send(Renew {
                request_id,
                csr_der,
            })
            .map_err(|_| "the link is gone".to_owned())?;
        let answer = tokio::time::timeout(timeout, rx).await;
        *lock(&self.waiting) = None;
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the link dropped the request".into()),
            Err(_) => Err(format!("no answer from the controller within {timeout:?}")),
        }
    }

    /// The controller's answer to `request_id` (stale ids are dropped).
    pub fn deliver(&self, request_id: u64, result: Result<String, String>) {
        let mut waiting = lock(&self.waiting);
        if waiting.as_ref().is_some_and(|(id, _)| *id == request_id)
            && let Some((_, tx)) = waiting.take()
        {
            let _ = tx.send(result);
        } else {
            tracing::warn!(
                request_id,
                "an answer to a renewal nobody waits for; dropped"
            );
        }
    }

    pub fn set_controller_chain(&self, chain: Vec<CertificateDer<'static>>) {
        *lock(&self.controller_chain) = chain;
    }

    pub fn controller_chain(&self) -> Vec<CertificateDer<'static>> {
        lock(&self.controller_chain).clone()
    }
}
