//! Development PKI (rcgen): a CA, node and controller certificates, so a
//! newcomer can run both ends in a minute and tests can make every kind of
//! bad certificate. Never used by the agent itself.
//!
//! Layout written by [`write_dev_pki`]:
//! ```text
//! <dir>/ca.pem                     the dev CA (fleet CA and node CA at once)
//! <dir>/controller/{ca.pem,controller.pem,controller.key}
//! <dir>/nodes/<node-id>/{ca.pem,node.pem,node.key}   an agent trust directory
//! ```

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// A certificate authority that can issue node and controller certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A leaf certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From two seconds ago for `lifetime` (short-lived certificates:
    /// backdating by an hour would put them past two thirds at once).
    pub fn lasting(lifetime: std::time::Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::seconds(2),
            not_after: now + lifetime,
        }
    }

    /// From an hour ago until `days` from now.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }

    /// Expired yesterday.
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        }
    }
}

fn serial() -> SerialNumber {
    let mut bytes = fastrand::u64(..).to_be_bytes().to_vec();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

impl Ca {
    /// A new self-signed CA named `common_name`, valid for ten years.
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "Rakkr development");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let v = Validity::days(3650);
        params.not_before = v.not_before;
        params.not_after = v.not_after;
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An existing CA from its certificate and private key (PEM): a
    /// fleet's CA that a bridge issues node certificates with.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der: der,
            issuer,
        })
    }

    /// The CA's private key (PEM), to keep it in a file.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<Leaf, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a certificate signing request (DER; its signature proves the
    /// requester holds the key) as a node certificate for `node_id`, with
    /// the same profile as [`Ca::issue_node`]. Returns the PEM certificate.
    /// The CSR's own subject is ignored: the caller decides the name.
    pub fn sign_node_csr(
        &self,
        csr_der: &[u8],
        node_id: &str,
        validity: Validity,
    ) -> Result<String, rcgen::Error> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(
            &rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec()),
        )?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let signed = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(signed.pem())
    }

    /// A node (client) certificate whose subject CN is `node_id`.
    pub fn issue_node(&self, node_id: &str, validity: Validity) -> Result<Leaf, rcgen::Error> {
        self.issue(
            node_id,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    /// A controller (server) certificate for the given DNS names / IP addresses.
    pub fn issue_controller(
        &self,
        names: &[&str],
        validity: Validity,
    ) -> Result<Leaf, rcgen::Error> {
        let sans = names.iter().map(|n| (*n).to_owned()).collect();
        self.issue(
            names.first().copied().unwrap_or("controller"),
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }
}

/// Writes a complete development PKI under `dir` (see the module docs).
/// The controller certificate names `localhost`, `127.0.0.1` and `::1`.
pub fn write_dev_pki(dir: &Path, node_ids: &[&str]) -> std::io::Result<()> {
    let to_io = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let ca = Ca::new("Rakkr development CA").map_err(to_io)?;
    let controller = ca
        .issue_controller(&["localhost", "127.0.0.1", "::1"], Validity::days(825))
        .map_err(to_io)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), &ca.cert_pem)?;
    let cdir = dir.join("controller");
    std::fs::create_dir_all(&cdir)?;
    std::fs::write(cdir.join("ca.pem"), &ca.cert_pem)?;
    std::fs::write(cdir.join("controller.pem"), &controller.cert_pem)?;
    write_private(&cdir.join("controller.key"), &controller.key_pem)?;
    for id in node_ids {
        let node = ca.issue_node(id, Validity::days(90)).map_err(to_io)?;
        write_node_trust(&dir.join("nodes").join(id), &ca.cert_pem, &node)?;
    }
    Ok(())
}

/// Writes an agent trust directory: `ca.pem`, `node.pem`, `node.key` (0600).
pub fn write_node_trust(dir: &Path, ca_pem: &str, node: &Leaf) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.pem"), ca_pem)?;
    std::fs::write(dir.join("node.pem"), &node.cert_pem)?;
    write_private(&dir.join("node.key"), &node.key_pem)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_loaded_from_its_files_is_the_same_ca() {
        let ca = Ca::new("fleet").unwrap();
        let again = Ca::from_pem(&ca.cert_pem, &ca.key_pem()).unwrap();
        assert_eq!(again.cert_der, ca.cert_der);
        assert_eq!(again.key_pem(), ca.key_pem());
        // (That what it issues chains to the original is proven end to end:
        // the agent verifies every chain it is given.)
        assert!(again.issue_node("n1", Validity::days(1)).is_ok());
        assert!(Ca::from_pem(&ca.cert_pem, "not a key").is_err());
    }
}
