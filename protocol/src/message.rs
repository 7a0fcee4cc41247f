//! Every message of the link, in postcard's data model.
//!
//! NOTE: postcard is not self-describing. The wire evolves only by
//! *appending*: new enum variants go at the end of their enum, new messages
//! are new variants. Struct fields are never added, removed or reordered;
//! a message that needs more fields becomes a new variant. Each type below
//! lists its variant indices because they are the wire (see PROTOCOL.md).
//!
//! Times are milliseconds since the Unix epoch (UTC) as `u64`.

use serde::{Deserialize, Serialize};

/// An inclusive range of protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    pub min: u16,
    pub max: u16,
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.min, self.max)
    }
}

// ----------------------------------------------------------------------------
// Agent -> controller

/// Everything the agent sends. Variant indices: Hello 0, Heartbeat 1,
/// Event 2, Result 3, Meter 4, Goodbye 5, Fetch 6, Renew 7, Enroll 8,
/// FileChunk 9, FileReadFailed 10, ClockProbe 11, Listen 12.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello(Hello),
    Heartbeat,
    Event(Event),
    Result(CommandResult),
    Meter(MeterFrame),
    Goodbye(Goodbye),
    /// Asks for the next piece of an artifact the controller offered
    /// (update transfers: the agent pulls, so it sets the pace and resumes
    /// at its own offset after a reconnect).
    Fetch(Fetch),
    /// Asks for a new node certificate for the key in `csr_der` (renewal
    /// over the authenticated link; the key never leaves the node).
    Renew(Renew),
    /// First and only message of an enrollment connection (TLS that
    /// authenticates the controller only): a one-time token and a CSR.
    Enroll(Enroll),
    /// The answer to a [`ControllerMsg::ReadFile`]: bytes of a take's file.
    FileChunk(FileChunk),
    /// A [`ControllerMsg::ReadFile`] that could not be served (`reason`
    /// says why: no such take or file, not closed yet, busy, I/O).
    FileReadFailed(FileReadFailed),
    /// Asks for the controller's clock: answered at once by
    /// [`ControllerMsg::ClockReply`] (`sent_ms`: the agent's clock when
    /// sent). Sent on each heartbeat interval; measures skew NTP-style.
    ClockProbe {
        sent_ms: u64,
    },
    /// A frame of the live listen stream (see `listen`).
    Listen(crate::listen::ListenFrame),
}

/// Bytes `offset..offset + data.len()` of file `file` of take `take_id`,
/// answering read `request_id`. Shorter than asked only at the file's end
/// (empty at or past it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    pub request_id: u64,
    pub take_id: String,
    pub file: String,
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Why read `request_id` of `file` of `take_id` was not served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReadFailed {
    pub request_id: u64,
    pub take_id: String,
    pub file: String,
    pub reason: String,
}

/// Enrollment: `token` was issued for `node_id` by the controller's
/// operator; answered by [`ControllerMsg::Enrolled`] or
/// [`ControllerMsg::EnrollRefused`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enroll {
    pub node_id: String,
    pub token: String,
    #[serde(with = "serde_bytes")]
    pub csr_der: Vec<u8>,
}

/// A certificate signing request (PKCS#10, DER) for this node's new key;
/// its subject CN is the node id. Answered by [`ControllerMsg::Renewed`]
/// or [`ControllerMsg::RenewRefused`] with the same `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    pub request_id: u64,
    #[serde(with = "serde_bytes")]
    pub csr_der: Vec<u8>,
}

/// A request for `len` bytes of transfer `transfer_id` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub transfer_id: String,
    pub offset: u64,
    /// At most [`MAX_CHUNK_LEN`].
    pub len: u32,
}

/// Largest chunk of a transfer in one message (fits a frame with room to spare).
pub const MAX_CHUNK_LEN: u32 = 512 * 1024;

/// First message on every connection, sent by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol versions this agent speaks.
    pub versions: VersionRange,
    /// Agent release (`YYYY.MM.DD-N`, or `<x.y.z>+<rev>` for development builds).
    pub agent_version: String,
    /// Rust target triple the binary was built for.
    pub build_target: String,
    /// Node id; must equal the CN of the client certificate.
    pub node_id: String,
    /// The node inventory as JSON text (the controller's inventory shape, a
    /// superset of it). JSON because that shape is owned by the controller and
    /// grows by adding keys, which postcard structs cannot do.
    pub inventory_json: String,
    /// Where the agent's event stream stands.
    pub resume: Resume,
}

/// The agent's event stream position, sent in [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Random id of this node's event stream; changes only when the agent's
    /// state directory is recreated. Sequence numbers are scoped to it.
    pub stream_id: u64,
    /// Sequence number the next new event will carry. Events below it that
    /// the controller has not acknowledged are resent after [`Welcome`].
    pub next_seq: u64,
}

/// A sequenced event. `seq` is unique and increasing within the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    pub body: EventBody,
}

/// Event kinds. Variant indices: AgentStarted 0, Annotated 1, OutboxOverflow 2,
/// AgentStopping 3, TakeStarted 4, SegmentClosed 5, TakeStopped 6, Xrun 7,
/// DiskLow 8, DeviceLost 9, DeviceBack 10, TakeRecovered 11,
/// UpdateDeferred 12, UpdateInstalled 13, UpdateCommitted 14,
/// UpdateRolledBack 15, UpdateFailed 16, TrustRenewed 17,
/// TrustRenewFailed 18, TrustBundleChanged 19, ManifestPart 20,
/// EventDropped 21, FilesReceived 22, ReceiptRefused 23, TakeDeleted 24,
/// RetentionBlocked 25, Health 26.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// The agent process started (one per process start).
    AgentStarted { version: String },
    /// An operator note, from the controller or the node's local CLI.
    Annotated { text: String, origin: Origin },
    /// The bounded outbox was full and dropped its `dropped` oldest events.
    OutboxOverflow { dropped: u64 },
    /// The agent is shutting down on a signal.
    AgentStopping { reason: String },
    /// A take started recording.
    TakeStarted(TakeInfo),
    /// A segment's files were closed, fsynced and hashed.
    SegmentClosed {
        take_id: String,
        segment: u32,
        files: Vec<TakeFile>,
    },
    /// A take ended. `status`: "complete" (as asked) or "stopped" (ended
    /// early by the agent, `reason` says why; every file is still valid).
    /// `manifest_json` is the take's final `manifest.json`.
    TakeStopped {
        take_id: String,
        status: String,
        reason: String,
        frames: u64,
        manifest_json: String,
    },
    /// Audio was lost at take position `at_sample` (frames; `take_id`
    /// empty when no take was recording).
    Xrun {
        take_id: String,
        at_sample: u64,
        frames_lost: u64,
    },
    /// Free space on the recordings filesystem fell below the warning
    /// threshold.
    DiskLow {
        take_id: String,
        free_bytes: u64,
        path: String,
    },
    /// The capture device went away (or stopped delivering audio).
    DeviceLost {
        device: String,
        take_id: String,
        at_sample: u64,
        reason: String,
    },
    /// The capture device is back; a recording take continues in a new
    /// segment after a gap of `gap_frames`.
    DeviceBack {
        device: String,
        take_id: String,
        gap_frames: u64,
    },
    /// A take interrupted by a crash or power cut was repaired at start.
    TakeRecovered {
        take_id: String,
        frames: u64,
        frames_saved: u64,
        manifest_json: String,
    },
    /// An update waits for the recording take to end.
    UpdateDeferred { version: String, take_id: String },
    /// An update was verified and installed; the agent restarts into it
    /// (on probation). `previous` is the version kept for rollback.
    UpdateInstalled { version: String, previous: String },
    /// The new version passed probation (welcomed and stayed up).
    UpdateCommitted { version: String, previous: String },
    /// The new version failed probation and `restored` was put back.
    UpdateRolledBack {
        version: String,
        restored: String,
        reason: String,
    },
    /// An update was refused or could not be completed; nothing changed.
    UpdateFailed {
        version: String,
        kind: UpdateFailure,
        reason: String,
    },
    /// The node now connects with a renewed certificate (`reason`: why it
    /// renewed: scheduled, the controller asked, an operator asked).
    TrustRenewed {
        not_after: String,
        sha256: String,
        reason: String,
    },
    /// A renewal failed; the previous identity stayed (or came back).
    TrustRenewFailed { reason: String },
    /// The CA bundle the agent trusts for the controller changed (CA
    /// rollover over the link); the SHA-256 of each CA certificate.
    TrustBundleChanged { ca_sha256: Vec<String> },
    /// Part `part` (0-based) of `parts` of take `take_id`'s manifest, sent
    /// just before the `TakeStopped` or `TakeRecovered` event (or after a
    /// `StopTake` reply) whose `manifest_json` it replaces, when the
    /// manifest is over the inline limit (`limits::MANIFEST_INLINE_MAX`).
    /// The parts, concatenated in order, are the manifest.
    ManifestPart {
        take_id: String,
        part: u32,
        parts: u32,
        json: String,
    },
    /// An event of kind `kind` was `bytes` long, over the limit
    /// (`limits::EVENT_MAX`): this one stands in its place. `reason` says
    /// what was lost and where to find it on the node.
    EventDropped {
        kind: String,
        bytes: u64,
        reason: String,
    },
    /// The controller's copies of these files of take `take_id` matched
    /// the manifest's SHA-256; the receipt is durable in the take's
    /// manifest (`transfer`).
    FilesReceived { take_id: String, files: Vec<String> },
    /// A receipt named a SHA-256 other than the manifest's: the file stays
    /// unreceived (and is never deleted for it).
    ReceiptRefused {
        take_id: String,
        file: String,
        expected_sha256: String,
        received_sha256: String,
        reason: String,
    },
    /// Retention deleted take `take_id` (every file had a receipt):
    /// `files` files, `bytes` bytes; `reason` names the policy.
    TakeDeleted {
        take_id: String,
        files: u32,
        bytes: u64,
        reason: String,
    },
    /// The recordings disk is below the retention floor and nothing can be
    /// deleted (no take has every file received): `free_bytes` left.
    RetentionBlocked { free_bytes: u64, reason: String },
    /// A health signal was raised, changed severity or cleared (see
    /// `health`).
    Health(crate::health::HealthEvent),
    /// The console the node is wired to: found, lost, back, swapped,
    /// firmware changed, a channel renamed (see `console`; version 4).
    Console(Box<crate::console::ConsoleEvent>),
}

/// Why an update was refused. Variant indices: Checksum 0, Size 1,
/// WrongArchitecture 2, NotExecutable 3, Downgrade 4, VersionMismatch 5,
/// Transfer 6, Io 7, Busy 8, Signature 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateFailure {
    Checksum,
    Size,
    WrongArchitecture,
    NotExecutable,
    Downgrade,
    VersionMismatch,
    Transfer,
    Io,
    Busy,
    /// No release signature, a signature this agent's release keys do not
    /// verify, or an artifact the signed release manifest does not list.
    Signature,
}

/// Recording file formats. Variant indices: Flac 0, Wav 1, W64 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TakeFormat {
    /// One mono 24-bit FLAC file per channel.
    Flac,
    /// One mono 24-bit Broadcast WAV file per channel.
    Wav,
    /// One interleaved 24-bit Wave64 file with every channel.
    W64,
}

/// A take as reported in replies and events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeInfo {
    pub take_id: String,
    /// The take directory on the node.
    pub dir: String,
    pub device: String,
    pub channels: u16,
    pub sample_rate: u32,
    pub format: TakeFormat,
    /// Frames written so far.
    pub frames: u64,
    /// Current (or last) segment number, from 1.
    pub segments: u32,
    pub started_at_ms: u64,
    /// Frames of audio from before the start command (pre-roll).
    pub pre_roll_frames: u64,
}

/// A closed file of a take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeFile {
    /// File name inside the take directory.
    pub file: String,
    /// 1-based channel indices the file holds.
    pub channels: Vec<u16>,
    /// Take position (frames) of its first sample.
    pub first_sample: u64,
    pub samples: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// Who asked for something. Variant indices: Controller 0, Local 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// A controller command with this id.
    Controller { command_id: String },
    /// The node's local CLI (an operator at the node).
    Local,
}

/// The answer to one [`Command`], matched by `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    pub outcome: Outcome,
}

/// Variant indices: Done 0, Failed 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done(Reply),
    Failed(Failure),
}

/// Successful replies. Variant indices: Inventory 0, Annotated 1, Take 2,
/// TakeStatus 3, TakeStopped 4, Marked 5, Update 6, RenewalStarted 7,
/// TrustBundle 8, Takes 9, TakeFiles 10, Receipt 11, Listening 12,
/// ListenStopped 13, Configured 14, Running 15.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Current inventory, JSON text as in [`Hello::inventory_json`].
    Inventory { json: String },
    /// The note became the event with this sequence number.
    Annotated { seq: u64 },
    /// StartTake: the take now recording; `already_running` when the
    /// command named the take that was already recording (nothing changed).
    Take {
        take: TakeInfo,
        already_running: bool,
    },
    /// TakeStatus: the recording take, if any, and the capture device state.
    TakeStatus {
        take: Option<TakeInfo>,
        device: String,
        device_ok: bool,
    },
    /// StopTake: the take ended; its final manifest.
    TakeStopped {
        take: TakeInfo,
        manifest_json: String,
    },
    /// Mark: the label was placed at this take position (frames).
    Marked { at_sample: u64 },
    /// Update: accepted; what happens next is reported as events.
    Update(UpdateAck),
    /// RotateTrust: renewal started; the outcome is an event
    /// (TrustRenewed or TrustRenewFailed).
    RenewalStarted,
    /// TrustBundle: installed; the SHA-256 of each CA now trusted.
    TrustBundle { ca_sha256: Vec<String> },
    /// ListTakes: the takes after the asked id, in id order; `more` when
    /// the reply was cut to fit (ask again after the last one).
    Takes { takes: Vec<TakeSummary>, more: bool },
    /// TakeFiles: the closed files of `take_id` after the asked name, in
    /// manifest order; `more` when cut to fit.
    TakeFiles {
        take_id: String,
        files: Vec<TakeFileState>,
        more: bool,
    },
    /// Receipt: the files whose hash matched (now received) and those
    /// refused, with why.
    Receipt {
        take_id: String,
        accepted: Vec<String>,
        refused: Vec<RefusedReceipt>,
    },
    /// Listen: the stream runs (or was renewed, or changed) as this says.
    Listening(crate::listen::Listening),
    /// StopListen: no stream runs now (`was_running`: one did).
    ListenStopped { was_running: bool },
    /// Configure: the document is in force.
    Configured(crate::settings::ConfigApplied),
    /// RunningTakes: every take recording, oldest first, and the device.
    Running {
        takes: Vec<crate::takes::RunningTake>,
        device: String,
        device_ok: bool,
    },
}

/// A take on the node, as `ListTakes` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeSummary {
    pub take_id: String,
    /// `recording`, `complete`, `stopped` or `recovered`.
    pub status: String,
    pub device: String,
    pub channels: u16,
    pub sample_rate: u32,
    pub format: TakeFormat,
    pub segments: u32,
    /// Frames in closed files.
    pub frames: u64,
    /// Closed files, and how many of them the controller holds (receipts).
    pub files: u32,
    pub received: u32,
    /// Bytes of the closed files.
    pub bytes: u64,
}

/// One closed file of a take, with its receipt state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeFileState {
    pub file: String,
    pub segment: u32,
    /// 1-based channel indices the file holds.
    pub channels: Vec<u16>,
    pub first_sample: u64,
    pub samples: u64,
    pub size: u64,
    /// Empty until the file is hashed (moments after its segment closed).
    pub sha256: String,
    pub received: bool,
}

/// The SHA-256 the controller computed over what it received of `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReceipt {
    pub file: String,
    pub sha256: String,
}

/// A receipt the agent refused: its hash differs from the manifest's, the
/// file is not in the take, or it is not hashed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedReceipt {
    pub file: String,
    pub expected_sha256: String,
    pub received_sha256: String,
    pub reason: String,
}

/// Variant indices: Started 0, Deferred 1, AlreadyInstalled 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateAck {
    /// The transfer and verification started.
    Started,
    /// A take is recording: the artifact is fetched and verified now and
    /// installed when the take ends.
    Deferred,
    /// This version is already the installed one; nothing to do.
    AlreadyInstalled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
}

/// Variant indices: Unsupported 0, InvalidArgument 1, Busy 2, Internal 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureCode {
    /// The agent does not know this command (sent by a newer controller).
    Unsupported,
    InvalidArgument,
    Busy,
    Internal,
}

/// Best-effort levels of one capture interface. Latest wins; never queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterFrame {
    pub captured_at_ms: u64,
    pub interface_id: String,
    /// At most [`MAX_METER_LEVELS`].
    pub levels: Vec<Level>,
}

/// Largest number of levels in one [`MeterFrame`] (the controller's limit).
pub const MAX_METER_LEVELS: usize = 512;

/// One channel's levels. Channel labels are in the inventory (`channels[].alias`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// 1-based channel index.
    pub channel_index: u16,
    /// dBFS in [-160, 24].
    pub peak_dbfs: f32,
    pub rms_dbfs: f32,
    pub clipping: bool,
    pub quality: Option<Quality>,
}

/// Cheap signal-quality estimates, ranges as in the controller's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub crest_factor_db: f32,
    pub zero_crossing_rate: f32,
    pub noise_score: f32,
    pub speech_score: f32,
    pub speech_like: bool,
}

// ----------------------------------------------------------------------------
// Controller -> agent

/// Everything the controller sends. Variant indices: Welcome 0, Reject 1,
/// Heartbeat 2, Command 3, Ack 4, Goodbye 5, Chunk 6, TransferFailed 7,
/// Renewed 8, RenewRefused 9, RenewalOnly 10, Enrolled 11, EnrollRefused 12,
/// ReadFile 13, ClockReply 14.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControllerMsg {
    Welcome(Welcome),
    Reject(Reject),
    Heartbeat,
    Command(Command),
    Ack(Ack),
    Goodbye(Goodbye),
    /// The answer to a [`Fetch`].
    Chunk(Chunk),
    /// A [`Fetch`] named an unknown transfer or a range outside it.
    TransferFailed {
        transfer_id: String,
        message: String,
    },
    /// The answer to a [`Renew`]: the new certificate chain (PEM, leaf
    /// first). The agent checks it completely before using it.
    Renewed {
        request_id: u64,
        chain_pem: String,
    },
    /// A [`Renew`] was refused.
    RenewRefused {
        request_id: u64,
        message: String,
    },
    /// Instead of Welcome: the node's certificate expired recently (within
    /// the controller's renewal grace). Only [`Renew`] is served on this
    /// connection; the agent renews, then reconnects with the new one.
    RenewalOnly {
        message: String,
    },
    /// The answer to [`Enroll`]: the node's first certificate chain (PEM,
    /// leaf first).
    Enrolled {
        chain_pem: String,
    },
    /// [`Enroll`] refused (unknown, used or expired token, another node).
    EnrollRefused {
        message: String,
    },
    /// Asks for bytes of a closed file of a take (the controller pulls
    /// takes: it sets the pace, and resumes at its own offset after a
    /// reconnect). Answered by [`AgentMsg::FileChunk`] or
    /// [`AgentMsg::FileReadFailed`] with the same `request_id`.
    ReadFile(FileRead),
    /// The answer to [`AgentMsg::ClockProbe`].
    ClockReply(crate::health::ClockReply),
}

/// A request for `len` bytes (at most [`MAX_CHUNK_LEN`]) of `file` (a name
/// the take's manifest lists, or `manifest.json`) of take `take_id` from
/// `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRead {
    pub request_id: u64,
    pub take_id: String,
    pub file: String,
    pub offset: u64,
    pub len: u32,
}

/// Bytes `offset..offset + data.len()` of a transfer. Shorter than asked
/// only at the end of the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub transfer_id: String,
    pub offset: u64,
    // NOTE: serde_bytes makes postcard copy the bytes in one go (the wire
    // is the same as a Vec<u8>: varint length, then the bytes).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Successful handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The chosen protocol version: the highest both sides speak.
    pub version: u16,
    /// Each side sends a heartbeat when it has sent nothing else for this
    /// long; a peer silent for 3 intervals is dead.
    pub heartbeat_ms: u32,
    pub server_time_ms: u64,
    /// The controller holds every event of the Hello's stream with
    /// `seq < resume_from`; the agent drops those and resends the rest.
    pub resume_from: u64,
}

/// Failed handshake; the controller closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub reason: RejectReason,
    /// Human-readable explanation for logs.
    pub message: String,
}

/// Variant indices: NoCommonVersion 0, NodeIdMismatch 1, Refused 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    NoCommonVersion {
        agent: VersionRange,
        controller: VersionRange,
    },
    /// Hello named a node id other than the certificate's.
    NodeIdMismatch { claimed: String, certified: String },
    /// Any other refusal (see `message`).
    Refused,
}

/// A controller command. `id` is unique per command; a repeated id is
/// answered with the first result and never acted on twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub body: CommandBody,
}

/// Variant indices: Inventory 0, Annotate 1, StartTake 2, StopTake 3,
/// Mark 4, TakeStatus 5, Update 6, RotateTrust 7, TrustBundle 8,
/// UpdateSigned 9, ListTakes 10, TakeFiles 11, Receipt 12, Listen 13,
/// StopListen 14, Configure 15, StartTakeWith 16, RunningTakes 17.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Report the current inventory.
    Inventory,
    /// Record an operator note as an event.
    Annotate { text: String },
    /// Start recording a take. Starting the take that is already
    /// recording returns it unchanged; another take while one records is
    /// refused (`Busy`).
    StartTake(StartTake),
    /// Stop the recording take (`take_id` empty: whichever records).
    StopTake { take_id: String },
    /// Put a label at the current position of the recording take.
    Mark { label: String },
    /// Report the recording take and the device.
    TakeStatus,
    /// Replace the agent binary (see [`UpdateOffer`]). Carries no release
    /// signature: only a `Url` source is accepted (the agent fetches the
    /// signed manifest beside the artifact); prefer [`SignedUpdate`].
    Update(UpdateOffer),
    /// Renew the node certificate now (new key, CSR over this link).
    RotateTrust,
    /// CA rollover: from now on trust exactly these CA certificates (PEM)
    /// for the controller: old and new during the overlap, then the new
    /// one alone. Refused unless it still verifies this controller.
    TrustBundle { cas_pem: String },
    /// Replace the agent binary with a signed release (see [`SignedUpdate`]).
    UpdateSigned(SignedUpdate),
    /// List the takes on the node whose id sorts after `after` ("" from
    /// the first), with their receipt counts.
    ListTakes { after: String },
    /// List the closed files of take `take_id` after file `after` ("" from
    /// the first), with sizes, hashes and receipt states.
    TakeFiles { take_id: String, after: String },
    /// The controller holds these files of `take_id` and hashed them
    /// (at most `limits::RECEIPT_FILES_MAX`): each whose hash matches the
    /// manifest is recorded as received, durably, in the take.
    Receipt {
        take_id: String,
        files: Vec<FileReceipt>,
    },
    /// Start, renew or change the live listen stream (see `listen`).
    Listen(crate::listen::ListenRequest),
    /// Stop the live listen stream.
    StopListen,
    /// Replace the node's pushed configuration (see `settings`; protocol
    /// version 3 and later).
    Configure(crate::settings::ConfigPush),
    /// Start a take on chosen channels, alongside the takes recording
    /// (see `takes`; protocol version 3 and later).
    StartTakeWith(crate::takes::TakeRequest),
    /// List every take recording (protocol version 3 and later).
    RunningTakes,
}

/// An agent release to install. The hash comes over the authenticated
/// link, which is what makes the artifact authentic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOffer {
    /// Calendar version `YYYY.MM.DD-N` the binary must report.
    pub version: String,
    /// Rust target triple (must be the node's).
    pub target: String,
    /// Artifact size in bytes.
    pub size: u64,
    /// SHA-256 of the artifact, hex.
    pub sha256: String,
    pub source: UpdateSource,
    /// Install even while a take records (the take is closed first).
    pub force: bool,
    /// Install even if the version is not newer.
    pub allow_downgrade: bool,
}

/// An update with its release's signed manifest: the agent verifies the
/// signature with its built-in release keys before fetching anything, and
/// installs the artifact only if the manifest lists its SHA-256 for the
/// node's target and the offer's version. The offer's `sha256` is then only
/// a transfer check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUpdate {
    pub offer: UpdateOffer,
    /// `release-manifest.json` of the release, byte for byte as signed.
    pub release_manifest: String,
    /// Its minisign signature (`release-manifest.json.minisig`).
    pub signature: String,
}

/// Where the artifact (a release `.tar.gz` or a bare binary) comes from.
/// Variant indices: Stream 0, Url 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateSource {
    /// Pulled over this link with [`Fetch`]/[`Chunk`].
    Stream { transfer_id: String },
    /// Fetched from an HTTPS URL.
    Url { url: String },
}

/// What to record. Zero / `None` fields take the node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartTake {
    pub take_id: String,
    /// Channels to record (the first N of the device); 0: configured/all.
    pub channels: u16,
    pub format: Option<TakeFormat>,
    /// Longest segment in seconds; 0: configured.
    pub segment_seconds: u32,
    /// Audio from before the command to include, in ms (at most the
    /// node's pre-roll buffer).
    pub pre_roll_ms: u32,
}

/// Cumulative acknowledgement: the controller durably holds every event with
/// `seq <= up_to` of the current connection's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub up_to: u64,
}

/// Orderly close, sent by either side just before closing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    pub reason: GoodbyeReason,
    pub message: String,
}

/// Variant indices: Shutdown 0, ProtocolError 1, Replaced 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The sender is stopping.
    Shutdown,
    /// The peer broke the protocol (message names how).
    ProtocolError,
    /// A newer connection of the same node took over.
    Replaced,
}
