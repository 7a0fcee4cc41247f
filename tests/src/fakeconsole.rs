//! A fake X32-class console on UDP, for the agent's console tests: the X32
//! dialect (`/xinfo`, channel names, sources, `/config/routing/IN|CARD`,
//! `/xremote` with its 10 s lapse) and the WING dialect (`WING?`, `/?`,
//! `/ch/N/name`, `in/conn`, `/io/out/USB`, `/*S`), written from the public
//! protocol descriptions (not from the agent's code), encoded with `rosc`.
//! Scriptable: names, routing, power off and on, another console in its
//! place, garbage sent to whoever asked.
//!
//! One thread per fake, reading with a 20 ms timeout until dropped.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    X32,
    Wing,
}

/// What the fake console is and holds (scripted by the test).
#[derive(Debug, Clone)]
pub struct Desk {
    pub dialect: Dialect,
    pub model: String,
    pub name: String,
    pub firmware: String,
    pub serial: String,
    /// Console channel → name (missing: empty).
    pub names: BTreeMap<u16, String>,
    /// X32: `/config/routing/IN/…` and `/config/routing/CARD/…` codes.
    pub x32_in: [i32; 4],
    pub x32_card: [i32; 4],
    /// WING: USB output → (group, input).
    pub wing_usb: BTreeMap<u16, (String, i32)>,
    /// Answers nothing (off, rebooting).
    pub off: bool,
}

impl Desk {
    pub fn x32(model: &str, name: &str, firmware: &str) -> Self {
        Self {
            dialect: Dialect::X32,
            model: model.into(),
            name: name.into(),
            firmware: firmware.into(),
            serial: String::new(),
            names: BTreeMap::new(),
            x32_in: [0, 1, 2, 3],
            x32_card: [0, 1, 2, 3],
            wing_usb: BTreeMap::new(),
            off: false,
        }
    }

    pub fn wing(name: &str, serial: &str, firmware: &str) -> Self {
        Self {
            dialect: Dialect::Wing,
            model: "ngc-full".into(),
            serial: serial.into(),
            ..Self::x32("", name, firmware)
        }
    }
}

#[derive(Debug)]
struct Shared {
    desk: Desk,
    /// Subscribers and when their subscription lapses.
    subscribers: BTreeMap<SocketAddr, Instant>,
    /// The last address that asked anything.
    client: Option<SocketAddr>,
    queries: u64,
}

#[derive(Debug)]
pub struct FakeConsole {
    addr: SocketAddr,
    socket: UdpSocket,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn msg(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .expect("encoding a reply")
}

fn s(v: &str) -> OscType {
    OscType::String(v.into())
}

impl FakeConsole {
    /// A fake on 127.0.0.1 at a free port.
    pub fn start(desk: Desk) -> Self {
        Self::start_at(desk, "127.0.0.1:0".parse().expect("address"))
    }

    /// A fake at `addr` (discovery tests bind a console's own port).
    pub fn start_at(desk: Desk, addr: SocketAddr) -> Self {
        let socket = UdpSocket::bind(addr).expect("binding the fake console");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let shared = Arc::new(Mutex::new(Shared {
            desk,
            subscribers: BTreeMap::new(),
            client: None,
            queries: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, shared, stop) = (
                socket.try_clone().expect("clone"),
                shared.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || serve(&socket, &shared, &stop))
        };
        Self {
            addr: socket.local_addr().expect("local address"),
            socket,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the agent asks from (once it has asked).
    pub fn client(&self) -> Option<SocketAddr> {
        self.shared.lock().expect("lock").client
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.shared.lock().expect("lock").queries
    }

    /// Changes the desk (names, routing, identity, power) with `f`.
    pub fn change(&self, f: impl FnOnce(&mut Desk)) {
        f(&mut self.shared.lock().expect("lock").desk);
    }

    /// Renames console channel `ch`, telling live subscribers as the
    /// console does.
    pub fn rename(&self, ch: u16, name: &str) {
        let (dialect, subs) = {
            let mut sh = self.shared.lock().expect("lock");
            sh.desk.names.insert(ch, name.into());
            let now = Instant::now();
            let subs: Vec<SocketAddr> = (sh.subscribers.iter())
                .filter(|(_, until)| **until > now)
                .map(|(a, _)| *a)
                .collect();
            (sh.desk.dialect, subs)
        };
        let addr = match dialect {
            Dialect::X32 => format!("/ch/{ch:02}/config/name"),
            Dialect::Wing => format!("/ch/{ch}/name"),
        };
        for to in subs {
            let _ = self.socket.send_to(&msg(&addr, vec![s(name)]), to);
        }
    }

    /// Sends datagrams that are not valid answers to the agent: broken
    /// OSC, a bundle, an oversized one, a broken WING answer, and a
    /// well-formed name for a channel that does not exist. Returns how
    /// many are malformed (all but the last).
    pub fn send_garbage(&self) -> usize {
        let Some(to) = self.client() else { return 0 };
        let mut bundle = msg("/ch/01/config/name", vec![s("Bundled")]);
        bundle.splice(0..0, *b"#bundle\0\0\0\0\0\0\0\0\x01\0\0\0\x18");
        let garbage: Vec<Vec<u8>> = vec![
            b"/ch/01/config/name\0\0,s\0\0\xff\xfe".to_vec(),
            b"\0\0\0\0".to_vec(),
            bundle,
            vec![b'/'; 5000],
            b"WING,only,three".to_vec(),
            msg("/ch/99/config/name", vec![s("Nowhere")]),
        ];
        for g in &garbage {
            let _ = self.socket.send_to(g, to);
        }
        garbage.len() - 1
    }
}

impl Drop for FakeConsole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let mut sh = shared.lock().expect("lock");
        if sh.desk.off {
            continue;
        }
        sh.client = Some(from);
        sh.queries += 1;
        let replies = if &buf[..n] == b"WING?" {
            (sh.desk.dialect == Dialect::Wing)
                .then(|| wing_identity(&sh.desk).into_bytes())
                .into_iter()
                .collect()
        } else {
            match rosc::decoder::decode_udp(&buf[..n]) {
                Ok((_, OscPacket::Message(m))) => answer(&mut sh, &m.addr, from),
                _ => Vec::new(),
            }
        };
        drop(sh);
        for r in replies {
            let _ = socket.send_to(&r, from);
        }
    }
}

fn wing_identity(d: &Desk) -> String {
    format!(
        "WING,127.0.0.1,{},{},{},{}",
        d.name, d.model, d.serial, d.firmware
    )
}

fn answer(sh: &mut Shared, addr: &str, from: SocketAddr) -> Vec<Vec<u8>> {
    let d = &sh.desk;
    let parts: Vec<&str> = addr.split('/').skip(1).collect();
    let name = |ch: &str| {
        let n: u16 = ch.parse().unwrap_or(0);
        s(d.names.get(&n).map_or("", String::as_str))
    };
    let out = match (d.dialect, parts.as_slice()) {
        (Dialect::X32, ["xinfo"]) => msg(
            addr,
            vec![s("127.0.0.1"), s(&d.name), s(&d.model), s(&d.firmware)],
        ),
        (Dialect::X32, ["ch", ch, "config", "name"]) => msg(addr, vec![name(ch)]),
        (Dialect::X32, ["ch", ch, "config", "source"]) => {
            msg(addr, vec![OscType::Int(ch.parse().unwrap_or(0))])
        }
        (Dialect::X32, ["config", "routing", which, block]) => {
            let i = ["1-8", "9-16", "17-24", "25-32"]
                .iter()
                .position(|b| b == block);
            let table = if *which == "CARD" {
                &d.x32_card
            } else {
                &d.x32_in
            };
            match i {
                Some(i) => msg(addr, vec![OscType::Int(table[i])]),
                None => return Vec::new(),
            }
        }
        (Dialect::X32, ["xremote"]) | (Dialect::Wing, ["*S"]) => {
            sh.subscribers
                .insert(from, Instant::now() + Duration::from_secs(10));
            return Vec::new();
        }
        (Dialect::Wing, ["?"]) => msg(addr, vec![s(&wing_identity(d))]),
        (Dialect::Wing, ["ch", ch, "name"]) => msg(addr, vec![name(ch)]),
        (Dialect::Wing, ["ch", ch, "in", "conn", "grp"]) => {
            let _ = ch;
            msg(addr, vec![s("LCL")])
        }
        (Dialect::Wing, ["ch", ch, "in", "conn", "in"]) => {
            let n: i32 = ch.parse().unwrap_or(0);
            // The triplet form: string, normalised float, integer.
            msg(
                addr,
                vec![s(&n.to_string()), OscType::Float(0.0), OscType::Int(n)],
            )
        }
        (Dialect::Wing, ["io", "out", "USB", n, leaf]) => {
            let n: u16 = n.parse().unwrap_or(0);
            let (grp, input) = d
                .wing_usb
                .get(&n)
                .cloned()
                .unwrap_or(("CH".into(), i32::from(n)));
            match *leaf {
                "grp" => msg(addr, vec![s(&grp)]),
                "in" => msg(addr, vec![OscType::Int(input)]),
                _ => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    vec![out]
}
