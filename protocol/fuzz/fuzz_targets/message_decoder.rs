//! Fuzzes every message decoder directly (postcard bodies, no framing):
//! arbitrary bytes must decode to a message or a typed error, never a
//! panic; a message that decodes must encode to bytes that decode and
//! encode to the same bytes again (bytes, not values: meter levels may be
//! NaN); a decoded command's (or file read's) limits check must not panic.
//!
//! Run: `cd protocol/fuzz && cargo fuzz run message_decoder` (see README).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakkr_protocol::{AgentMsg, ControllerMsg};

fn round_trip<M>(data: &[u8]) -> Option<M>
where
    M: serde::Serialize + serde::de::DeserializeOwned,
{
    let m: M = postcard::from_bytes(data).ok()?;
    let once = postcard::to_allocvec(&m).expect("a decoded message encodes");
    let back: M = postcard::from_bytes(&once).expect("an encoded message decodes");
    let twice = postcard::to_allocvec(&back).expect("it encodes again");
    assert_eq!(once, twice, "encode(decode(encode(m))) == encode(m)");
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    match round_trip::<ControllerMsg>(data) {
        Some(ControllerMsg::Command(c)) => {
            let _ = c.check_limits();
        }
        Some(ControllerMsg::ReadFile(r)) => {
            let _ = r.check_limits();
        }
        _ => {}
    }
    let _ = round_trip::<AgentMsg>(data);
});
