//! Golden vectors: the exact postcard body of every message kind. The
//! vectors live in `protocol/golden/vectors.txt` (`name hex` per line) so the
//! TypeScript controller can check its codec against the same bytes.
//!
//! NOTE: a vector never changes once released; the wire only appends. After
//! *adding* messages, regenerate with `RAKKR_BLESS=1 cargo test -p rakkr-protocol --test wire`
//! and check that the diff only adds lines.

use std::collections::BTreeMap;

use rakkr_protocol::*;

fn agent(name: &str, m: AgentMsg) -> Vector {
    let bytes = postcard::to_stdvec(&m).unwrap();
    (
        format!("agent.{name}"),
        bytes,
        Box::new(move |b| frame::decode_body::<AgentMsg>(b).unwrap() == m),
    )
}

fn ctl(name: &str, m: ControllerMsg) -> Vector {
    let bytes = postcard::to_stdvec(&m).unwrap();
    (
        format!("controller.{name}"),
        bytes,
        Box::new(move |b| frame::decode_body::<ControllerMsg>(b).unwrap() == m),
    )
}

fn ev(seq: u64, body: EventBody) -> AgentMsg {
    AgentMsg::Event(Event {
        seq,
        at_ms: 1_795_000_000_000 + seq,
        body,
    })
}

fn done(id: &str, reply: Reply) -> AgentMsg {
    AgentMsg::Result(CommandResult {
        id: id.into(),
        outcome: Outcome::Done(reply),
    })
}

fn cmd(id: &str, body: CommandBody) -> ControllerMsg {
    ControllerMsg::Command(Command {
        id: id.into(),
        body,
    })
}

fn take_info() -> TakeInfo {
    TakeInfo {
        take_id: "show-1".into(),
        dir: "/srv/rec/show-1".into(),
        device: "hw:CARD=XUSB,DEV=0".into(),
        channels: 32,
        sample_rate: 48_000,
        format: TakeFormat::Flac,
        frames: 96_000,
        segments: 1,
        started_at_ms: 1_795_000_000_000,
        pre_roll_frames: 0,
    }
}

type Vector = (String, Vec<u8>, Box<dyn Fn(&[u8]) -> bool>);

fn vectors() -> Vec<Vector> {
    let v1 = VersionRange { min: 1, max: 1 };
    vec![
        agent(
            "hello",
            AgentMsg::Hello(Hello {
                versions: v1,
                agent_version: "2026.11.23-1".into(),
                build_target: "x86_64-unknown-linux-musl".into(),
                node_id: "node-a".into(),
                inventory_json: "{\"id\":\"node-a\"}".into(),
                resume: Resume {
                    stream_id: 0x0123_4567_89ab_cdef,
                    next_seq: 300,
                },
            }),
        ),
        agent("heartbeat", AgentMsg::Heartbeat),
        agent(
            "event.agent_started",
            AgentMsg::Event(Event {
                seq: 0,
                at_ms: 1_795_000_000_000,
                body: EventBody::AgentStarted {
                    version: "2026.11.23-1".into(),
                },
            }),
        ),
        agent(
            "event.annotated.controller",
            AgentMsg::Event(Event {
                seq: 128,
                at_ms: 1_795_000_000_001,
                body: EventBody::Annotated {
                    text: "soundcheck done".into(),
                    origin: Origin::Controller {
                        command_id: "c1".into(),
                    },
                },
            }),
        ),
        agent(
            "event.annotated.local",
            AgentMsg::Event(Event {
                seq: 129,
                at_ms: 1,
                body: EventBody::Annotated {
                    text: "hi".into(),
                    origin: Origin::Local,
                },
            }),
        ),
        agent(
            "event.outbox_overflow",
            AgentMsg::Event(Event {
                seq: 2,
                at_ms: 3,
                body: EventBody::OutboxOverflow { dropped: 17 },
            }),
        ),
        agent(
            "event.agent_stopping",
            AgentMsg::Event(Event {
                seq: 4,
                at_ms: 5,
                body: EventBody::AgentStopping {
                    reason: "SIGTERM".into(),
                },
            }),
        ),
        agent(
            "result.inventory",
            AgentMsg::Result(CommandResult {
                id: "c2".into(),
                outcome: Outcome::Done(Reply::Inventory { json: "{}".into() }),
            }),
        ),
        agent(
            "result.annotated",
            AgentMsg::Result(CommandResult {
                id: "c1".into(),
                outcome: Outcome::Done(Reply::Annotated { seq: 128 }),
            }),
        ),
        agent(
            "result.failed",
            AgentMsg::Result(CommandResult {
                id: "c3".into(),
                outcome: Outcome::Failed(Failure {
                    code: FailureCode::InvalidArgument,
                    message: "empty".into(),
                }),
            }),
        ),
        agent(
            "meter",
            AgentMsg::Meter(MeterFrame {
                captured_at_ms: 1_795_000_000_100,
                interface_id: "alsa_card_xusb_dev_0".into(),
                levels: vec![
                    Level {
                        channel_index: 1,
                        peak_dbfs: -6.0,
                        rms_dbfs: -18.5,
                        clipping: false,
                        quality: None,
                    },
                    Level {
                        channel_index: 2,
                        peak_dbfs: 0.0,
                        rms_dbfs: -3.25,
                        clipping: true,
                        quality: Some(Quality {
                            crest_factor_db: 3.25,
                            zero_crossing_rate: 0.5,
                            noise_score: 0.125,
                            speech_score: 0.75,
                            speech_like: true,
                        }),
                    },
                ],
            }),
        ),
        agent(
            "goodbye",
            AgentMsg::Goodbye(Goodbye {
                reason: GoodbyeReason::Shutdown,
                message: "agent stopping".into(),
            }),
        ),
        agent(
            "event.take_started",
            ev(10, EventBody::TakeStarted(take_info())),
        ),
        agent(
            "event.segment_closed",
            ev(
                11,
                EventBody::SegmentClosed {
                    take_id: "show-1".into(),
                    segment: 1,
                    files: vec![TakeFile {
                        file: "01-Kick-s001.flac".into(),
                        channels: vec![1],
                        first_sample: 0,
                        samples: 172_800_000,
                        sha256: "ab".repeat(32),
                    }],
                },
            ),
        ),
        agent(
            "event.take_stopped",
            ev(
                12,
                EventBody::TakeStopped {
                    take_id: "show-1".into(),
                    status: "stopped".into(),
                    reason: "disk almost full".into(),
                    frames: 480_000,
                    manifest_json: "{}".into(),
                },
            ),
        ),
        agent(
            "event.xrun",
            ev(
                13,
                EventBody::Xrun {
                    take_id: "show-1".into(),
                    at_sample: 96_000,
                    frames_lost: 256,
                },
            ),
        ),
        agent(
            "event.disk_low",
            ev(
                14,
                EventBody::DiskLow {
                    take_id: "show-1".into(),
                    free_bytes: 1 << 32,
                    path: "/srv/rec".into(),
                },
            ),
        ),
        agent(
            "event.device_lost",
            ev(
                15,
                EventBody::DeviceLost {
                    device: "hw:CARD=XUSB,DEV=0".into(),
                    take_id: "show-1".into(),
                    at_sample: 100,
                    reason: "the device went away".into(),
                },
            ),
        ),
        agent(
            "event.device_back",
            ev(
                16,
                EventBody::DeviceBack {
                    device: "hw:CARD=XUSB,DEV=0".into(),
                    take_id: String::new(),
                    gap_frames: 48_000,
                },
            ),
        ),
        agent(
            "event.take_recovered",
            ev(
                17,
                EventBody::TakeRecovered {
                    take_id: "show-0".into(),
                    frames: 1000,
                    frames_saved: 10,
                    manifest_json: "{}".into(),
                },
            ),
        ),
        agent(
            "result.take",
            done(
                "c4",
                Reply::Take {
                    take: take_info(),
                    already_running: true,
                },
            ),
        ),
        agent(
            "result.take_status",
            done(
                "c5",
                Reply::TakeStatus {
                    take: None,
                    device: "x32".into(),
                    device_ok: false,
                },
            ),
        ),
        agent(
            "result.take_stopped",
            done(
                "c6",
                Reply::TakeStopped {
                    take: take_info(),
                    manifest_json: "{}".into(),
                },
            ),
        ),
        agent(
            "result.marked",
            done("c7", Reply::Marked { at_sample: 4800 }),
        ),
        ctl(
            "welcome",
            ControllerMsg::Welcome(Welcome {
                version: 1,
                heartbeat_ms: 15_000,
                server_time_ms: 1_795_000_000_000,
                resume_from: 300,
            }),
        ),
        ctl(
            "reject.no_common_version",
            ControllerMsg::Reject(Reject {
                reason: RejectReason::NoCommonVersion {
                    agent: v1,
                    controller: VersionRange { min: 2, max: 3 },
                },
                message: "no common protocol version".into(),
            }),
        ),
        ctl(
            "reject.node_id_mismatch",
            ControllerMsg::Reject(Reject {
                reason: RejectReason::NodeIdMismatch {
                    claimed: "b".into(),
                    certified: "a".into(),
                },
                message: "mismatch".into(),
            }),
        ),
        ctl(
            "reject.refused",
            ControllerMsg::Reject(Reject {
                reason: RejectReason::Refused,
                message: "decommissioned".into(),
            }),
        ),
        ctl("heartbeat", ControllerMsg::Heartbeat),
        ctl(
            "command.inventory",
            ControllerMsg::Command(Command {
                id: "c2".into(),
                body: CommandBody::Inventory,
            }),
        ),
        ctl(
            "command.annotate",
            ControllerMsg::Command(Command {
                id: "c1".into(),
                body: CommandBody::Annotate {
                    text: "soundcheck done".into(),
                },
            }),
        ),
        ctl(
            "command.start_take",
            cmd(
                "c4",
                CommandBody::StartTake(StartTake {
                    take_id: "show-1".into(),
                    channels: 32,
                    format: Some(TakeFormat::W64),
                    segment_seconds: 3600,
                    pre_roll_ms: 2000,
                }),
            ),
        ),
        ctl(
            "command.start_take.defaults",
            cmd(
                "c8",
                CommandBody::StartTake(StartTake {
                    take_id: "t".into(),
                    channels: 0,
                    format: None,
                    segment_seconds: 0,
                    pre_roll_ms: 0,
                }),
            ),
        ),
        ctl(
            "command.stop_take",
            cmd(
                "c6",
                CommandBody::StopTake {
                    take_id: "show-1".into(),
                },
            ),
        ),
        ctl(
            "command.mark",
            cmd(
                "c7",
                CommandBody::Mark {
                    label: "encore".into(),
                },
            ),
        ),
        ctl("command.take_status", cmd("c5", CommandBody::TakeStatus)),
        ctl("ack", ControllerMsg::Ack(Ack { up_to: 129 })),
        ctl(
            "goodbye.protocol_error",
            ControllerMsg::Goodbye(Goodbye {
                reason: GoodbyeReason::ProtocolError,
                message: "x".into(),
            }),
        ),
        ctl(
            "goodbye.replaced",
            ControllerMsg::Goodbye(Goodbye {
                reason: GoodbyeReason::Replaced,
                message: String::new(),
            }),
        ),
        // Self-update (appended).
        agent(
            "fetch",
            AgentMsg::Fetch(Fetch {
                transfer_id: "t1".into(),
                offset: 524_288,
                len: 262_144,
            }),
        ),
        agent(
            "event.update_deferred",
            ev(
                18,
                EventBody::UpdateDeferred {
                    version: "2026.11.23-2".into(),
                    take_id: "show-1".into(),
                },
            ),
        ),
        agent(
            "event.update_installed",
            ev(
                19,
                EventBody::UpdateInstalled {
                    version: "2026.11.23-2".into(),
                    previous: "2026.11.23-1".into(),
                },
            ),
        ),
        agent(
            "event.update_committed",
            ev(
                20,
                EventBody::UpdateCommitted {
                    version: "2026.11.23-2".into(),
                    previous: "2026.11.23-1".into(),
                },
            ),
        ),
        agent(
            "event.update_rolled_back",
            ev(
                21,
                EventBody::UpdateRolledBack {
                    version: "2026.11.23-2".into(),
                    restored: "2026.11.23-1".into(),
                    reason: "no welcome".into(),
                },
            ),
        ),
        agent(
            "event.update_failed",
            ev(
                22,
                EventBody::UpdateFailed {
                    version: "2026.11.23-2".into(),
                    kind: UpdateFailure::Checksum,
                    reason: "sha256".into(),
                },
            ),
        ),
        agent(
            "result.update",
            done("c8", Reply::Update(UpdateAck::Deferred)),
        ),
        ctl(
            "command.update.stream",
            cmd(
                "c8",
                CommandBody::Update(UpdateOffer {
                    version: "2026.11.23-2".into(),
                    target: "x86_64-unknown-linux-musl".into(),
                    size: 10_485_760,
                    sha256: "ab".repeat(32),
                    source: UpdateSource::Stream {
                        transfer_id: "t1".into(),
                    },
                    force: false,
                    allow_downgrade: false,
                }),
            ),
        ),
        ctl(
            "command.update.url",
            cmd(
                "c9",
                CommandBody::Update(UpdateOffer {
                    version: "2026.11.23-2".into(),
                    target: "aarch64-unknown-linux-musl".into(),
                    size: 1,
                    sha256: String::new(),
                    source: UpdateSource::Url {
                        url: "https://h/a.tar.gz".into(),
                    },
                    force: true,
                    allow_downgrade: true,
                }),
            ),
        ),
        ctl(
            "chunk",
            ControllerMsg::Chunk(Chunk {
                transfer_id: "t1".into(),
                offset: 3,
                data: vec![0x7f, b'E', b'L', b'F'],
            }),
        ),
        ctl(
            "transfer_failed",
            ControllerMsg::TransferFailed {
                transfer_id: "t1".into(),
                message: "gone".into(),
            },
        ),
        // Trust (appended).
        agent(
            "renew",
            AgentMsg::Renew(Renew {
                request_id: 7,
                csr_der: vec![0x30, 0x82, 0x01, 0x0a],
            }),
        ),
        agent(
            "event.trust_renewed",
            ev(
                23,
                EventBody::TrustRenewed {
                    not_after: "2026-12-23T00:00:00Z".into(),
                    sha256: "cd".repeat(32),
                    reason: "scheduled".into(),
                },
            ),
        ),
        agent(
            "event.trust_renew_failed",
            ev(
                24,
                EventBody::TrustRenewFailed {
                    reason: "wrong key".into(),
                },
            ),
        ),
        agent(
            "event.trust_bundle_changed",
            ev(
                25,
                EventBody::TrustBundleChanged {
                    ca_sha256: vec!["ef".repeat(32)],
                },
            ),
        ),
        agent("result.renewal_started", done("c9", Reply::RenewalStarted)),
        agent(
            "result.trust_bundle",
            done(
                "c10",
                Reply::TrustBundle {
                    ca_sha256: vec!["ef".repeat(32), "01".repeat(32)],
                },
            ),
        ),
        ctl("command.rotate_trust", cmd("c9", CommandBody::RotateTrust)),
        ctl(
            "command.trust_bundle",
            cmd(
                "c10",
                CommandBody::TrustBundle {
                    cas_pem: "-----BEGIN CERTIFICATE-----\n".into(),
                },
            ),
        ),
        ctl(
            "renewed",
            ControllerMsg::Renewed {
                request_id: 7,
                chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            },
        ),
        ctl(
            "renew_refused",
            ControllerMsg::RenewRefused {
                request_id: 7,
                message: "no".into(),
            },
        ),
        ctl(
            "renewal_only",
            ControllerMsg::RenewalOnly {
                message: "expired 2 days ago".into(),
            },
        ),
        // Enrollment (appended).
        agent(
            "enroll",
            AgentMsg::Enroll(Enroll {
                node_id: "node-new".into(),
                token: "tok".into(),
                csr_der: vec![0x30, 0x82],
            }),
        ),
        ctl(
            "enrolled",
            ControllerMsg::Enrolled {
                chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            },
        ),
        ctl(
            "enroll_refused",
            ControllerMsg::EnrollRefused {
                message: "token already used".into(),
            },
        ),
        // Limits (appended): large manifests in parts, oversized events
        // replaced, and commands whose fields sit exactly at their limits.
        agent(
            "event.manifest_part",
            ev(
                26,
                EventBody::ManifestPart {
                    take_id: "show-1".into(),
                    part: 1,
                    parts: 3,
                    json: "\"files\":[".into(),
                },
            ),
        ),
        agent(
            "event.event_dropped",
            ev(
                27,
                EventBody::EventDropped {
                    kind: "Annotated".into(),
                    bytes: 300_000,
                    reason: "over the limit".into(),
                },
            ),
        ),
        ctl(
            "command.mark.at_limits",
            cmd(
                &"i".repeat(rakkr_protocol::limits::COMMAND_ID_MAX),
                CommandBody::Mark {
                    label: "l".repeat(rakkr_protocol::limits::LABEL_MAX),
                },
            ),
        ),
        ctl(
            "command.stop_take.at_limit",
            cmd(
                "c11",
                CommandBody::StopTake {
                    take_id: "t".repeat(rakkr_protocol::limits::TAKE_ID_MAX),
                },
            ),
        ),
        // Signed releases (appended).
        agent(
            "event.update_failed.signature",
            ev(
                28,
                EventBody::UpdateFailed {
                    version: "2026.11.23-2".into(),
                    kind: UpdateFailure::Signature,
                    reason: "unsigned".into(),
                },
            ),
        ),
        ctl(
            "command.update_signed",
            cmd(
                "c12",
                CommandBody::UpdateSigned(SignedUpdate {
                    offer: UpdateOffer {
                        version: "2026.11.23-2".into(),
                        target: "x86_64-unknown-linux-musl".into(),
                        size: 300,
                        sha256: "ab".repeat(32),
                        source: UpdateSource::Stream {
                            transfer_id: "t2".into(),
                        },
                        force: false,
                        allow_downgrade: false,
                    },
                    release_manifest: "{\"version\":\"2026.11.23-2\"}\n".into(),
                    signature: "untrusted comment: x\nRUQ=\n".into(),
                }),
            ),
        ),
        ctl(
            "command.list_takes",
            cmd(
                "c13",
                CommandBody::ListTakes {
                    after: "show-0".into(),
                },
            ),
        ),
        ctl(
            "command.take_files",
            cmd(
                "c14",
                CommandBody::TakeFiles {
                    take_id: "show-1".into(),
                    after: "01-Kick-s001.flac".into(),
                },
            ),
        ),
        ctl(
            "command.receipt",
            cmd(
                "c15",
                CommandBody::Receipt {
                    take_id: "show-1".into(),
                    files: vec![FileReceipt {
                        file: "01-Kick-s001.flac".into(),
                        sha256: "cd".repeat(32),
                    }],
                },
            ),
        ),
        ctl(
            "read_file",
            ControllerMsg::ReadFile(FileRead {
                request_id: 7,
                take_id: "show-1".into(),
                file: "01-Kick-s001.flac".into(),
                offset: 524_288,
                len: 524_288,
            }),
        ),
        agent(
            "file_chunk",
            AgentMsg::FileChunk(FileChunk {
                request_id: 7,
                take_id: "show-1".into(),
                file: "01-Kick-s001.flac".into(),
                offset: 524_288,
                data: b"fLaC".to_vec(),
            }),
        ),
        agent(
            "file_read_failed",
            AgentMsg::FileReadFailed(FileReadFailed {
                request_id: 8,
                take_id: "show-1".into(),
                file: "02-Snare-s002.flac".into(),
                reason: "still being recorded".into(),
            }),
        ),
        agent(
            "result.takes",
            done(
                "c13",
                Reply::Takes {
                    takes: vec![TakeSummary {
                        take_id: "show-1".into(),
                        status: "complete".into(),
                        device: "hw:CARD=XUSB,DEV=0".into(),
                        channels: 32,
                        sample_rate: 48_000,
                        format: TakeFormat::Flac,
                        segments: 2,
                        frames: 96_000,
                        files: 64,
                        received: 32,
                        bytes: 9_000_000,
                    }],
                    more: false,
                },
            ),
        ),
        agent(
            "result.take_files",
            done(
                "c14",
                Reply::TakeFiles {
                    take_id: "show-1".into(),
                    files: vec![TakeFileState {
                        file: "02-Snare-s001.flac".into(),
                        segment: 1,
                        channels: vec![2],
                        first_sample: 0,
                        samples: 48_000,
                        size: 140_000,
                        sha256: "ef".repeat(32),
                        received: true,
                    }],
                    more: true,
                },
            ),
        ),
        agent(
            "result.receipt",
            done(
                "c15",
                Reply::Receipt {
                    take_id: "show-1".into(),
                    accepted: vec!["01-Kick-s001.flac".into()],
                    refused: vec![RefusedReceipt {
                        file: "02-Snare-s001.flac".into(),
                        expected_sha256: "ef".repeat(32),
                        received_sha256: "00".repeat(32),
                        reason: "differs".into(),
                    }],
                },
            ),
        ),
        agent(
            "event.files_received",
            ev(
                40,
                EventBody::FilesReceived {
                    take_id: "show-1".into(),
                    files: vec!["01-Kick-s001.flac".into()],
                },
            ),
        ),
        agent(
            "event.receipt_refused",
            ev(
                41,
                EventBody::ReceiptRefused {
                    take_id: "show-1".into(),
                    file: "02-Snare-s001.flac".into(),
                    expected_sha256: "ef".repeat(32),
                    received_sha256: "00".repeat(32),
                    reason: "differs".into(),
                },
            ),
        ),
        agent(
            "event.take_deleted",
            ev(
                42,
                EventBody::TakeDeleted {
                    take_id: "show-0".into(),
                    files: 64,
                    bytes: 9_000_000,
                    reason: "every file received".into(),
                },
            ),
        ),
        agent(
            "event.retention_blocked",
            ev(
                43,
                EventBody::RetentionBlocked {
                    free_bytes: 1 << 30,
                    reason: "nothing received".into(),
                },
            ),
        ),
        agent(
            "event.health",
            ev(
                44,
                EventBody::Health(HealthEvent {
                    signal: HealthSignal::Clipping,
                    raised: true,
                    severity: Severity::Warning,
                    interface_id: "alsa_card_x32_dev_0".into(),
                    channels: vec![3, 17],
                    value: -0.5,
                    threshold: -1.0,
                    observations: 3,
                    summary: "channels 3, 17 peak at -0.5 dBFS".into(),
                }),
            ),
        ),
        agent(
            "event.health_cleared",
            ev(
                45,
                EventBody::Health(HealthEvent {
                    signal: HealthSignal::ClockSkew,
                    raised: false,
                    severity: Severity::Info,
                    interface_id: String::new(),
                    channels: vec![],
                    value: 0.25,
                    threshold: 2.0,
                    observations: 3,
                    summary: "clock within 2 s of the controller's".into(),
                }),
            ),
        ),
        agent(
            "event.console_found",
            ev(
                46,
                EventBody::Console(Box::new(ConsoleEvent::Found {
                    console: console_identity(),
                })),
            ),
        ),
        agent(
            "event.console_lost",
            ev(
                47,
                EventBody::Console(Box::new(ConsoleEvent::Lost {
                    console: console_identity(),
                    silent_ms: 15_000,
                })),
            ),
        ),
        agent(
            "event.console_back",
            ev(
                48,
                EventBody::Console(Box::new(ConsoleEvent::Back {
                    console: console_identity(),
                    away_ms: 62_000,
                })),
            ),
        ),
        agent(
            "event.console_swapped",
            ev(
                49,
                EventBody::Console(Box::new(ConsoleEvent::Swapped {
                    from: console_identity(),
                    to: ConsoleIdentity {
                        family: "wing".into(),
                        model: "ngc-full".into(),
                        name: "MON".into(),
                        firmware: "3.0.5".into(),
                        serial: Some("S1234".into()),
                        mac: None,
                        address: "10.0.0.5:2223".into(),
                    },
                })),
            ),
        ),
        agent(
            "event.console_firmware",
            ev(
                50,
                EventBody::Console(Box::new(ConsoleEvent::FirmwareChanged {
                    console: console_identity(),
                    from: "4.06".into(),
                })),
            ),
        ),
        agent(
            "event.console_renamed",
            ev(
                51,
                EventBody::Console(Box::new(ConsoleEvent::Renamed {
                    console_channel: 17,
                    device_channels: vec![17],
                    from: "Input 17".into(),
                    to: "Pastor".into(),
                    takes: vec![TakeAt {
                        take_id: "show-0".into(),
                        at_sample: 480_000,
                    }],
                })),
            ),
        ),
        agent(
            "clock_probe",
            AgentMsg::ClockProbe {
                sent_ms: 1_795_000_000_123,
            },
        ),
        ctl(
            "clock_reply",
            ControllerMsg::ClockReply(ClockReply {
                probe_sent_ms: 1_795_000_000_123,
                received_ms: 1_795_000_007_130,
                replied_ms: 1_795_000_007_131,
            }),
        ),
        ctl(
            "command.listen",
            cmd(
                "c20",
                CommandBody::Listen(ListenRequest {
                    channels: vec![1, 2],
                    rate: 16_000,
                    frame_ms: 100,
                }),
            ),
        ),
        ctl("command.stop_listen", cmd("c21", CommandBody::StopListen)),
        agent(
            "result.listening",
            done(
                "c20",
                Reply::Listening(Listening {
                    channels: vec![1, 2],
                    rate: 16_000,
                    frame_samples: 1_600,
                    lease_ms: 30_000,
                }),
            ),
        ),
        agent(
            "result.listen_stopped",
            done("c21", Reply::ListenStopped { was_running: true }),
        ),
        agent(
            "listen",
            AgentMsg::Listen(ListenFrame {
                seq: 7,
                captured_at_ms: 1_795_000_000_200,
                rate: 16_000,
                pcm: vec![0x01, 0x00, 0xff, 0xff],
            }),
        ),
        ctl(
            "command.configure",
            cmd(
                "c22",
                CommandBody::Configure(ConfigPush {
                    version: 3,
                    document: r#"{"capture":{"channels":16}}"#.into(),
                    force: false,
                }),
            ),
        ),
        agent(
            "result.configured",
            done(
                "c22",
                Reply::Configured(ConfigApplied {
                    version: 3,
                    changed: vec!["capture.channels".into()],
                    overridden: vec![],
                    reopen: Reopen::AfterTake {
                        take_id: "show-1".into(),
                    },
                }),
            ),
        ),
        agent(
            "result.configured_now",
            done(
                "c23",
                Reply::Configured(ConfigApplied {
                    version: 4,
                    changed: vec![],
                    overridden: vec!["capture.device".into()],
                    reopen: Reopen::Reopened,
                }),
            ),
        ),
        ctl(
            "command.start_take_with",
            cmd(
                "c24",
                CommandBody::StartTakeWith(TakeRequest {
                    take_id: "sermon".into(),
                    channels: vec![1, 2, 17],
                    format: Some(TakeFormat::Wav),
                    segment_seconds: 600,
                    pre_roll_ms: 2_000,
                    duration_ms: 3_600_000,
                    job_id: "job-7".into(),
                    start_at_ms: 1_795_000_060_000,
                    end_at_ms: 0,
                }),
            ),
        ),
        ctl(
            "command.running_takes",
            cmd("c25", CommandBody::RunningTakes),
        ),
        agent(
            "result.running",
            done(
                "c25",
                Reply::Running {
                    takes: vec![RunningTake {
                        take: take_info(),
                        device_channels: vec![1, 2, 17],
                        job_id: "job-7".into(),
                        duration_frames: 172_800_000,
                    }],
                    device: "hw:CARD=X32,DEV=0".into(),
                    device_ok: true,
                },
            ),
        ),
    ]
}

#[test]
fn commands_at_their_limits_pass_and_one_byte_over_is_refused_naming_the_field() {
    let at = rakkr_protocol::Command {
        id: "i".repeat(rakkr_protocol::limits::COMMAND_ID_MAX),
        body: CommandBody::Mark {
            label: "l".repeat(rakkr_protocol::limits::LABEL_MAX),
        },
    };
    assert!(at.check_limits().is_ok());
    let mut over = at.clone();
    over.id.push('i');
    assert!(
        over.check_limits()
            .unwrap_err()
            .to_string()
            .starts_with("command id is 129 bytes")
    );
    let mut over = at;
    over.body = CommandBody::Mark {
        label: "l".repeat(rakkr_protocol::limits::LABEL_MAX + 1),
    };
    assert!(
        over.check_limits()
            .unwrap_err()
            .to_string()
            .starts_with("label is 257 bytes")
    );
}

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/vectors.txt");

fn load() -> BTreeMap<String, Vec<u8>> {
    std::fs::read_to_string(PATH)
        .expect("golden/vectors.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, hex) = l.split_once(' ').expect("name hex");
            (name.to_owned(), hex::decode(hex.trim()).expect("hex"))
        })
        .collect()
}

#[test]
fn every_message_matches_its_golden_vector_in_both_directions() {
    let vectors = vectors();
    if std::env::var_os("RAKKR_BLESS").is_some() {
        let mut out = String::from(
            "# Golden postcard bodies of every message (no length prefix). Append-only.\n",
        );
        for (name, bytes, _) in &vectors {
            out.push_str(&format!("{name} {}\n", hex::encode(bytes)));
        }
        std::fs::write(PATH, out).unwrap();
    }
    let golden = load();
    for (name, bytes, decodes_to_value) in &vectors {
        let want = golden
            .get(name)
            .unwrap_or_else(|| panic!("no golden vector for {name}: bless it"));
        assert_eq!(
            hex::encode(bytes),
            hex::encode(want),
            "encoding of {name} changed: the wire is append-only"
        );
        assert!(
            decodes_to_value(want),
            "golden bytes of {name} do not decode to the value"
        );
    }
    assert_eq!(
        golden.len(),
        vectors.len(),
        "a golden vector has no value in the test"
    );
}

#[test]
fn hand_checked_bytes() {
    // Variant index as one varint byte; unit variants carry nothing else.
    assert_eq!(postcard::to_stdvec(&AgentMsg::Heartbeat).unwrap(), [0x01]);
    assert_eq!(
        postcard::to_stdvec(&ControllerMsg::Heartbeat).unwrap(),
        [0x02]
    );
    // Ack: variant 4, then up_to = 129 as LEB128 varint 0x81 0x01.
    assert_eq!(
        postcard::to_stdvec(&ControllerMsg::Ack(Ack { up_to: 129 })).unwrap(),
        [0x04, 0x81, 0x01]
    );
    // A full frame: 4-byte big-endian length, then the body.
    assert_eq!(
        frame::encode_frame(&ControllerMsg::Ack(Ack { up_to: 129 })).unwrap(),
        [0, 0, 0, 3, 0x04, 0x81, 0x01]
    );
}

fn console_identity() -> ConsoleIdentity {
    ConsoleIdentity {
        family: "x32".into(),
        model: "X32".into(),
        name: "FOH".into(),
        firmware: "4.13".into(),
        serial: None,
        mac: Some("00:11:22:33:44:55".into()),
        address: "10.0.0.5:10023".into(),
    }
}
