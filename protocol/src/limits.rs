//! Bounds on every length a peer supplies, and on what the agent sends.
//!
//! A frame may hold up to [`crate::MAX_FRAME_LEN`] bytes, but no single
//! field needs to come close: each has its own limit, listed in
//! `PROTOCOL.md` ("Limits"). The agent refuses a command with a field over
//! its limit (`InvalidArgument`, naming the field) before acting on it.
//!
//! Outgoing, the agent never queues an event it could not send: a take's
//! manifest over [`MANIFEST_INLINE_MAX`] travels in `ManifestPart` events
//! ahead of the event that would have carried it (whose `manifest_json`
//! is then empty), and any other event over [`EVENT_MAX`] is replaced by an
//! `EventDropped` saying what it was and why.

use crate::message::{Command, CommandBody, FileRead, UpdateOffer, UpdateSource};

/// A command id (the controller's correlation id).
pub const COMMAND_ID_MAX: usize = 128;
/// An operator note (`Annotate`, the local `annotate`).
pub const NOTE_MAX: usize = 4096;
/// A marker label (`Mark`).
pub const LABEL_MAX: usize = 256;
/// A take id (also a directory name).
pub const TAKE_ID_MAX: usize = 128;
/// A release version string.
pub const VERSION_MAX: usize = 64;
/// A Rust target triple.
pub const TARGET_MAX: usize = 64;
/// A hex SHA-256.
pub const SHA256_HEX: usize = 64;
/// An update transfer id.
pub const TRANSFER_ID_MAX: usize = 128;
/// An update URL.
pub const URL_MAX: usize = 2048;
/// A signed release manifest (`UpdateSigned`, `release-manifest.json`).
pub const RELEASE_MANIFEST_MAX: usize = 64 * 1024;
/// A minisign signature (`.minisig`: two comment lines, two base64 lines).
pub const SIGNATURE_MAX: usize = 4096;
/// A CA bundle (`TrustBundle`), PEM.
pub const CA_BUNDLE_MAX: usize = 256 * 1024;
/// A channel name (configuration, manifests, meters).
pub const CHANNEL_NAME_MAX: usize = 64;
/// The largest manifest carried inline by `TakeStopped`, `TakeRecovered`
/// or the `StopTake` reply; larger ones go in `ManifestPart` events.
pub const MANIFEST_INLINE_MAX: usize = 192 * 1024;
/// A file name inside a take (as its manifest lists it).
pub const FILE_NAME_MAX: usize = 255;
/// Files named in one `Receipt` command.
pub const RECEIPT_FILES_MAX: usize = 1024;
/// Bytes of take and file listings the agent puts in one reply (the rest
/// is asked for again with `after`).
pub const LISTING_MAX: usize = 256 * 1024;
/// The largest encoded event the agent queues (a quarter of the frame).
pub const EVENT_MAX: usize = (crate::MAX_FRAME_LEN / 4) as usize;

/// A field over its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    #[error("{field} is {len} bytes; the limit is {max} bytes (PROTOCOL.md, Limits)")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field}: {count}; the limit is {max} (PROTOCOL.md, Limits)")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

/// `Err` when `value` is longer than `max` bytes.
pub fn check(field: &'static str, value: &str, max: usize) -> Result<(), LimitError> {
    if value.len() > max {
        return Err(LimitError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// The longest prefix of `s` of at most `max` bytes (on a char boundary).
pub fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Command {
    /// Checks every length in the command against its limit.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check("command id", &self.id, COMMAND_ID_MAX)?;
        match &self.body {
            CommandBody::Annotate { text } => check("note", text, NOTE_MAX),
            CommandBody::StartTake(s) => check("take id", &s.take_id, TAKE_ID_MAX),
            CommandBody::StopTake { take_id } => check("take id", take_id, TAKE_ID_MAX),
            CommandBody::Mark { label } => check("label", label, LABEL_MAX),
            CommandBody::Update(o) => check_offer(o),
            CommandBody::UpdateSigned(s) => {
                check_offer(&s.offer)?;
                check(
                    "release manifest",
                    &s.release_manifest,
                    RELEASE_MANIFEST_MAX,
                )?;
                check("signature", &s.signature, SIGNATURE_MAX)
            }
            CommandBody::TrustBundle { cas_pem } => check("CA bundle", cas_pem, CA_BUNDLE_MAX),
            CommandBody::ListTakes { after } => check("take id", after, TAKE_ID_MAX),
            CommandBody::TakeFiles { take_id, after } => {
                check("take id", take_id, TAKE_ID_MAX)?;
                check("file name", after, FILE_NAME_MAX)
            }
            CommandBody::Receipt { take_id, files } => {
                check("take id", take_id, TAKE_ID_MAX)?;
                if files.len() > RECEIPT_FILES_MAX {
                    return Err(LimitError::TooMany {
                        field: "receipt files",
                        count: files.len(),
                        max: RECEIPT_FILES_MAX,
                    });
                }
                for f in files {
                    check("file name", &f.file, FILE_NAME_MAX)?;
                    check("sha256", &f.sha256, SHA256_HEX)?;
                }
                Ok(())
            }
            CommandBody::Listen(l) => {
                if l.channels.len() > crate::listen::LISTEN_CHANNELS_MAX {
                    return Err(LimitError::TooMany {
                        field: "listen channels",
                        count: l.channels.len(),
                        max: crate::listen::LISTEN_CHANNELS_MAX,
                    });
                }
                Ok(())
            }
            CommandBody::Configure(c) => check(
                "config document",
                &c.document,
                crate::settings::CONFIG_DOCUMENT_MAX,
            ),
            CommandBody::StartTakeWith(t) => {
                check("take id", &t.take_id, TAKE_ID_MAX)?;
                check("job id", &t.job_id, crate::takes::JOB_ID_MAX)?;
                if t.channels.len() > crate::takes::TAKE_CHANNELS_MAX {
                    return Err(LimitError::TooMany {
                        field: "take channels",
                        count: t.channels.len(),
                        max: crate::takes::TAKE_CHANNELS_MAX,
                    });
                }
                Ok(())
            }
            CommandBody::Inventory
            | CommandBody::RunningTakes
            | CommandBody::TakeStatus
            | CommandBody::RotateTrust
            | CommandBody::StopListen => Ok(()),
        }
    }
}

impl FileRead {
    /// Checks every length in the request against its limit.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        check("take id", &self.take_id, TAKE_ID_MAX)?;
        check("file name", &self.file, FILE_NAME_MAX)?;
        if self.len > crate::MAX_CHUNK_LEN {
            return Err(LimitError::TooMany {
                field: "read length",
                count: self.len as usize,
                max: crate::MAX_CHUNK_LEN as usize,
            });
        }
        Ok(())
    }
}

fn check_offer(o: &UpdateOffer) -> Result<(), LimitError> {
    check("version", &o.version, VERSION_MAX)?;
    check("target", &o.target, TARGET_MAX)?;
    check("sha256", &o.sha256, SHA256_HEX)?;
    match &o.source {
        UpdateSource::Stream { transfer_id } => check("transfer id", transfer_id, TRANSFER_ID_MAX),
        UpdateSource::Url { url } => check("url", url, URL_MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_at_its_limit_passes_and_one_byte_more_is_named() {
        let id = |n| "i".repeat(n);
        let cmd = |id: String, body| Command { id, body };
        assert!(
            cmd(
                id(128),
                CommandBody::Mark {
                    label: "l".repeat(256)
                }
            )
            .check_limits()
            .is_ok()
        );
        let e = cmd(id(129), CommandBody::TakeStatus)
            .check_limits()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "command id is 129 bytes; the limit is 128 bytes (PROTOCOL.md, Limits)"
        );
        let e = cmd(
            id(1),
            CommandBody::Mark {
                label: "l".repeat(257),
            },
        )
        .check_limits()
        .unwrap_err();
        assert!(matches!(
            e,
            LimitError::TooLong {
                field: "label",
                len: 257,
                max: 256
            }
        ));
        let e = cmd(
            id(1),
            CommandBody::Annotate {
                text: "n".repeat(4097),
            },
        )
        .check_limits()
        .unwrap_err();
        assert!(e.to_string().starts_with("note is 4097 bytes"));
    }

    #[test]
    fn a_signed_update_bounds_its_manifest_and_signature() {
        let signed = |manifest: usize, signature: usize| Command {
            id: "u".into(),
            body: CommandBody::UpdateSigned(crate::SignedUpdate {
                offer: UpdateOffer {
                    version: "2026.11.23-2".into(),
                    target: "x86_64-unknown-linux-musl".into(),
                    size: 1,
                    sha256: "ab".repeat(32),
                    source: UpdateSource::Stream {
                        transfer_id: "t".into(),
                    },
                    force: false,
                    allow_downgrade: false,
                },
                release_manifest: "m".repeat(manifest),
                signature: "s".repeat(signature),
            }),
        };
        assert!(
            signed(RELEASE_MANIFEST_MAX, SIGNATURE_MAX)
                .check_limits()
                .is_ok()
        );
        let e = signed(RELEASE_MANIFEST_MAX + 1, 1)
            .check_limits()
            .unwrap_err();
        assert!(matches!(
            e,
            LimitError::TooLong {
                field: "release manifest",
                ..
            }
        ));
        let e = signed(1, SIGNATURE_MAX + 1).check_limits().unwrap_err();
        assert!(e.to_string().starts_with("signature is 4097 bytes"), "{e}");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("abc", 10), "abc");
    }
}
