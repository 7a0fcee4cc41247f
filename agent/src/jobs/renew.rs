//! Certificate renewal over the authenticated link, and the task that
//! schedules it (linkerd2-proxy's identity daemon is the model).
//!
//! One renewal: new key (generated here; it never leaves the node) → CSR
//! over the link → the returned chain checked completely (`validate`:
//! matches the new key, chains to the CA bundle, valid now, names this
//! node) → installed as a new generation (`store`) → the link told to
//! reconnect with it → committed once the controller has welcomed it. If
//! it is not welcomed in time the previous identity comes back. Every
//! outcome is an event. None of this touches the recorder.
//!
//! The task renews at about two thirds of the certificate's lifetime
//! (with jitter, so a fleet installed together does not renew together),
//! at once when asked (controller's RotateTrust, `trust rotate`), and
//! retries failures with backoff.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rakkr_protocol::EventBody;
use rustls::pki_types::UnixTime;
use tokio_util::sync::CancellationToken;

use crate::node::{LinkStatus, Node};
use crate::trust::{store, validate};

/// How long the controller has to answer a renewal request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the renewed identity has to be welcomed before it is undone.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// When to renew a certificate valid `not_before..not_after` (unix
/// seconds): two thirds in, give or take 5 % of the lifetime.
pub fn renew_at(not_before: i64, not_after: i64, jitter: f64) -> i64 {
    let life = (not_after - not_before).max(1) as f64;
    let at = not_before as f64 + life * (2.0 / 3.0 + 0.05 * jitter.clamp(-1.0, 1.0));
    at.round() as i64
}

/// One renewal; on failure the previous identity is in use and the
/// reason is returned (and reported as an event).
pub async fn renew(node: &Arc<Node>, reason: &str) -> anyhow::Result<()> {
    let result = attempt(node, reason).await;
    if let Err(e) = &result {
        let reason = format!("{e:#}");
        tracing::warn!(%reason, "certificate renewal failed; the previous identity stays");
        if let Err(e) = node.emit(EventBody::TrustRenewFailed { reason }).await {
            tracing::error!(
                error = format!("{e:#}"),
                "could not record the renewal failure"
            );
        }
    }
    result
}

async fn attempt(node: &Arc<Node>, reason: &str) -> anyhow::Result<()> {
    let paths = node.config.trust.clone();
    let current = crate::trust::load(&paths).context("loading the current identity")?;
    let node_id = node
        .config
        .node
        .id
        .clone()
        .unwrap_or_else(|| current.node_id.clone());
    let ca_pem = std::fs::read(&paths.ca_bundle)
        .with_context(|| format!("reading CA bundle {}", paths.ca_bundle.display()))?;
    let id = node_id.clone();
    let (csr, key_pem) =
        tokio::task::spawn_blocking(move || crate::trust::csr::key_and_csr(&id)).await??;
    tracing::info!(%reason, "renewing the node certificate");
    let chain_pem = node
        .trust
        .request(csr, ANSWER_TIMEOUT)
        .await
        .map_err(|m| anyhow::anyhow!("the controller did not renew: {m}"))?;
    validate::check(
        &ca_pem,
        chain_pem.as_bytes(),
        key_pem.as_bytes(),
        Some(&node_id),
        UnixTime::now(),
    )
    .context("the controller's certificate was refused")?;
    let sessions = *node.sessions.borrow();
    store::install_off_runtime(&paths, ca_pem, chain_pem, key_pem)
        .await
        .context("installing the renewed identity")?;
    node.reload_trust.notify_one();
    let mut welcomed = node.sessions.subscribe();
    let accepted = tokio::time::timeout(WELCOME_TIMEOUT, async {
        while *welcomed.borrow_and_update() <= sessions {
            if welcomed.changed().await.is_err() {
                return;
            }
        }
    })
    .await
    .is_ok();
    if !accepted {
        let restore = paths.clone();
        tokio::task::spawn_blocking(move || store::restore_previous(&restore))
            .await?
            .context("putting the previous identity back")?;
        node.reload_trust.notify_one();
        bail!(
            "the controller did not welcome the renewed certificate within {WELCOME_TIMEOUT:?}; the previous one is back"
        );
    }
    let info = crate::trust::report(&paths)
        .certificate
        .context("the renewed certificate cannot be read back")?;
    tracing::info!(not_after = %info.not_after, sha256 = %info.sha256, "certificate renewed");
    node.emit(EventBody::TrustRenewed {
        not_after: info.not_after,
        sha256: info.sha256,
        reason: reason.to_owned(),
    })
    .await?;
    Ok(())
}

/// A node without an identity whose service got a one-time token
/// (RAKKR_ENROLL_TOKEN, the Rakkr node token RAKKR_CONTROLLER_TOKEN, or
/// the systemd credential `rakkr-enroll-token`) and the fleet CA bundle at
/// its trust path (or, unconfigured, where Rakkr's Ansible role puts the
/// controller's CA) enrolls by itself.
async fn auto_enroll(node: &Arc<Node>) -> bool {
    let cfg = &node.config;
    if cfg.trust.cert.exists() {
        return false;
    }
    let Ok(token) = crate::trust::enroll::token(None) else {
        return false;
    };
    let (Some(endpoint), Some(node_id)) = (cfg.controller.endpoint.as_ref(), cfg.node.id.as_ref())
    else {
        tracing::warn!(
            "an enrollment token is there, but enrolling needs controller.url and node.id"
        );
        return false;
    };
    let configured = !matches!(
        cfg.origins.get("controller.ca_cert_path"),
        None | Some(crate::config::origins::Origin::Default)
    );
    let ca_pem = match crate::trust::enroll::enrollment_ca(
        &cfg.trust.ca_bundle,
        configured,
        std::path::Path::new(crate::trust::enroll::ROLE_CA),
    ) {
        Ok((pem, from)) => {
            tracing::info!(ca = %from.display(), "enrolling: the controller is checked with this CA");
            pem
        }
        Err(e) => {
            tracing::warn!(
                ca = %cfg.trust.ca_bundle.display(),
                error = %e,
                "an enrollment token is there, but no fleet CA bundle to check the controller with"
            );
            return false;
        }
    };
    let timeout = cfg.controller.connect_timeout.max(Duration::from_secs(5));
    match crate::trust::enroll::enroll(&cfg.trust, endpoint, node_id, token, ca_pem, timeout).await
    {
        Ok(at) => {
            tracing::info!(%node_id, installed = %at.display(), "enrolled with the controller");
            node.reload_trust.notify_one();
            true
        }
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "enrollment failed; trying again in a minute"
            );
            false
        }
    }
}

/// Waits until the link has a session (welcomed, or renewal-only), or `cancel`.
async fn link_up(node: &Node, cancel: &CancellationToken) -> bool {
    let mut status = node.status.subscribe();
    loop {
        if matches!(
            *status.borrow_and_update(),
            LinkStatus::Connected { .. } | LinkStatus::RenewalOnly { .. }
        ) {
            return true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            r = status.changed() => if r.is_err() { return false },
        }
    }
}

/// The renewal task: runs until `cancel`.
pub async fn run(node: Arc<Node>, cancel: CancellationToken) {
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
    let mut retry = Duration::ZERO;
    let mut installed = node.trust.installed.subscribe();
    loop {
        let loaded = crate::trust::load(&node.config.trust);
        let has_identity = loaded.is_ok();
        let wait = match loaded {
            Ok(l) => {
                let at = renew_at(
                    l.not_before_unix,
                    l.not_after_unix,
                    fastrand::f64() * 2.0 - 1.0,
                );
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                Duration::from_secs(at.saturating_sub(now).max(0) as u64)
            }
            // No identity yet: enroll if the service was given a token;
            // else look again later (or when trust is installed).
            Err(_) => {
                if auto_enroll(&node).await {
                    continue;
                }
                Duration::from_secs(60)
            }
        };
        let reason = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait.max(retry)) => "scheduled at two thirds of the certificate's lifetime",
            _ = node.trust.rotate.notified() => "rotation asked for",
            // Trust installed from outside: schedule from the new certificate.
            _ = installed.changed() => continue,
        };
        // No identity when the wait began: schedule again from what is there now.
        if !has_identity {
            continue;
        }
        if !link_up(&node, &cancel).await {
            return;
        }
        retry = match renew(&node, reason).await {
            Ok(()) => {
                backoff.reset();
                Duration::ZERO
            }
            Err(_) => backoff.next_delay(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_give_or_take_five_percent() {
        assert_eq!(renew_at(0, 300, 0.0), 200);
        assert_eq!(renew_at(0, 300, 1.0), 215);
        assert_eq!(renew_at(0, 300, -1.0), 185);
        assert!(
            renew_at(1000, 1000, 0.0) <= 1001,
            "a zero lifetime is due at once"
        );
    }

    #[test]
    fn the_csr_names_the_node_and_carries_the_new_key() {
        let (csr, key_pem) = crate::trust::csr::key_and_csr("node-x").unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_der(
            &rustls::pki_types::CertificateSigningRequestDer::from(csr),
        )
        .unwrap();
        let cn = parsed
            .params
            .distinguished_name
            .get(&rcgen::DnType::CommonName)
            .cloned();
        assert_eq!(cn, Some(rcgen::DnValue::Utf8String("node-x".into())));
        let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(parsed.public_key.der_bytes(), key.der_bytes());
    }
}
