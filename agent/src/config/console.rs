//! `[console]`: the X32-class console the node is wired to, over the
//! network (see `console/`). Off unless an address is given or discovery
//! is switched on: on a LAN with several consoles, a guess would name a
//! show's files after another console's channels.

use std::collections::BTreeMap;
use std::time::Duration;

use rakkr_console::Family;
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    pub(super) address: Option<String>,
    pub(super) discovery: Option<bool>,
    pub(super) discovery_address: Option<String>,
    pub(super) model: Option<String>,
    pub(super) routing: Option<BTreeMap<String, i64>>,
    pub(super) lost_after_seconds: Option<u64>,
}

/// Most card channels a routing override may name (the capture's own
/// bound).
pub const ROUTING_MAX_CARD_CHANNEL: u16 = 512;
/// Highest console channel (a WING's 40).
pub const MAX_CONSOLE_CHANNEL: u16 = 40;

/// Resolved `[console]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `console.address` (`RAKKR_CONSOLE_ADDRESS`): host and port (`None`:
    /// the family's own port, or both families' when the model is `auto`).
    pub address: Option<(String, Option<u16>)>,
    /// Look for a console on the LAN when no address is given: `/xinfo`
    /// to UDP 10023 and 10024, `WING?` to UDP 2222, broadcast.
    pub discovery: bool,
    /// Where discovery is sent (default `255.255.255.255`; a subnet's
    /// broadcast address to pick the interface).
    pub discovery_address: String,
    /// `console.model`: `auto` (`None`), `x32`/`m32`, `xair`, `wing`.
    pub family: Option<Family>,
    /// Card channel → console channel, over what the console's routing
    /// says (setups its routing does not describe).
    pub routing: BTreeMap<u16, u16>,
    /// No answer for this long: the console is reported lost.
    pub lost_after: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            address: None,
            discovery: false,
            discovery_address: "255.255.255.255".into(),
            family: None,
            routing: BTreeMap::new(),
            lost_after: Duration::from_secs(15),
        }
    }
}

impl ConsoleConfig {
    /// Whether the agent looks for a console at all.
    pub fn enabled(&self) -> bool {
        self.address.is_some() || self.discovery
    }
}

pub(super) fn resolve(raw: RawConsole) -> Result<ConsoleConfig, ConfigError> {
    let bad = |msg: String| Err(ConfigError::Invalid(msg));
    let mut c = ConsoleConfig::default();
    if let Some(a) = raw.address.filter(|a| !a.trim().is_empty()) {
        c.address = Some(host_port(a.trim())?);
    }
    c.discovery = raw.discovery.unwrap_or(false);
    if let Some(d) = raw.discovery_address {
        if d.parse::<std::net::Ipv4Addr>().is_err() {
            return bad(format!(
                "console.discovery_address {d:?} is not an IPv4 address (e.g. 192.168.1.255)"
            ));
        }
        c.discovery_address = d;
    }
    match raw.model.as_deref().map(str::trim) {
        None | Some("auto") | Some("") => {}
        Some(m) => match Family::parse(m) {
            Some(f) => c.family = Some(f),
            None => {
                return bad(format!(
                    "console.model {m:?} is not auto, x32, m32, xair or wing"
                ));
            }
        },
    }
    for (card, console) in raw.routing.unwrap_or_default() {
        let card_n = card.trim().parse::<u16>().ok();
        let Some(card_n) = card_n.filter(|n| (1..=ROUTING_MAX_CARD_CHANNEL).contains(n)) else {
            return bad(format!(
                "console.routing key {card:?} is not a card channel 1..={ROUTING_MAX_CARD_CHANNEL}"
            ));
        };
        let Some(console) = u16::try_from(console)
            .ok()
            .filter(|n| (1..=MAX_CONSOLE_CHANNEL).contains(n))
        else {
            return bad(format!(
                "console.routing.{card} = {console} is not a console channel 1..={MAX_CONSOLE_CHANNEL}"
            ));
        };
        c.routing.insert(card_n, console);
    }
    if let Some(s) = raw.lost_after_seconds {
        if !(3..=600).contains(&s) {
            return bad(format!("console.lost_after_seconds {s} is outside 3..=600"));
        }
        c.lost_after = Duration::from_secs(s);
    }
    Ok(c)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn host_port(s: &str) -> Result<(String, Option<u16>), ConfigError> {
    let err = |why: &str| {
        ConfigError::Invalid(format!(
            "console.address {s:?} {why}: expected HOST or HOST:PORT (e.g. 192.168.1.20 or x32.local:10023)"
        ))
    };
    let (host, port) = if !s.starts_with('[') && s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        super::resolve::split_host_port(s).map_err(err)?
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(err("has no usable host"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err("has a port that is not 1..=65535"))?,
        ),
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_ports() {
        assert_eq!(host_port("10.0.0.5").unwrap(), ("10.0.0.5".into(), None));
        assert_eq!(
            host_port("x32.local:10023").unwrap(),
            ("x32.local".into(), Some(10023))
        );
        assert_eq!(host_port("[::1]:2223").unwrap(), ("::1".into(), Some(2223)));
        assert_eq!(host_port("fe80::1").unwrap(), ("fe80::1".into(), None));
        for bad in ["10.0.0.5:0", "10.0.0.5:x", ":10023", "[::1", "a b"] {
            let e = host_port(bad).unwrap_err().to_string();
            assert!(e.contains("console.address") && e.contains(bad), "{e}");
        }
    }
}
