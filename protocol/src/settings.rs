//! Node configuration pushed by the controller: a versioned document the
//! agent validates whole, persists in its state directory and applies
//! live (PROTOCOL.md §5.7).
//!
//! The document is a JSON object of sections of keys, as in the agent's
//! config file: `{"capture": {"device": "hw:CARD=X32,DEV=0", "channels":
//! 32}, "health": {"clip_dbfs": -0.5}}`. It replaces the previous pushed
//! document whole (an empty object clears every pushed setting). Keys the
//! operator's file or environment set keep their value; keys no
//! controller may set (programs, paths, trust, the link itself) refuse
//! the whole document, naming the key.

use serde::{Deserialize, Serialize};

/// Longest document accepted, bytes.
pub const CONFIG_DOCUMENT_MAX: usize = 16 * 1024;

/// `CommandBody::Configure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPush {
    /// Increases with every document the controller pushes; an older
    /// version than the node holds is refused, the same one is a no-op.
    pub version: u64,
    /// The settings, a JSON object (at most [`CONFIG_DOCUMENT_MAX`] bytes).
    pub document: String,
    /// Reopen the capture device now even while a take records (the take
    /// is ended cleanly first); otherwise a change that needs it waits
    /// for the take to end.
    pub force: bool,
}

/// `Reply::Configured`: the document is in force (and on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub version: u64,
    /// `section.key` whose effective value changed.
    pub changed: Vec<String>,
    /// `section.key` the document sets that the operator's file or
    /// environment sets too: theirs stays in force.
    pub overridden: Vec<String>,
    pub reopen: Reopen,
}

/// What the capture device does about the change.
///
/// Variant indices: NotNeeded 0, Reopened 1, AfterTake 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reopen {
    /// Nothing the open device depends on changed.
    NotNeeded,
    /// The device is reopened with the new settings now.
    Reopened,
    /// A take records: the device is reopened when it ends.
    AfterTake { take_id: String },
}
