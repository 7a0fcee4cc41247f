//! The WING dialect: discovery, identity, names, routing.
//!
//! See: "WING OSC Documentation" (P.-G. Maillot, v0.59), "Remote
//! communication with WING", "Subscribing to OSC Data":
//! - The 5-byte datagram `WING?` to UDP 2222 (broadcast works) is answered
//!   `WING,<ip>,<name>,<model>,<serial>,<firmware>` (plain text, not OSC);
//!   OSC `/?` to UDP 2223 answers the same string as `,s`.
//! - A get is the address alone; a leaf answers `,s` or a triplet
//!   (`,sff`, `,sfi`) whose string form comes first. Channel strips
//!   `/ch/1` … `/ch/40`, names `/ch/N/name`, the strip's input
//!   `/ch/N/in/conn/grp` + `/ch/N/in/conn/in`; the USB outputs to the
//!   computer `/io/out/USB/N/grp` + `/io/out/USB/N/in` (N 1–48).
//! - `/*S` subscribes to change events (single-tag form) for 10 s; one
//!   subscription at a time, the last requester's.

use crate::model::{Family, Identity, Update};
use crate::osc::{self, MAX_STRING, Message};

/// The discovery (and identity) datagram, to UDP 2222.
pub const DISCOVERY: &[u8] = b"WING?";
/// The discovery port.
pub const DISCOVERY_PORT: u16 = 2222;
/// USB outputs to the computer.
pub const USB_OUTPUTS: u16 = 48;
/// Renew before the console's 10 s lapse.
pub const SUBSCRIBE_EVERY_SECS: u64 = 7;

pub fn identity_query() -> Vec<u8> {
    osc::query("/?")
}

pub fn subscribe() -> Vec<u8> {
    osc::query("/*S")
}

/// Every query for names and routing.
pub fn state_queries() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ch in 1..=Family::Wing.channels() {
        out.push(osc::query(&format!("/ch/{ch}/name")));
        out.push(osc::query(&format!("/ch/{ch}/in/conn/grp")));
        out.push(osc::query(&format!("/ch/{ch}/in/conn/in")));
    }
    for n in 1..=USB_OUTPUTS {
        out.push(osc::query(&format!("/io/out/USB/{n}/grp")));
        out.push(osc::query(&format!("/io/out/USB/{n}/in")));
    }
    out
}

/// Reads a `WING,<ip>,<name>,<model>,<serial>,<firmware>` answer (the
/// discovery datagram's, or `/?`'s string).
pub fn parse_identity(text: &str) -> Option<Identity> {
    let mut f = text.trim_end_matches('\0').splitn(6, ',');
    if f.next()? != "WING" {
        return None;
    }
    let (ip, name, model, serial, firmware) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let b = |s: &str| osc::bounded(s, MAX_STRING);
    Some(Identity {
        family: Family::Wing,
        model: b(model),
        name: b(name),
        firmware: b(firmware),
        ip: b(ip),
        serial: Some(b(serial)).filter(|s| !s.is_empty()),
        mac: None,
    })
}

fn number(s: &str, max: u16) -> Option<u16> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u16 = s.parse().ok()?;
    (1..=max).contains(&n).then_some(n)
}

fn int(m: &Message) -> Option<u16> {
    m.first_int()
        .or_else(|| m.first_str()?.trim().parse().ok())
        .and_then(|i| u16::try_from(i).ok())
}

fn group(m: &Message) -> Option<String> {
    let g = m.first_str()?;
    (!g.is_empty() && g.len() <= 8 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| g.to_owned())
}

/// Reads one OSC message; `None` for anything we did not ask about.
pub fn parse(m: &Message) -> Option<Update> {
    let parts: Vec<&str> = m.addr.split('/').skip(1).collect();
    let ch = |n: &str| number(n, Family::Wing.channels());
    match parts.as_slice() {
        ["?"] => parse_identity(m.first_str()?).map(Update::Identity),
        ["ch", n, "name"] => Some(Update::Name {
            channel: ch(n)?,
            name: m.first_str()?.to_owned(),
        }),
        ["ch", n, "in", "conn", "grp"] => Some(Update::WingChannelGroup {
            channel: ch(n)?,
            group: group(m)?,
        }),
        ["ch", n, "in", "conn", "in"] => Some(Update::WingChannelInput {
            channel: ch(n)?,
            input: int(m)?,
        }),
        ["io", "out", "USB", n, "grp"] => Some(Update::WingUsbGroup {
            output: number(n, USB_OUTPUTS)?,
            group: group(m)?,
        }),
        ["io", "out", "USB", n, "in"] => Some(Update::WingUsbInput {
            output: number(n, USB_OUTPUTS)?,
            input: int(m)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osc::{Arg, decode, encode};

    #[test]
    fn the_discovery_answer_is_the_identity_with_its_serial() {
        let id = parse_identity("WING,10.0.0.6,MON,ngc-full,S1234,3.0.5").unwrap();
        assert_eq!(id.family, Family::Wing);
        assert_eq!(id.serial.as_deref(), Some("S1234"));
        assert_eq!(id.firmware, "3.0.5");
        // A firmware string may itself hold commas: it is the rest.
        let id = parse_identity("WING,1,N,ngc-full,S,1.07.2-40-g1b1b292b:develop").unwrap();
        assert_eq!(id.firmware, "1.07.2-40-g1b1b292b:develop");
        assert_eq!(parse_identity("X32,1,2,3,4,5"), None);
        assert_eq!(parse_identity("WING,1,2"), None);
    }

    #[test]
    fn names_and_routing_in_string_and_triplet_forms() {
        let p = |addr: &str, args: &[Arg]| parse(&decode(&encode(addr, args)).unwrap());
        assert_eq!(
            p("/ch/40/name", &[Arg::Str("Choir L".into())]),
            Some(Update::Name {
                channel: 40,
                name: "Choir L".into()
            })
        );
        assert_eq!(p("/ch/41/name", &[Arg::Str("x".into())]), None);
        assert_eq!(
            p(
                "/io/out/USB/3/in",
                &[Arg::Str("5".into()), Arg::Float(0.1), Arg::Int(5)]
            ),
            Some(Update::WingUsbInput {
                output: 3,
                input: 5
            })
        );
        assert_eq!(
            p("/io/out/USB/03/grp", &[Arg::Str("CH".into())]),
            Some(Update::WingUsbGroup {
                output: 3,
                group: "CH".into()
            })
        );
        assert_eq!(p("/io/out/USB/3/grp", &[Arg::Str("../x".into())]), None);
    }
}
