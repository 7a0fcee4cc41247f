//! A node's new key and its certificate signing request: made on the node
//! (the key never leaves it), for enrollment (`enroll`) and for renewal
//! (`renew`) alike.

use anyhow::Context;

/// A new key and a CSR for `node_id` (DER); the key as PEM.
pub fn key_and_csr(node_id: &str) -> anyhow::Result<(Vec<u8>, String)> {
    let key = rcgen::KeyPair::generate().context("generating a key")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, node_id);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .context("making the certificate signing request")?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}
