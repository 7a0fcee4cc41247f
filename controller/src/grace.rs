//! The bounded, renewal-only way back for a node whose certificate expired
//! while it was switched off: a client-certificate verifier that accepts a
//! certificate which is otherwise valid (chains to the node CA, client
//! usage) and expired less than `grace` ago. The session then serves only
//! renewal (`RenewalOnly` instead of `Welcome`). Past `grace` the
//! handshake fails as before and the node must be enrolled again.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

#[derive(Debug)]
pub struct GraceVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    grace: Duration,
}

impl GraceVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, grace: Duration) -> Self {
        Self { inner, grace }
    }
}

/// The certificate's notAfter (unix seconds), if it parses.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    x509_parser::parse_x509_certificate(cert.as_ref())
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}

impl ClientCertVerifier for GraceVerifier {
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let strict = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        let Err(Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) = strict
        else {
            return strict;
        };
        match not_after(end_entity) {
            Some(na)
                if now.as_secs() as i64 >= na
                    && (now.as_secs() as i64 - na) as u64 <= self.grace.as_secs() =>
            {
                // Everything else is checked as of the last second it was valid.
                let at = na.max(1) as u64 - 1;
                self.inner.verify_client_cert(
                    end_entity,
                    intermediates,
                    UnixTime::since_unix_epoch(Duration::from_secs(at)),
                )
            }
            _ => strict,
        }
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
}
