//! The link against a minimal controller made of the protocol's parts (the
//! reference controller is its own crate, which the node does not depend
//! on): it welcomes one agent, acknowledges every event and reports what
//! arrives.

use super::*;
use futures_util::{SinkExt, StreamExt};
use rakkr_devpki::{Ca, Validity, write_node_trust};
use rakkr_protocol::{
    Ack, AgentMsg, ControllerMsg, EventBody, FrameCodec, MeterFrame, Origin, Welcome, tls,
};

/// What the minimal controller saw.
#[derive(Debug)]
enum ControllerEvent {
    Connected,
    Event,
    Meter(u64),
}

/// Serves one agent on `listener`: Welcome, then an Ack per event.
async fn minimal_controller(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    tx: tokio::sync::mpsc::UnboundedSender<ControllerEvent>,
) {
    let (tcp, _) = listener.accept().await.expect("accept");
    let tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .expect("TLS");
    let mut framed =
        tokio_util::codec::Framed::new(tls, FrameCodec::<AgentMsg, ControllerMsg>::default());
    let Some(Ok(AgentMsg::Hello(hello))) = framed.next().await else {
        panic!("no Hello");
    };
    let version =
        rakkr_protocol::version::negotiate(hello.versions, rakkr_protocol::version::SUPPORTED)
            .expect("a common version");
    framed
        .send(ControllerMsg::Welcome(Welcome {
            version,
            heartbeat_ms: 5_000,
            server_time_ms: 0,
            resume_from: 0,
        }))
        .await
        .expect("Welcome");
    let _ = tx.send(ControllerEvent::Connected);
    while let Some(Ok(msg)) = framed.next().await {
        match msg {
            AgentMsg::Event(e) => {
                let _ = tx.send(ControllerEvent::Event);
                if framed
                    .send(ControllerMsg::Ack(Ack { up_to: e.seq }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            AgentMsg::Meter(m) => {
                let _ = tx.send(ControllerEvent::Meter(m.captured_at_ms));
            }
            _ => {}
        }
    }
}

/// A node whose config points at `addr`, with trust for `node_id`.
fn node_for(ca: &Ca, state: &std::path::Path, addr: std::net::SocketAddr) -> Arc<Node> {
    let leaf = ca.issue_node("node-meter", Validity::days(1)).unwrap();
    write_node_trust(&state.join("trust"), &ca.cert_pem, &leaf).unwrap();
    let url = format!("rakkr://{addr}");
    let env = move |k: &str| (k == "RAKKR_CONTROLLER_URL").then(|| url.clone());
    let config = crate::config::parse("", "test", &env, state).unwrap();
    let outbox = crate::outbox::Outbox::open(&state.join("outbox"), 100_000).unwrap();
    let commands = crate::command_log::CommandLog::open(state).unwrap();
    Node::new(config, outbox, commands)
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ControllerEvent>,
    deadline: tokio::time::Instant,
) -> ControllerEvent {
    tokio::time::timeout_at(deadline, rx.recv())
        .await
        .expect("timed out")
        .expect("controller events")
}

fn frame(n: u64) -> MeterFrame {
    MeterFrame {
        captured_at_ms: n,
        interface_id: "alsa_pcm_x32file".into(),
        levels: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_frames_are_latest_wins_and_never_wait_behind_an_event_backlog() {
    let ca = Ca::new("meter test CA").unwrap();
    let server = ca
        .issue_controller(&["127.0.0.1"], Validity::days(1))
        .unwrap();
    let id = tls::Identity::from_pem(
        server.cert_pem.as_bytes(),
        server.key_pem.as_bytes(),
        "server",
    )
    .unwrap();
    let tls = tls::server_config(std::slice::from_ref(&ca.cert_der), id, tls::TLS13_ONLY).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ctl = tokio::spawn(minimal_controller(listener, tls, tx));
    // tmpfs when there is one: the backlog's fsyncs stay cheap.
    let shm = std::path::Path::new("/dev/shm");
    let state = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let node = node_for(&ca, state.path(), addr);
    // A backlog, as after an outage: far more than one batch.
    const BACKLOG: u64 = 3_000;
    for i in 0..BACKLOG {
        node.emit(EventBody::Annotated {
            text: i.to_string(),
            origin: Origin::Local,
        })
        .await
        .unwrap();
    }
    let cancel = CancellationToken::new();
    let link = tokio::spawn(run(node.clone(), cancel.clone()));
    loop {
        if let ControllerEvent::Connected = rx.recv().await.unwrap() {
            break;
        }
    }
    // A publisher far faster than the link: a queue would deliver every frame.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                node.meter.send_replace(Some(frame(n)));
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (mut meters, mut events, mut first_meter_at_event) = (Vec::<u64>::new(), 0u64, None);
    // The backlog drains while frames keep coming.
    while events < BACKLOG || meters.is_empty() {
        match next(&mut rx, deadline).await {
            ControllerEvent::Meter(at) => {
                first_meter_at_event.get_or_insert(events);
                meters.push(at);
            }
            ControllerEvent::Event => events += 1,
            ControllerEvent::Connected => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = publisher.await.unwrap();
    // Then the very last frame published arrives.
    while meters.last() != Some(&last) {
        if let ControllerEvent::Meter(at) = next(&mut rx, deadline).await {
            meters.push(at);
        }
    }
    assert!(
        meters.windows(2).all(|w| w[0] < w[1]),
        "never an older frame after a newer one"
    );
    assert!(
        (meters.len() as u64) * 2 < last,
        "frames were queued: {} of {last} delivered",
        meters.len()
    );
    let at = first_meter_at_event.unwrap();
    assert!(
        at < BACKLOG,
        "the first meter frame waited for the whole event backlog ({at} events first)"
    );
    cancel.cancel();
    link.await.unwrap();
    ctl.abort();
}
