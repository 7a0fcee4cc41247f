//! Mutual TLS for both ends: TLS 1.3 only, ALPN [`ALPN`], no system roots.
//!
//! The agent trusts only the fleet CA bundle from its trust store and checks
//! the configured server name; it always presents its node certificate. The
//! controller requires a client certificate chaining to the node CA and takes
//! the node id from the certificate's subject common name.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

/// ALPN protocol name of generation 1 of the link.
pub const ALPN: &[u8] = b"rakkr-agent/1";

/// TLS setup failures, each naming the material at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("no PEM certificate found in {what}")]
    NoCertificate { what: String },
    #[error("no PEM private key found in {what}")]
    NoPrivateKey { what: String },
    #[error("unreadable PEM in {what}: {detail}")]
    Pem { what: String, detail: String },
    #[error("CA certificate in {what} is not usable as a trust anchor: {cause}")]
    BadCa { what: String, cause: rustls::Error },
    #[error("certificate and key do not form a usable identity: {0}")]
    Identity(rustls::Error),
    #[error("cannot build the client-certificate verifier: {0}")]
    Verifier(String),
    #[error("certificate is not valid X.509: {0}")]
    X509(String),
    #[error("client certificate has no subject common name to take the node id from")]
    NoNodeId,
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

/// A certificate chain (leaf first) and its private key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Parses PEM text; `what` names the source in errors (e.g. a path).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self, TlsError> {
        let chain = certs_from_pem(cert_pem, what)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                what: what.to_owned(),
            },
            other => TlsError::Pem {
                what: what.to_owned(),
                detail: other.to_string(),
            },
        })?;
        Ok(Self { chain, key })
    }
}

/// Parses every certificate in a PEM bundle; at least one is required.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

/// The crypto provider both ends use (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(cas: &[CertificateDer<'static>], what: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|cause| TlsError::BadCa {
            what: what.to_owned(),
            cause,
        })?;
    }
    Ok(roots)
}

/// The agent's side of TLS 1.3 trusting only the fleet CA bundle;
/// `identity`: its client certificate (none while enrolling).
fn agent_config(
    ca_bundle: &[CertificateDer<'static>],
    identity: Option<Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(ca_bundle, "the CA bundle")?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Identity)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(TlsError::Identity)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The agent's TLS configuration: TLS 1.3, fleet CA bundle only, client cert.
pub fn client_config(
    ca_bundle: &[CertificateDer<'static>],
    identity: Identity,
) -> Result<Arc<ClientConfig>, TlsError> {
    agent_config(ca_bundle, Some(identity))
}

/// The controller's TLS configuration. `versions` is TLS 1.3 only in
/// production ([`TLS13_ONLY`]); tests may pass others to play a broken peer.
pub fn server_config(
    node_ca: &[CertificateDer<'static>],
    identity: Identity,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_verifier(identity, versions, node_verifier(node_ca, false)?)
}

/// A controller's verifier of client certificates: node certificates
/// issued by `node_ca`; with `enrollment`, also clients without one (a
/// session without a certificate is then served `Enroll` only).
pub fn node_verifier(
    node_ca: &[CertificateDer<'static>],
    enrollment: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let roots = root_store(node_ca, "the node CA bundle")?;
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if enrollment {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// The controller's TLS configuration (TLS 1.3 profile, ALPN) with
/// `verifier` for client certificates.
pub fn server_config_with_verifier(
    identity: Identity,
    versions: &[&'static SupportedProtocolVersion],
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(TlsError::Identity)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)
        .map_err(TlsError::Identity)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The agent's TLS configuration for enrollment: the fleet CA bundle
/// authenticates the controller; the agent has no certificate yet.
pub fn enroll_client_config(
    ca_bundle: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TlsError> {
    agent_config(ca_bundle, None)
}

/// The only protocol version the link allows.
pub const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Parses a server name (DNS name or IP address) for certificate checks.
pub fn server_name(name: &str) -> Result<rustls::pki_types::ServerName<'static>, TlsError> {
    rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|_| TlsError::ServerName(name.to_owned()))
}

/// The subject common name of a certificate: the node id of a node certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| TlsError::X509(e.to_string()))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .filter(|cn| !cn.is_empty())
        .ok_or(TlsError::NoNodeId)?;
    Ok(cn)
}

/// Explains a TLS failure in words an operator can act on. Looks through an
/// `io::Error` for the rustls error inside it.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain_rustls(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    err.to_string()
}

fn explain_rustls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match err {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the peer's certificate is not issued by a CA in our trust bundle: check the CA bundle"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the controller's certificate does not name the configured server name: check controller.server_name"
        }
        E::InvalidCertificate(C::BadSignature) => {
            "the peer's certificate names a CA of our trust bundle but is not signed by it: check the CA bundle"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the peer's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the peer's certificate is not valid yet: check the clock"
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the peer refused our certificate because it has expired: renew or re-enroll this node"
        }
        E::AlertReceived(A::UnknownCA) => {
            "the peer does not trust the CA that issued our certificate"
        }
        E::AlertReceived(A::CertificateRequired) => {
            "the peer requires a client certificate and we sent none"
        }
        E::AlertReceived(A::BadCertificate | A::CertificateUnknown | A::UnsupportedCertificate) => {
            "the peer refused our certificate"
        }
        E::AlertReceived(A::ProtocolVersion) | E::PeerIncompatible(_) => {
            "the peer does not speak TLS 1.3 (the only version the link allows)"
        }
        E::AlertReceived(A::NoApplicationProtocol) | E::NoApplicationProtocol => {
            "the peer does not speak the rakkr-agent/1 protocol (ALPN)"
        }
        E::NoCertificatesPresented => "the client presented no certificate",
        _ => return format!("TLS error: {err}"),
    };
    format!("{hint} (TLS: {err})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bundle_names_its_source() {
        let err = certs_from_pem(b"", "/etc/x/ca.pem").unwrap_err();
        assert_eq!(err.to_string(), "no PEM certificate found in /etc/x/ca.pem");
    }

    #[test]
    fn explain_sees_through_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(explain(&io).contains("not issued by a CA in our trust bundle"));
    }
}
