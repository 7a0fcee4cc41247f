//! Framing: a 4-byte big-endian length prefix, then a postcard body.
//!
//! ```text
//! +----------------+---------------------------+
//! | len: u32 (BE)  | body: postcard, len bytes |
//! +----------------+---------------------------+
//! ```
//!
//! `len` counts the body only, is never 0 and never above the hard maximum
//! ([`MAX_FRAME_LEN`]). The body must decode to exactly one message with no
//! trailing bytes. Any violation is a [`FrameError`]; the connection that
//! produced it is closed (see PROTOCOL.md, "Errors and closing").
//!
//! NOTE: the decoder never reserves buffer space for the length a peer
//! *claims*; the buffer grows only with bytes that actually arrived, so a
//! hostile prefix cannot make us allocate.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::{Decoder, Encoder};

/// Hard upper bound for a frame body, in bytes (1 MiB).
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Everything that can be wrong with a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("i/o error on the link: {0}")]
    Io(std::io::Error),
    #[error("frame too long: {len} > {max}")]
    TooLong { len: u32, max: u32 },
    #[error("empty frame (length 0)")]
    Empty,
    #[error("malformed frame body ({len} bytes): {cause}")]
    Malformed { len: usize, cause: postcard::Error },
    #[error("frame body has {extra} trailing bytes after the message")]
    TrailingBytes { extra: usize },
    #[error("truncated frame: connection ended after {have} of {need} bytes")]
    Truncated { have: usize, need: usize },
    #[error("could not encode message: {0}")]
    Encode(postcard::Error),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl FrameError {
    /// True when the peer sent bytes that violate the framing or message
    /// rules (as opposed to an I/O failure of the transport).
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, FrameError::Io(_) | FrameError::Encode(_))
    }
}

/// Encodes `Out` messages and decodes `In` messages as frames.
pub struct FrameCodec<In, Out> {
    max: u32,
    _msgs: PhantomData<fn(Out) -> In>,
}

impl<In, Out> std::fmt::Debug for FrameCodec<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec")
            .field("max", &self.max)
            .finish()
    }
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        Self::with_max(MAX_FRAME_LEN)
    }
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with a lower maximum (never above [`MAX_FRAME_LEN`]).
    pub fn with_max(max: u32) -> Self {
        Self {
            max: max.min(MAX_FRAME_LEN),
            _msgs: PhantomData,
        }
    }
}

/// Encodes one message as a complete frame (prefix + body).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_stdvec(msg).map_err(FrameError::Encode)?;
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one message from a frame body (no prefix), rejecting trailing bytes.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|cause| FrameError::Malformed {
            len: body.len(),
            cause,
        })?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::TooLong { len, max: self.max });
        }
        let need = HEADER_LEN + len as usize;
        if src.len() < need {
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(len as usize);
        decode_body(&body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.decode(src)? {
            Some(msg) => Ok(Some(msg)),
            None if src.is_empty() => Ok(None),
            None => {
                let need = src
                    .get(..HEADER_LEN)
                    .map(|h| HEADER_LEN + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
                    .unwrap_or(HEADER_LEN);
                Err(FrameError::Truncated {
                    have: src.len(),
                    need,
                })
            }
        }
    }
}

/// Serializes straight into the codec's output buffer: a large body (an
/// update chunk) is copied once, not into a `Vec` first.
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u32(0);
        let body = postcard::serialize_with_flavor(&item, BytesMutFlavor(dst));
        let len = u32::try_from(dst.len() - start - HEADER_LEN).unwrap_or(u32::MAX);
        // NOTE: nothing half-written stays in the buffer on an error.
        if let Err(e) = body {
            dst.truncate(start);
            return Err(FrameError::Encode(e));
        }
        if len > self.max {
            dst.truncate(start);
            return Err(FrameError::TooLong { len, max: self.max });
        }
        dst[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AgentMsg, ControllerMsg};

    type AgentSide = FrameCodec<ControllerMsg, AgentMsg>;

    #[test]
    fn oversize_prefix_is_refused_without_allocating_the_claimed_length() {
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        let cap_before = buf.capacity();
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLong {
                len: u32::MAX,
                max: MAX_FRAME_LEN
            }
        ));
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn partial_frame_waits_without_reserving() {
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0, 0x0f, 0, 0, 9][..]);
        let cap_before = buf.capacity();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn zero_length_frame_is_an_error() {
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::Empty)));
    }

    #[test]
    fn unknown_variant_is_malformed_not_a_panic() {
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 200][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed { len: 1, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        // ControllerMsg::Heartbeat is one byte (its variant index); add one more.
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 2, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn eof_inside_a_frame_is_truncated() {
        let mut codec = AgentSide::default();
        let mut buf = BytesMut::from(&[0, 0, 0, 10, 1, 2, 3][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated { have: 7, need: 14 })
        ));
    }

    #[test]
    fn encode_then_decode_two_frames_in_one_buffer() {
        let mut enc = FrameCodec::<AgentMsg, ControllerMsg>::default();
        let mut dec = AgentSide::default();
        let mut buf = BytesMut::new();
        enc.encode(ControllerMsg::Heartbeat, &mut buf).unwrap();
        enc.encode(ControllerMsg::Heartbeat, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0, 0, 0, 1, 2, 0, 0, 0, 1, 2]);
        assert!(matches!(
            dec.decode(&mut buf).unwrap(),
            Some(ControllerMsg::Heartbeat)
        ));
        assert!(matches!(
            dec.decode(&mut buf).unwrap(),
            Some(ControllerMsg::Heartbeat)
        ));
        assert!(dec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encode_too_long_leaves_the_buffer_as_it_was() {
        use crate::message::Chunk;
        let mut enc = FrameCodec::<AgentMsg, ControllerMsg>::with_max(1024);
        let mut buf = BytesMut::new();
        enc.encode(ControllerMsg::Heartbeat, &mut buf).unwrap();
        let chunk = ControllerMsg::Chunk(Chunk {
            transfer_id: "t".into(),
            offset: 0,
            data: vec![7; 2048],
        });
        assert!(matches!(
            enc.encode(chunk, &mut buf),
            Err(FrameError::TooLong { max: 1024, .. })
        ));
        assert_eq!(&buf[..], &[0, 0, 0, 1, 2], "only the first frame");
    }
}
