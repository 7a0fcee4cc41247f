//! The controller's TLS configuration: the protocol's TLS 1.3 profile
//! (`rakkr_protocol::tls`) with what a controller may let in besides valid
//! node certificates: expired ones within a grace, for renewal only
//! ([`crate::grace`]), and clients without a certificate, for enrollment.

use std::sync::Arc;

use rakkr_protocol::tls::{self, Identity, TlsError};
use rustls::pki_types::CertificateDer;
use rustls::{ServerConfig, SupportedProtocolVersion};

/// What a controller's TLS configuration lets in besides valid node certificates.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerOptions {
    /// Node certificates expired less than this long ago, for renewal only.
    pub renewal_grace: Option<std::time::Duration>,
    /// Clients without a certificate, for enrollment only.
    pub enrollment: bool,
}

/// The controller's TLS configuration with `options`.
pub fn server_config_for(
    node_ca: &[CertificateDer<'static>],
    identity: Identity,
    versions: &[&'static SupportedProtocolVersion],
    options: ServerOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let strict = tls::node_verifier(node_ca, options.enrollment)?;
    let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match options.renewal_grace
    {
        Some(grace) => Arc::new(crate::grace::GraceVerifier::new(strict, grace)),
        None => strict,
    };
    tls::server_config_with_verifier(identity, versions, verifier)
}

/// [`tls::server_config`], also accepting node certificates expired less
/// than `renewal_grace` ago (for renewal only; see [`crate::grace`]).
pub fn server_config_with_grace(
    node_ca: &[CertificateDer<'static>],
    identity: Identity,
    versions: &[&'static SupportedProtocolVersion],
    renewal_grace: Option<std::time::Duration>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(
        node_ca,
        identity,
        versions,
        ServerOptions {
            renewal_grace,
            enrollment: false,
        },
    )
}
