//! Where update transfers and the link meet: `Fetch` requests go out on the
//! current session, `Chunk`s (or a `TransferFailed`) come back to the one
//! transfer that runs. Owned by `Node` (as `trust::channel` is); the link
//! takes the request receiver while a session runs (one at a time).

use std::sync::{Mutex, MutexGuard};

use rakkr_protocol::{Chunk, Fetch};
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct UpdateChannel {
    fetch_tx: mpsc::UnboundedSender<Fetch>,
    /// Transfer requests for the link to send.
    pub fetch_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Fetch>>,
    /// Where the link hands transfer chunks, while a transfer runs.
    chunks: Mutex<Option<mpsc::UnboundedSender<Result<Chunk, String>>>>,
    /// The update in progress: (version, sha256).
    active: Mutex<Option<(String, String)>>,
}

impl Default for UpdateChannel {
    fn default() -> Self {
        let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
        Self {
            fetch_tx,
            fetch_rx: tokio::sync::Mutex::new(fetch_rx),
            chunks: Mutex::new(None),
            active: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UpdateChannel {
    /// Starts receiving transfer chunks from the link.
    pub fn open_transfer(&self) -> mpsc::UnboundedReceiver<Result<Chunk, String>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.chunks) = Some(tx);
        rx
    }

    pub fn close_transfer(&self) {
        *lock(&self.chunks) = None;
    }

    /// Queues a transfer request for the link.
    pub fn fetch(&self, f: Fetch) {
        let _ = self.fetch_tx.send(f);
    }

    /// Called by the link with a Chunk or a TransferFailed message.
    pub fn deliver(&self, c: Result<Chunk, String>) {
        if let Some(tx) = lock(&self.chunks).as_ref() {
            let _ = tx.send(c);
        }
    }

    /// The update in progress, if any: (version, sha256).
    pub fn active(&self) -> MutexGuard<'_, Option<(String, String)>> {
        lock(&self.active)
    }
}
