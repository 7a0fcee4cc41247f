//! `rakkr-bridge node bootstrap`: a node's day-0 with a Rakkr bootstrap
//! token instead of a node token. Rakkr's bootstrap trades a single-use
//! `rakkr_bs_…` token and the node's SSH keypair (the controller manages
//! nodes over SSH and keeps the key) for the node's controller token,
//! which the bridge then keeps as the node's credential (0600). It
//! revokes every earlier token of the node at once.
//!
//! Checked before anything is sent, with the controller's bounds: an
//! OpenSSH public key (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-*`, at most
//! 4000 characters), a private key of 1–20000 characters, a username of
//! 1–64. The key files must not be readable by others.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::api::RakkrApi;
use crate::credentials::Credentials;

/// Why a bootstrap did not happen; each is its own exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// What the operator gave is wrong (exit 2).
    #[error("{0}")]
    Input(String),
    /// The controller said no (exit 4): its status and message.
    #[error("the controller refused the bootstrap ({code}): {message}")]
    Refused { code: u16, message: String },
    /// The controller could not be asked (exit 5).
    #[error("the controller could not be reached: {0}")]
    Unavailable(String),
    /// The token came, but could not be kept (exit 6): it is printed so
    /// that it is not lost (the bootstrap token is used up).
    #[error("the controller token could not be kept: {why}")]
    NotKept { why: String, token: String },
}

/// What the operator hands over.
#[derive(Debug)]
pub struct Request<'a> {
    /// The node's id in Rakkr.
    pub node: &'a str,
    /// Our id of it, under which the token is kept.
    pub keep_as: &'a str,
    pub bootstrap_token: &'a str,
    pub private_key: &'a Path,
    pub public_key: &'a Path,
    pub username: Option<&'a str>,
}

fn read_key(p: &Path, private: bool) -> Result<String, BootstrapError> {
    let meta = std::fs::metadata(p)
        .map_err(|e| BootstrapError::Input(format!("reading {}: {e}", p.display())))?;
    if private && meta.permissions().mode() & 0o077 != 0 {
        return Err(BootstrapError::Input(format!(
            "{} is readable by others (mode {:o}): chmod 600 it first",
            p.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    if meta.len() > 20_000 {
        return Err(BootstrapError::Input(format!(
            "{} is {} bytes; a key is at most 20000",
            p.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(p)
        .map_err(|e| BootstrapError::Input(format!("reading {}: {e}", p.display())))
}

/// Checks what the controller would refuse; the body to send.
pub fn body(r: &Request<'_>) -> Result<serde_json::Value, BootstrapError> {
    if !r.bootstrap_token.starts_with("rakkr_bs_") {
        return Err(BootstrapError::Input(
            "the bootstrap token starts with rakkr_bs_ (a node token, rakkr_node_…, goes in <credentials_dir>/<node>.token instead)".into(),
        ));
    }
    let private = read_key(r.private_key, true)?;
    let public = read_key(r.public_key, false)?;
    let public = public.trim();
    let openssh = ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-"]
        .iter()
        .any(|p| public.starts_with(p));
    if !openssh || public.len() > 4_000 {
        return Err(BootstrapError::Input(format!(
            "{} is not an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-*, at most 4000 characters)",
            r.public_key.display()
        )));
    }
    if private.trim().is_empty() {
        return Err(BootstrapError::Input(format!(
            "{} is empty",
            r.private_key.display()
        )));
    }
    let mut body = json!({ "privateKey": private, "publicKey": public });
    if let Some(u) = r.username {
        if u.trim().is_empty() || u.trim().len() > 64 {
            return Err(BootstrapError::Input(
                "the username is 1-64 characters".into(),
            ));
        }
        body["username"] = json!(u.trim());
    }
    Ok(body)
}

/// Bootstraps `r.node` and keeps its controller token.
pub async fn run(
    api: &RakkrApi,
    credentials: &Credentials,
    r: &Request<'_>,
) -> Result<(), BootstrapError> {
    let body = body(r)?;
    let path = format!("/api/v1/nodes/{}/bootstrap", r.node);
    let (code, reply) = api
        .call("POST", &path, r.bootstrap_token, Some(body))
        .await
        .map_err(BootstrapError::Unavailable)?;
    if code != 201 {
        let message = reply["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_owned();
        return Err(if code >= 500 {
            BootstrapError::Unavailable(format!("{code}: {message}"))
        } else {
            BootstrapError::Refused { code, message }
        });
    }
    let Some(token) = reply["data"]["controllerToken"].as_str() else {
        return Err(BootstrapError::Refused {
            code,
            message: "the answer carries no controllerToken".into(),
        });
    };
    credentials
        .put(r.keep_as, token)
        .map_err(|e| BootstrapError::NotKept {
            why: format!("{e:#}"),
            token: token.to_owned(),
        })
}
