//! X32-class consoles over the network, without I/O: what to send an X32,
//! M32, X AIR or WING, and what its answers mean.
//!
//! - [`osc`]: OSC datagrams through `rosc`, with our bounds.
//! - [`x32`], [`wing`]: each family's queries and answers.
//! - [`model`]: the typed facts (identity, names, routing).
//! - [`routing`]: which console channel a USB card channel carries.
//! - [`state`]: a console's facts folded together; names that change.
//! - [`presence`]: found, lost, back, swapped, firmware changed.
//!
//! Everything a console sends is untrusted: a datagram is at most
//! [`osc::MAX_DATAGRAM`] bytes, strings are cut to [`osc::MAX_STRING`]
//! bytes, channel numbers are checked against the family's (X32 1–32,
//! WING 1–40, WING USB outputs 1–48) and anything unasked-for is ignored.
//! `fuzz/` holds a cargo-fuzz target over [`parse_datagram`].

pub mod model;
pub mod osc;
pub mod presence;
pub mod routing;
pub mod state;
pub mod wing;
pub mod x32;

pub use model::{Family, Identity, Update};
pub use osc::DecodeError;

/// Reads one datagram from a console: a WING discovery answer (plain
/// text) or an OSC message of either dialect. `Ok(None)`: well-formed,
/// but nothing we asked about.
pub fn parse_datagram(datagram: &[u8]) -> Result<Option<Update>, DecodeError> {
    if datagram.starts_with(b"WING,") {
        if datagram.len() > osc::MAX_DATAGRAM {
            return Err(DecodeError::TooLong {
                len: datagram.len(),
                max: osc::MAX_DATAGRAM,
            });
        }
        let text = std::str::from_utf8(datagram)
            .map_err(|_| DecodeError::Malformed("a WING answer that is not UTF-8".into()))?;
        return wing::parse_identity(text)
            .map(|id| Some(Update::Identity(id)))
            .ok_or_else(|| DecodeError::Malformed("a WING answer without its six fields".into()));
    }
    let m = osc::decode(datagram)?;
    Ok(x32::parse(&m).or_else(|| wing::parse(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use osc::{Arg, encode};

    /// Valid answers of both dialects, the seeds the mutations start from.
    fn seeds() -> Vec<Vec<u8>> {
        let s = |v: &str| Arg::Str(v.into());
        vec![
            encode("/xinfo", &[s("10.0.0.5"), s("FOH"), s("X32"), s("4.06")]),
            encode("/ch/17/config/name", &[s("Pastor")]),
            encode("/config/routing/CARD/1-8", &[Arg::Int(2)]),
            encode("/ch/3/name", &[s("Choir L")]),
            encode("/io/out/USB/3/in", &[s("5"), Arg::Float(0.5), Arg::Int(5)]),
            encode("/?", &[s("WING,10.0.0.6,MON,ngc-full,S1,3.0")]),
            b"WING,10.0.0.6,MON,ngc-full,S1,3.0".to_vec(),
        ]
    }

    /// Malformed packets never panic and never become facts they do not
    /// say: 200,000 mutations (bit flips, truncations, length words set to
    /// extremes, type tags swapped, bytes appended) of valid answers; the
    /// cargo-fuzz target (`fuzz/`) runs the same function for longer.
    #[test]
    fn malformed_datagrams_are_errors_or_ignored_never_a_panic() {
        let mut rng = fastrand::Rng::with_seed(0x05C_2026);
        let seeds = seeds();
        let tags = [
            b'i', b'f', b's', b'b', b'[', b']', b'h', b't', b'm', b'N', 0, b',',
        ];
        let mut parsed = 0u32;
        for _ in 0..200_000 {
            let mut d = seeds[rng.usize(..seeds.len())].clone();
            for _ in 0..rng.usize(1..4) {
                match rng.u8(..5) {
                    0 if !d.is_empty() => {
                        let i = rng.usize(..d.len());
                        d[i] ^= 1 << rng.u8(..8);
                    }
                    1 => d.truncate(rng.usize(..=d.len())),
                    2 if d.len() >= 4 => {
                        let i = rng.usize(..=d.len() - 4) & !3;
                        let v = [0u32, 0x7fff_ffff, 0xffff_ffff, 4096][rng.usize(..4)];
                        d[i..i + 4].copy_from_slice(&v.to_be_bytes());
                    }
                    3 if !d.is_empty() => {
                        let i = rng.usize(..d.len());
                        d[i] = tags[rng.usize(..tags.len())];
                    }
                    _ => d.extend((0..rng.usize(..64)).map(|_| rng.u8(..))),
                }
            }
            if let Ok(Some(u)) = parse_datagram(&d) {
                parsed += 1;
                check_bounds(&u);
            }
        }
        assert!(parsed > 0, "some mutations stay valid answers");
        assert!(parse_datagram(&vec![b'/'; osc::MAX_DATAGRAM + 1]).is_err());
    }

    fn check_bounds(u: &Update) {
        let within = |s: &str| assert!(s.len() <= osc::MAX_STRING && !s.contains('\0'), "{s:?}");
        match u {
            Update::Identity(id) => {
                for s in [&id.model, &id.name, &id.firmware, &id.ip] {
                    within(s);
                }
            }
            Update::Name { channel, name } => {
                assert!((1..=40).contains(channel));
                within(name);
            }
            Update::X32InputBlock { block, .. } | Update::X32CardBlock { block, .. } => {
                assert!(*block < 4)
            }
            Update::WingUsbGroup { output, .. } | Update::WingUsbInput { output, .. } => {
                assert!((1..=48).contains(output))
            }
            _ => {}
        }
    }
}
