//! A TCP proxy on loopback that can cut every connection through it at
//! once (a link failure between agent and controller), then keeps
//! accepting new ones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
    /// While set, new connections are closed at once (the link is down).
    blocked: Arc<std::sync::atomic::AtomicBool>,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let blocked: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let target = Arc::new(Mutex::new(target));
        let to = target.clone();
        let down = blocked.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = *to.lock().unwrap_or_else(|p| p.into_inner());
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut l = list.lock().unwrap_or_else(|p| p.into_inner());
                l.retain(|t| !t.is_finished());
                l.push(task);
            }
        });
        Self {
            addr,
            conns,
            accept,
            blocked,
            target,
        }
    }

    /// Sends new connections to `addr` (a server that moved).
    pub fn set_target(&self, addr: SocketAddr) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Cuts every connection and refuses new ones until [`Proxy::restore`]
    /// (a link down for a while).
    pub fn block(&self) -> usize {
        self.blocked
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut()
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.blocked
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drops every connection through the proxy (both sides see a reset
    /// or EOF, as when a cable is pulled and the peers notice).
    pub fn cut(&self) -> usize {
        let mut l = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let n = l.iter().filter(|t| !t.is_finished()).count();
        for t in l.drain(..) {
            t.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
