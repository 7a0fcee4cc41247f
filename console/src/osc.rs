//! OSC datagrams to and from a console, through the `rosc` crate, with
//! our bounds on top of it: what a console sends is untrusted input.
//!
//! Bounds (documented in the crate root and checked here, before anything
//! reads a value): a datagram of at most [`MAX_DATAGRAM`] bytes, a message
//! (never a bundle: neither console family sends bundles), an address of
//! at most [`MAX_ADDRESS`] bytes starting with `/`, at most [`MAX_ARGS`]
//! arguments, every string cut to [`MAX_STRING`] bytes at a character
//! boundary.

use rosc::{OscMessage, OscPacket, OscType};

/// Largest datagram read (the answers we ask for are under 200 bytes; a
/// WING node dump can reach 32 KB, but we never ask for one).
pub const MAX_DATAGRAM: usize = 4096;
/// Longest OSC address accepted.
pub const MAX_ADDRESS: usize = 128;
/// Most arguments in one message.
pub const MAX_ARGS: usize = 16;
/// Strings are cut to this many bytes (X32 names are 12 characters, WING
/// names 16; network names and firmware strings are short).
pub const MAX_STRING: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("datagram of {len} bytes is over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("not OSC: {0}")]
    Malformed(String),
    #[error("an OSC bundle (consoles send plain messages)")]
    Bundle,
    #[error("OSC address {0:?} is not a console address")]
    Address(String),
    #[error("{count} arguments is over the limit of {max}")]
    TooManyArgs { count: usize, max: usize },
}

/// One argument, as much as a console's answers use.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i32),
    Float(f32),
    Str(String),
    /// Any other OSC type (blobs, times, …): present, never read.
    Other,
}

/// A decoded, bounded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub addr: String,
    pub args: Vec<Arg>,
}

impl Message {
    /// The `i`-th argument as a string, if it is one.
    pub fn str(&self, i: usize) -> Option<&str> {
        match self.args.get(i) {
            Some(Arg::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The first argument that is a string (WING answers a leaf with
    /// `,s` or `,sff`: the string form first).
    pub fn first_str(&self) -> Option<&str> {
        self.args.iter().find_map(|a| match a {
            Arg::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first integer argument (or an integral float: WING's `,sfi`
    /// triplets and X32's `,i` both carry one).
    pub fn first_int(&self) -> Option<i32> {
        self.args.iter().find_map(|a| match a {
            Arg::Int(i) => Some(*i),
            _ => None,
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary, control
/// characters dropped (a console name ends up in file names and logs).
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Decodes one datagram from a console.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: datagram.len(),
            max: MAX_DATAGRAM,
        });
    }
    let (_, packet) =
        rosc::decoder::decode_udp(datagram).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let OscPacket::Message(OscMessage { addr, args }) = packet else {
        return Err(DecodeError::Bundle);
    };
    if !addr.starts_with('/') || addr.len() > MAX_ADDRESS {
        return Err(DecodeError::Address(bounded(&addr, MAX_ADDRESS)));
    }
    if args.len() > MAX_ARGS {
        return Err(DecodeError::TooManyArgs {
            count: args.len(),
            max: MAX_ARGS,
        });
    }
    let args = args
        .into_iter()
        .map(|a| match a {
            OscType::Int(i) => Arg::Int(i),
            OscType::Float(f) => Arg::Float(f),
            OscType::String(s) => Arg::Str(bounded(&s, MAX_STRING)),
            _ => Arg::Other,
        })
        .collect();
    Ok(Message { addr, args })
}

/// Encodes a message with string or integer arguments.
pub fn encode(addr: &str, args: &[Arg]) -> Vec<u8> {
    let args = args
        .iter()
        .map(|a| match a {
            Arg::Int(i) => OscType::Int(*i),
            Arg::Float(f) => OscType::Float(*f),
            Arg::Str(s) => OscType::String(s.clone()),
            Arg::Other => OscType::Nil,
        })
        .collect();
    let packet = OscPacket::Message(OscMessage {
        addr: addr.to_owned(),
        args,
    });
    // NOTE: encoding a message of strings and numbers into a Vec cannot
    // fail (rosc only fails on its output's errors; a Vec has none).
    rosc::encoder::encode(&packet).unwrap_or_default()
}

/// A query: the address alone, no arguments (how both families are asked
/// for a value).
pub fn query(addr: &str) -> Vec<u8> {
    encode(addr, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_the_padded_address_and_an_empty_type_tag() {
        assert_eq!(query("/xinfo"), b"/xinfo\0\0,\0\0\0");
    }

    #[test]
    fn strings_are_cut_at_a_character_boundary_without_control_characters() {
        assert_eq!(bounded("Kick\u{7}In", 64), "KickIn");
        assert_eq!(bounded("ééé", 5), "éé");
    }

    #[test]
    fn a_reply_round_trips_and_bundles_and_oversize_are_refused() {
        let bytes = encode("/ch/01/config/name", &[Arg::Str("Kick".into())]);
        let m = decode(&bytes).unwrap();
        assert_eq!(m.addr, "/ch/01/config/name");
        assert_eq!(m.first_str(), Some("Kick"));
        assert_eq!(
            decode(&vec![0; MAX_DATAGRAM + 1]),
            Err(DecodeError::TooLong {
                len: MAX_DATAGRAM + 1,
                max: MAX_DATAGRAM
            })
        );
        let bundle = rosc::encoder::encode(&OscPacket::Bundle(rosc::OscBundle {
            timetag: rosc::OscTime {
                seconds: 0,
                fractional: 1,
            },
            content: vec![],
        }))
        .unwrap();
        assert_eq!(decode(&bundle), Err(DecodeError::Bundle));
    }
}
