//! Property tests: any message survives encode → frame → decode, whatever
//! the chunking of the byte stream; random bytes never panic the decoder.

use bytes::BytesMut;
use proptest::prelude::*;
use rakkr_protocol::*;
use tokio_util::codec::{Decoder, Encoder};

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn event_body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        text().prop_map(|version| EventBody::AgentStarted { version }),
        (text(), prop::option::of(text())).prop_map(|(text, cmd)| EventBody::Annotated {
            text,
            origin: cmd.map_or(Origin::Local, |command_id| Origin::Controller {
                command_id
            }),
        }),
        any::<u64>().prop_map(|dropped| EventBody::OutboxOverflow { dropped }),
        text().prop_map(|reason| EventBody::AgentStopping { reason }),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    (
        any::<u16>(),
        -160f32..24f32,
        -160f32..24f32,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(c, p, r, clip, q)| Level {
            channel_index: c,
            peak_dbfs: p,
            rms_dbfs: r,
            clipping: clip,
            quality: q.then_some(Quality {
                crest_factor_db: p.abs(),
                zero_crossing_rate: 0.5,
                noise_score: 0.1,
                speech_score: 0.2,
                speech_like: clip,
            }),
        })
}

fn agent_msg() -> impl Strategy<Value = AgentMsg> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            text(),
            text(),
            text(),
            text(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(
                    min,
                    max,
                    agent_version,
                    build_target,
                    node_id,
                    inventory_json,
                    stream_id,
                    next_seq,
                )| AgentMsg::Hello(Hello {
                    versions: VersionRange { min, max },
                    agent_version,
                    build_target,
                    node_id,
                    inventory_json,
                    resume: Resume {
                        stream_id,
                        next_seq
                    },
                })
            ),
        Just(AgentMsg::Heartbeat),
        (any::<u64>(), any::<u64>(), event_body())
            .prop_map(|(seq, at_ms, body)| AgentMsg::Event(Event { seq, at_ms, body })),
        (
            text(),
            prop_oneof![
                text().prop_map(|json| Outcome::Done(Reply::Inventory { json })),
                any::<u64>().prop_map(|seq| Outcome::Done(Reply::Annotated { seq })),
                text().prop_map(|message| Outcome::Failed(Failure {
                    code: FailureCode::Busy,
                    message
                })),
            ]
        )
            .prop_map(|(id, outcome)| AgentMsg::Result(CommandResult { id, outcome })),
        (any::<u64>(), text(), prop::collection::vec(level(), 0..64)).prop_map(
            |(captured_at_ms, interface_id, levels)| AgentMsg::Meter(MeterFrame {
                captured_at_ms,
                interface_id,
                levels
            })
        ),
        text().prop_map(|message| AgentMsg::Goodbye(Goodbye {
            reason: GoodbyeReason::Shutdown,
            message
        })),
    ]
}

fn controller_msg() -> impl Strategy<Value = ControllerMsg> {
    prop_oneof![
        (any::<u16>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(version, heartbeat_ms, server_time_ms, resume_from)| {
                ControllerMsg::Welcome(Welcome {
                    version,
                    heartbeat_ms,
                    server_time_ms,
                    resume_from,
                })
            }
        ),
        (text(), text()).prop_map(|(claimed, certified)| ControllerMsg::Reject(Reject {
            reason: RejectReason::NodeIdMismatch { claimed, certified },
            message: String::new()
        })),
        Just(ControllerMsg::Heartbeat),
        (text(), prop::option::of(text())).prop_map(|(id, note)| ControllerMsg::Command(Command {
            id,
            body: note.map_or(CommandBody::Inventory, |text| CommandBody::Annotate {
                text
            }),
        })),
        any::<u64>().prop_map(|up_to| ControllerMsg::Ack(Ack { up_to })),
    ]
}

proptest! {
    #[test]
    fn agent_messages_round_trip_through_frames_in_any_chunking(msgs in prop::collection::vec(agent_msg(), 1..8), cut in 1usize..64) {
        let mut enc = FrameCodec::<ControllerMsg, AgentMsg>::default();
        let mut wire = BytesMut::new();
        for m in &msgs {
            enc.encode(m.clone(), &mut wire).unwrap();
        }
        let mut dec = FrameCodec::<AgentMsg, ControllerMsg>::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(cut) {
            buf.extend_from_slice(chunk);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn controller_messages_round_trip(m in controller_msg()) {
        let frame = frame::encode_frame(&m).unwrap();
        let back: ControllerMsg = frame::decode_body(&frame[4..]).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut dec = FrameCodec::<ControllerMsg, AgentMsg>::default();
        let mut buf = BytesMut::from(&bytes[..]);
        // Either messages, a need for more bytes, or a typed error: never a panic.
        for _ in 0..64 {
            match dec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let _ = dec.decode_eof(&mut buf);
    }
}
