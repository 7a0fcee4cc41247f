//! Fuzzes the frame decoder on both message directions: arbitrary bytes,
//! fed in arbitrary chunks, must yield messages or typed errors — never a
//! panic, a hang or an allocation of a claimed length.
//!
//! Run: `cd protocol/fuzz && cargo fuzz run frame_decoder` (see README).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rakkr_protocol::{AgentMsg, ControllerMsg, FrameCodec};
use tokio_util::codec::Decoder;

fn drive<C: Decoder>(mut codec: C, data: &[u8], chunk: usize) {
    let mut buf = BytesMut::new();
    for part in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let chunk = usize::from(first % 32) + 1;
    drive(FrameCodec::<ControllerMsg, AgentMsg>::default(), rest, chunk);
    drive(FrameCodec::<AgentMsg, ControllerMsg>::default(), rest, chunk);
});
