//! Where to ask: the configured address (a host name resolved, the port
//! given or each family's own), or discovery's broadcasts.

use std::net::{IpAddr, SocketAddr};

use rakkr_console::{Family, wing};

use crate::config::ConsoleConfig;

/// One address to ask, and in which dialect (`None`: both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub family: Option<Family>,
}

/// The family a port means (a console's own ports).
pub fn family_of_port(port: u16) -> Option<Family> {
    match port {
        10023 => Some(Family::X32),
        10024 => Some(Family::Xair),
        2222 | 2223 => Some(Family::Wing),
        _ => None,
    }
}

/// The targets for `ips` (the configured host's addresses).
pub fn for_address(cfg: &ConsoleConfig, ips: &[IpAddr]) -> Vec<Target> {
    let Some((_, port)) = &cfg.address else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &ip in ips {
        match (port, cfg.family) {
            (Some(p), f) => out.push(Target {
                addr: SocketAddr::new(ip, *p),
                family: f.or_else(|| family_of_port(*p)),
            }),
            (None, Some(f)) => out.push(Target {
                addr: SocketAddr::new(ip, f.osc_port()),
                family: Some(f),
            }),
            (None, None) => {
                for f in [Family::X32, Family::Xair, Family::Wing] {
                    out.push(Target {
                        addr: SocketAddr::new(ip, f.osc_port()),
                        family: Some(f),
                    });
                }
            }
        }
    }
    out
}

/// Resolves the configured host (blocking; the task calls it on the
/// blocking pool).
pub fn resolve(cfg: &ConsoleConfig) -> std::io::Result<Vec<IpAddr>> {
    use std::net::ToSocketAddrs;
    let Some((host, _)) = &cfg.address else {
        return Ok(Vec::new());
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let mut ips: Vec<IpAddr> = (host.as_str(), 0)
        .to_socket_addrs()?
        .map(|a| a.ip())
        .collect();
    ips.dedup();
    Ok(ips)
}

/// The identity queries for a target: `(datagram, to)`.
pub fn identity_queries(t: &Target) -> Vec<(Vec<u8>, SocketAddr)> {
    match t.family {
        Some(Family::Wing) => vec![(wing::identity_query(), t.addr)],
        Some(_) => vec![(rakkr_console::x32::identity_query(), t.addr)],
        None => vec![
            (rakkr_console::x32::identity_query(), t.addr),
            (wing::identity_query(), t.addr),
        ],
    }
}

/// Discovery's broadcasts: `/xinfo` to 10023 and 10024, `WING?` to 2222.
pub fn discovery(cfg: &ConsoleConfig) -> Vec<(Vec<u8>, SocketAddr)> {
    let Ok(ip) = cfg.discovery_address.parse::<IpAddr>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if cfg.family.is_none_or(|f| f != Family::Wing) {
        for port in [10023, 10024] {
            if cfg.family.is_none() || cfg.family.map(Family::osc_port) == Some(port) {
                out.push((
                    rakkr_console::x32::identity_query(),
                    SocketAddr::new(ip, port),
                ));
            }
        }
    }
    if cfg.family.is_none_or(|f| f == Family::Wing) {
        out.push((
            wing::DISCOVERY.to_vec(),
            SocketAddr::new(ip, wing::DISCOVERY_PORT),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_is_asked_on_every_familys_port_a_given_port_in_its_dialect() {
        let mut cfg = ConsoleConfig {
            address: Some(("10.0.0.5".into(), None)),
            ..ConsoleConfig::default()
        };
        let ips = resolve(&cfg).unwrap();
        let ports: Vec<u16> = for_address(&cfg, &ips)
            .iter()
            .map(|t| t.addr.port())
            .collect();
        assert_eq!(ports, [10023, 10024, 2223]);
        cfg.address = Some(("10.0.0.5".into(), Some(2223)));
        assert_eq!(for_address(&cfg, &ips)[0].family, Some(Family::Wing));
        cfg.address = Some(("10.0.0.5".into(), Some(40000)));
        assert_eq!(for_address(&cfg, &ips)[0].family, None);
        assert_eq!(identity_queries(&for_address(&cfg, &ips)[0]).len(), 2);
        assert_eq!(discovery(&cfg).len(), 3);
    }
}
