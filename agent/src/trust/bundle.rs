//! CA rollover: the controller pushes the complete set of CA certificates
//! to trust for it from now on (old and new during the overlap, then the
//! new one alone). Accepted only over the authenticated link, only CA
//! certificates, and only if the set still verifies the controller this
//! link is talking to (a push that would cut the node off is refused).
//! Installed as a new generation beside the node's current certificate
//! and key; new connections use it, the current one is not touched.

use rakkr_protocol::tls;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::store;
use crate::config::TrustPaths;

/// Checks and installs `cas_pem`; returns the SHA-256 of each CA.
pub fn apply(
    paths: &TrustPaths,
    cas_pem: &str,
    controller_chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
) -> Result<Vec<String>, String> {
    let cas = tls::certs_from_pem(cas_pem.as_bytes(), "the pushed CA bundle")
        .map_err(|e| e.to_string())?;
    for ca in &cas {
        let (_, c) = x509_parser::parse_x509_certificate(ca.as_ref())
            .map_err(|e| format!("a pushed CA certificate is not valid X.509: {e}"))?;
        if !c.is_ca() {
            return Err(format!(
                "{} is not a CA certificate (basicConstraints CA is not set)",
                c.subject()
            ));
        }
    }
    let (leaf, intermediates) = controller_chain
        .split_first()
        .ok_or("no controller certificate on this link to check the bundle against")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cas {
        roots
            .add(ca.clone())
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        tls::provider(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, intermediates, server_name, &[], UnixTime::now())
        .map_err(|e| {
            format!("refused: the pushed bundle does not verify this controller ({e}); it would cut the node off")
        })?;
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let cert = read(&paths.cert)?;
    let key = read(&paths.key)?;
    store::install(
        paths,
        &store::Pems {
            ca: cas_pem.as_bytes(),
            cert: &cert,
            key: &key,
        },
    )
    .map_err(|e| format!("installing the bundle: {e:#}"))?;
    Ok(cas.iter().map(|c| super::fingerprint(c)).collect())
}
