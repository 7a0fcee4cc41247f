//! One console's conversation, without I/O: which datagrams are
//! believed, what they change, what to report, what to ask next.
//!
//! NOTE: only the configured address (its resolved IPs, each family's
//! port or the one given) is believed; with discovery, only identity
//! answers to our own broadcasts during their window, from a console's
//! own ports. Once a console is chosen, only its address is believed
//! (a WING's discovery port too). Everything else is dropped and counted.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rakkr_console::presence::{Edge, Presence};
use rakkr_console::state::Console;
use rakkr_console::{Family, Identity, Update, wing, x32};

use super::targets::{self, Target};
use super::{ChannelAlias, ConsoleView};
use crate::config::ConsoleConfig;

/// What a datagram or the passing of time calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Report this edge (found, lost, back, swapped, firmware).
    Edge(Box<Edge>),
    /// Console channel `channel` was renamed; `device_channels` carry it.
    Renamed {
        channel: u16,
        from: String,
        to: String,
        device_channels: Vec<u16>,
    },
    /// Ask for every name and the routing (a console found, back, swapped).
    Refresh,
}

/// USB card channels per family (X-USB 32, X AIR 18, WING 48).
fn card_channels(f: Family) -> u16 {
    match f {
        Family::X32 => 32,
        Family::Xair => 18,
        Family::Wing => wing::USB_OUTPUTS,
    }
}

#[derive(Debug)]
pub struct Session {
    cfg: ConsoleConfig,
    targets: Vec<Target>,
    locked: Option<Target>,
    console: Console,
    presence: Presence,
    dropped: u64,
    /// Discovery's window end and the answers heard in it.
    discovery: Option<(u64, Vec<(Target, Identity)>)>,
    candidates: Vec<String>,
    last_seen: Option<String>,
    problem: Option<String>,
    mac_of: fn(IpAddr) -> Option<String>,
}

impl Session {
    pub fn new(cfg: ConsoleConfig, mac_of: fn(IpAddr) -> Option<String>) -> Self {
        Self {
            cfg,
            targets: Vec::new(),
            locked: None,
            console: Console::default(),
            presence: Presence::default(),
            dropped: 0,
            discovery: None,
            candidates: Vec::new(),
            last_seen: None,
            problem: None,
            mac_of,
        }
    }

    pub fn set_targets(&mut self, targets: Vec<Target>) {
        self.targets = targets;
    }

    pub fn set_problem(&mut self, problem: Option<String>) {
        self.problem = problem;
    }

    pub fn locked(&self) -> Option<Target> {
        self.locked
    }

    /// Opens discovery's window (until `until_ms`); the caller broadcasts.
    pub fn start_discovery(&mut self, until_ms: u64) {
        self.discovery = Some((until_ms, Vec::new()));
    }

    pub fn discovering(&self) -> bool {
        self.discovery.is_some()
    }

    fn believed(&self, from: SocketAddr) -> bool {
        match self.locked {
            Some(t) => {
                from == t.addr
                    || (t.family == Some(Family::Wing)
                        && from == SocketAddr::new(t.addr.ip(), wing::DISCOVERY_PORT))
            }
            None if self.discovery.is_some() => {
                [10023, 10024, wing::DISCOVERY_PORT].contains(&from.port())
            }
            None => self.targets.iter().any(|t| t.addr == from),
        }
    }

    /// A datagram from `from` at `now_ms` (monotonic).
    pub fn heard(&mut self, datagram: &[u8], from: SocketAddr, now_ms: u64) -> Vec<Effect> {
        if !self.believed(from) {
            self.dropped += 1;
            tracing::debug!(%from, "dropped a datagram from elsewhere than the console");
            return Vec::new();
        }
        let update = match rakkr_console::parse_datagram(datagram) {
            Ok(Some(u)) => u,
            Ok(None) => return Vec::new(),
            Err(e) => {
                self.dropped += 1;
                tracing::debug!(%from, error = %e, "dropped a datagram that is not a console's answer");
                return Vec::new();
            }
        };
        match update {
            Update::Identity(id) => self.identity(id, from, now_ms),
            // NOTE: a lost console's answers wait for its identity: one that
            // reboots as another console must not rename the old one's
            // channels.
            other if self.locked.is_some() && !self.presence.is_lost() => {
                self.presence.touch(now_ms);
                self.fact(other)
            }
            _ => Vec::new(),
        }
    }

    fn identity(&mut self, mut id: Identity, from: SocketAddr, now_ms: u64) -> Vec<Effect> {
        id.mac = (self.mac_of)(from.ip());
        let osc = if from.port() == wing::DISCOVERY_PORT {
            SocketAddr::new(from.ip(), Family::Wing.osc_port())
        } else {
            from
        };
        let target = Target {
            addr: osc,
            family: Some(id.family),
        };
        if self.locked.is_none()
            && let Some((_, heard)) = &mut self.discovery
        {
            if !heard.iter().any(|(t, _)| t.addr == osc) {
                heard.push((target, id));
            }
            return Vec::new();
        }
        self.lock(target, id, now_ms)
    }

    fn lock(&mut self, target: Target, id: Identity, now_ms: u64) -> Vec<Effect> {
        self.locked = Some(target);
        self.candidates.clear();
        self.problem = None;
        self.last_seen = Some(crate::util::now_iso8601());
        let edges = self.presence.seen(id.clone(), now_ms);
        if edges.iter().any(|e| matches!(e, Edge::Swapped { .. })) {
            // Another console: its names are not renames of the old one's.
            self.console.forget();
        }
        self.console.apply(Update::Identity(id));
        let refresh = edges
            .iter()
            .any(|e| matches!(e, Edge::Found(_) | Edge::Back { .. } | Edge::Swapped { .. }));
        let mut out: Vec<Effect> = edges
            .into_iter()
            .map(|e| Effect::Edge(Box::new(e)))
            .collect();
        if refresh {
            out.push(Effect::Refresh);
        }
        out
    }

    fn fact(&mut self, update: Update) -> Vec<Effect> {
        let Some(r) = self.console.apply(update) else {
            return Vec::new();
        };
        let Some(from) = r.from else {
            return Vec::new(); // first heard: no rename
        };
        let device_channels = self
            .aliases()
            .iter()
            .filter(|a| a.console_channel == Some(r.channel))
            .map(|a| a.channel)
            .collect();
        vec![Effect::Renamed {
            channel: r.channel,
            from,
            to: r.to,
            device_channels,
        }]
    }

    /// Time passed: discovery's window closes, a silent console is lost.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some((until, _)) = &self.discovery
            && now_ms >= *until
        {
            let (_, heard) = self.discovery.take().unwrap_or_default();
            match heard.len() {
                0 => {
                    self.problem = Some(format!(
                        "no console answered discovery on {} (set console.address)",
                        self.cfg.discovery_address
                    ))
                }
                1 => {
                    let (t, id) = heard.into_iter().next().expect("one");
                    out.extend(self.lock(t, id, now_ms));
                }
                n => {
                    self.candidates = heard
                        .iter()
                        .map(|(t, id)| format!("{} {:?} at {}", id.model, id.name, t.addr))
                        .collect();
                    self.problem = Some(format!(
                        "{n} consoles answered discovery ({}): set console.address to the one this node is wired to",
                        self.candidates.join("; ")
                    ));
                }
            }
        }
        if let Some(e) = self
            .presence
            .tick(now_ms, self.cfg.lost_after.as_millis() as u64)
        {
            out.push(Effect::Edge(Box::new(e)));
        }
        out
    }

    /// The console's family, once it answered.
    pub fn family(&self) -> Option<Family> {
        self.console.identity.as_ref().map(|i| i.family)
    }

    /// Identity queries: the chosen console's, else every target's.
    pub fn identity_queries(&self) -> Vec<(Vec<u8>, SocketAddr)> {
        match self.locked {
            Some(t) => targets::identity_queries(&t),
            None => self
                .targets
                .iter()
                .flat_map(targets::identity_queries)
                .collect(),
        }
    }

    /// Every name and routing query, for the chosen console.
    pub fn state_queries(&self) -> Vec<(Vec<u8>, SocketAddr)> {
        let (Some(t), Some(f)) = (self.locked, self.family()) else {
            return Vec::new();
        };
        let all = match f {
            Family::Wing => wing::state_queries(),
            f => x32::state_queries(f),
        };
        all.into_iter().map(|q| (q, t.addr)).collect()
    }

    /// The change subscription (renewed every 7 s by the caller).
    pub fn subscribe(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let (t, f) = (self.locked?, self.family()?);
        Some(match f {
            Family::Wing => (wing::subscribe(), t.addr),
            _ => (x32::subscribe(), t.addr),
        })
    }

    fn aliases(&self) -> Vec<ChannelAlias> {
        let Some(f) = self.family() else {
            return Vec::new();
        };
        let routing: &BTreeMap<u16, u16> = &self.cfg.routing;
        self.console
            .aliases(card_channels(f), routing)
            .into_iter()
            .map(|a| ChannelAlias {
                channel: a.card_channel,
                console_channel: a.console_channel,
                name: a.name,
                routing: format!("{:?}", a.routing).to_lowercase(),
            })
            .collect()
    }

    pub fn view(&self) -> ConsoleView {
        if !self.cfg.enabled() {
            return ConsoleView::off();
        }
        let id = self.console.identity.as_ref();
        let state = if self.presence.is_lost() {
            "lost"
        } else if self.locked.is_some() && id.is_some() {
            "found"
        } else if self.candidates.len() > 1 {
            "ambiguous"
        } else {
            "searching"
        };
        ConsoleView {
            state: state.into(),
            address: self.locked.map(|t| t.addr.to_string()),
            family: id.map(|i| i.family.as_str().to_owned()),
            model: id.map(|i| i.model.clone()),
            name: id.map(|i| i.name.clone()),
            firmware: id.map(|i| i.firmware.clone()),
            serial: id.and_then(|i| i.serial.clone()),
            mac: id.and_then(|i| i.mac.clone()),
            last_seen: self.last_seen.clone(),
            channels: self.aliases(),
            candidates: self.candidates.clone(),
            dropped: self.dropped,
            problem: match (&self.problem, state) {
                (Some(p), _) => Some(p.clone()),
                (_, "lost") => Some("the console stopped answering".into()),
                (_, "searching") if !self.targets.is_empty() => Some(format!(
                    "no answer yet from {}",
                    (self.targets.iter())
                        .map(|t| t.addr.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests;
