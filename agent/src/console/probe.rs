//! A one-shot ask within a budget, for commands that run without the
//! daemon (`--print-inventory`, `console`): the identity, then every
//! name and the routing as soon as the console answers. Blocking (std
//! UDP with read timeouts); never waits past the budget.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::session::{Effect, Session};
use super::{ConsoleView, neighbour, targets};
use crate::config::ConsoleConfig;

/// What the console said within `budget`.
pub fn ask(cfg: &ConsoleConfig, budget: Duration) -> ConsoleView {
    if !cfg.enabled() {
        return ConsoleView::off();
    }
    let start = Instant::now();
    let mut s = Session::new(cfg.clone(), neighbour::mac_of);
    let ips = match targets::resolve(cfg) {
        Ok(ips) => ips,
        Err(e) => {
            s.set_problem(Some(format!("resolving console.address: {e}")));
            return s.view();
        }
    };
    s.set_targets(targets::for_address(cfg, &ips));
    let v6 = ips.iter().any(|ip| ip.is_ipv6());
    let socket = match UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" })
        .and_then(|s| s.set_broadcast(!v6).map(|()| s))
    {
        Ok(sock) => sock,
        Err(e) => {
            s.set_problem(Some(format!("opening a UDP socket: {e}")));
            return s.view();
        }
    };
    let send = |queries: Vec<(Vec<u8>, std::net::SocketAddr)>| {
        for (q, to) in queries {
            if let Err(e) = socket.send_to(&q, to) {
                tracing::debug!(%to, error = %e, "console query not sent");
            }
        }
    };
    let ms = |i: Instant| i.duration_since(start).as_millis() as u64;
    if cfg.address.is_none() {
        // Half the budget to hear discovery's answers, half for names.
        s.start_discovery(budget.as_millis() as u64 / 2);
        send(targets::discovery(cfg));
    } else {
        send(s.identity_queries());
    }
    let mut buf = vec![0u8; rakkr_console::osc::MAX_DATAGRAM + 1];
    loop {
        let now = Instant::now();
        for e in s.tick(ms(now)) {
            if e == Effect::Refresh {
                send(s.state_queries());
            }
        }
        let left = budget.saturating_sub(now.duration_since(start));
        if left.is_zero() {
            break;
        }
        // NOTE: a discovery window closing needs a tick, not a datagram.
        let wait = if s.discovering() {
            left.min(Duration::from_millis(10))
        } else {
            left
        };
        if socket.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            for e in s.heard(&buf[..n], from, ms(Instant::now())) {
                if e == Effect::Refresh {
                    send(s.state_queries());
                }
            }
        }
    }
    s.view()
}
