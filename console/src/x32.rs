//! The X32 dialect (X32, M32 and X AIR): what to ask and how to read the
//! answers.
//!
//! See: "Unofficial X32/M32 OSC Remote Protocol" (P.-G. Maillot), §
//! "/xinfo", "Channel (/ch) data", "Configuration (/config) data":
//! - `/xinfo` → `,ssss` console IP, network name, model, firmware;
//!   `/info` → `,ssss` server version, name, model, firmware.
//! - `/ch/[01…32]/config/name` → `,s` (≤ 12 characters);
//!   `/ch/[01…32]/config/source` → `,i` {OFF, In01…32, Aux 1…6, USB L/R,
//!   FX, buses}.
//! - `/config/routing/IN/{1-8,9-16,17-24,25-32}` → `,i` source block of
//!   inputs 1–32 {AN1-8 … AN25-32 (0–3), A1-8 … A41-48 (4–9), B (10–15),
//!   CARD1-8 … CARD25-32 (16–19), UIN (20–23)};
//!   `/config/routing/CARD/{1-8,…}` → `,i` what the card (X-USB) sends
//!   the computer {the same input blocks 0–19, OUT1-8 (20), OUT9-16, P16
//!   (22, 23), AUX/Mon (24), AuxIN/TB (25), UOUT (26–31), UIN (32–35)}.
//! - A plain get is answered to the sender's address and port; `/xremote`
//!   makes the console send every change to that address for 10 s.

use crate::model::{Family, Identity, Update};
use crate::osc::{self, MAX_STRING, Message};

/// Ask again before the console's 10 s forget the subscription.
pub const XREMOTE_EVERY_SECS: u64 = 7;

/// Routing blocks (of 8 channels) on an X32.
pub const BLOCKS: [&str; 4] = ["1-8", "9-16", "17-24", "25-32"];

pub fn identity_query() -> Vec<u8> {
    osc::query("/xinfo")
}

pub fn subscribe() -> Vec<u8> {
    osc::query("/xremote")
}

/// Every query for the names, sources and routing of a console of
/// `family` (asked all at once; each answer stands alone).
pub fn state_queries(family: Family) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ch in 1..=family.channels() {
        out.push(osc::query(&format!("/ch/{ch:02}/config/name")));
    }
    // NOTE: X AIR routes its USB differently (`/routing/…`) and has no
    // `config/source`; its card channels are taken as its channels (the
    // routing override says otherwise).
    if family == Family::X32 {
        for ch in 1..=family.channels() {
            out.push(osc::query(&format!("/ch/{ch:02}/config/source")));
        }
        for b in BLOCKS {
            out.push(osc::query(&format!("/config/routing/IN/{b}")));
            out.push(osc::query(&format!("/config/routing/CARD/{b}")));
        }
    }
    out
}

fn channel(s: &str, family_max: u16) -> Option<u16> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u16 = s.parse().ok()?;
    (1..=family_max).contains(&n).then_some(n)
}

fn block(s: &str) -> Option<u8> {
    BLOCKS.iter().position(|b| *b == s).map(|i| i as u8)
}

fn code(m: &Message) -> Option<u16> {
    m.first_int().and_then(|i| u16::try_from(i).ok())
}

/// Reads one message; `None` for anything we did not ask about.
pub fn parse(m: &Message) -> Option<Update> {
    let parts: Vec<&str> = m.addr.split('/').skip(1).collect();
    match parts.as_slice() {
        ["xinfo"] => {
            let (ip, name, model, fw) = (m.str(0)?, m.str(1)?, m.str(2)?, m.str(3)?);
            Some(Update::Identity(identity(ip, name, model, fw)))
        }
        ["info"] => {
            let (name, model, fw) = (m.str(1)?, m.str(2)?, m.str(3)?);
            Some(Update::Identity(identity("", name, model, fw)))
        }
        ["ch", n, "config", "name"] => Some(Update::Name {
            channel: channel(n, 32)?,
            name: m.first_str()?.to_owned(),
        }),
        ["ch", n, "config", "source"] => Some(Update::X32ChannelSource {
            channel: channel(n, 32)?,
            source: code(m)?,
        }),
        ["config", "routing", "IN", b] => Some(Update::X32InputBlock {
            block: block(b)?,
            code: code(m)?,
        }),
        ["config", "routing", "CARD", b] => Some(Update::X32CardBlock {
            block: block(b)?,
            code: code(m)?,
        }),
        _ => None,
    }
}

fn identity(ip: &str, name: &str, model: &str, firmware: &str) -> Identity {
    let upper = model.to_ascii_uppercase();
    let family = if upper.starts_with("XR") || upper.starts_with("MR") {
        Family::Xair
    } else {
        Family::X32
    };
    Identity {
        family,
        model: osc::bounded(model, MAX_STRING),
        name: osc::bounded(name, MAX_STRING),
        firmware: osc::bounded(firmware, MAX_STRING),
        ip: osc::bounded(ip, MAX_STRING),
        serial: None,
        mac: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osc::{Arg, decode, encode};

    fn reply(addr: &str, args: &[Arg]) -> Option<Update> {
        parse(&decode(&encode(addr, args)).unwrap())
    }

    #[test]
    fn xinfo_is_the_identity_and_an_xr18_is_an_x_air() {
        let s = |v: &str| Arg::Str(v.into());
        let Some(Update::Identity(id)) =
            reply("/xinfo", &[s("10.0.0.5"), s("FOH"), s("X32"), s("4.06")])
        else {
            panic!("not an identity")
        };
        assert_eq!((id.family, id.name.as_str()), (Family::X32, "FOH"));
        let Some(Update::Identity(id)) = reply("/xinfo", &[s("1"), s("XR"), s("XR18"), s("1.17")])
        else {
            panic!("not an identity")
        };
        assert_eq!(id.family, Family::Xair);
    }

    #[test]
    fn names_sources_and_routing_are_read_and_out_of_range_ones_are_not() {
        let s = Arg::Str("Pastor".into());
        assert_eq!(
            reply("/ch/17/config/name", std::slice::from_ref(&s)),
            Some(Update::Name {
                channel: 17,
                name: "Pastor".into()
            })
        );
        assert_eq!(reply("/ch/33/config/name", std::slice::from_ref(&s)), None);
        assert_eq!(reply("/ch/00/config/name", std::slice::from_ref(&s)), None);
        assert_eq!(reply("/ch/+1/config/name", &[s]), None);
        assert_eq!(
            reply("/config/routing/CARD/17-24", &[Arg::Int(2)]),
            Some(Update::X32CardBlock { block: 2, code: 2 })
        );
        assert_eq!(reply("/config/routing/CARD/17-24", &[Arg::Int(-1)]), None);
        assert_eq!(
            reply("/ch/05/config/source", &[Arg::Int(21)]),
            Some(Update::X32ChannelSource {
                channel: 5,
                source: 21
            })
        );
        assert_eq!(reply("/ch/05/config/name", &[Arg::Int(3)]), None);
    }
}
