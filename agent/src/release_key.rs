//! Release keys as text: a minisign public key parsed, and its key id.
//! A leaf: the configuration checks `update.trusted_keys` with it, and
//! `update::release` verifies signatures with the keys it gives.

use base64::Engine as _;
use minisign_verify::PublicKey;

/// Parses a minisign public key: the base64 line (`RW…`), optionally
/// followed by a description, or a whole `.pub` file.
pub fn parse_key(text: &str) -> Result<(String, PublicKey), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("untrusted comment:"))
        .ok_or("no key in it")?;
    let b64 = line.split_whitespace().next().unwrap_or_default();
    let key = PublicKey::from_base64(b64)
        .map_err(|e| format!("{b64:?} is not a minisign public key ({e})"))?;
    Ok((key_id(b64).unwrap_or_default(), key))
}

/// The key id in a base64 public key or signature line (bytes 2..10,
/// printed as a little-endian u64 like minisign does).
pub fn key_id(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let id: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}
