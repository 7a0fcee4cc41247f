//! Checks a candidate identity completely before anything switches to it:
//! the key matches the certificate, the certificate chains to the CA
//! bundle (as the controller will check it: webpki, client-auth usage),
//! it is valid now, and it names this node. Used by `trust install` and,
//! later, by renewal. Nothing here writes.

use std::sync::Arc;

use rakkr_protocol::tls::{self, Identity};
use rustls::pki_types::UnixTime;

/// Why a candidate identity was refused. Each has its own exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("{what} cannot be used: {detail}")]
    Unreadable { what: String, detail: String },
    #[error(
        "the private key does not match the certificate (the certificate was issued for another key)"
    )]
    KeyMismatch,
    #[error("the certificate does not chain to the CA bundle: {0}")]
    NotFromCa(String),
    #[error("the certificate is not valid now: {0}")]
    NotValidNow(String),
    #[error("the certificate names node {found:?}, but this node is {expected:?}")]
    WrongNode { expected: String, found: String },
}

impl Refusal {
    /// Exit codes of `trust install` (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Refusal::Unreadable { .. } => 20,
            Refusal::KeyMismatch => 21,
            Refusal::NotFromCa(_) => 22,
            Refusal::NotValidNow(_) => 23,
            Refusal::WrongNode { .. } => 24,
        }
    }
}

/// A checked identity, ready to be installed and published.
#[derive(Debug)]
pub struct Checked {
    pub node_id: String,
    pub not_after_unix: i64,
}

/// Checks PEM inputs. `expected_node`: the node id the certificate must
/// name (the configured id, or the one in the certificate being replaced).
pub fn check(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    expected_node: Option<&str>,
    now: UnixTime,
) -> Result<Checked, Refusal> {
    let unreadable = |what: &str, e: &dyn std::fmt::Display| Refusal::Unreadable {
        what: what.into(),
        detail: e.to_string(),
    };
    let cas =
        tls::certs_from_pem(ca_pem, "the CA bundle").map_err(|e| unreadable("CA bundle", &e))?;
    let identity = Identity::from_pem(cert_pem, key_pem, "the certificate and key")
        .map_err(|e| unreadable("certificate or key", &e))?;
    let provider = tls::provider();
    let signing_key = provider
        .key_provider
        .load_private_key(identity.key.clone_key())
        .map_err(|e| unreadable("private key", &e))?;
    let certified = rustls::sign::CertifiedKey::new(identity.chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(Refusal::KeyMismatch),
        Err(e) => return Err(unreadable("certificate or key", &e)),
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in &cas {
        roots
            .add(ca.clone())
            .map_err(|e| unreadable("CA bundle", &e))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| unreadable("CA bundle", &e))?;
    let (leaf, intermediates) = identity
        .chain
        .split_first()
        .ok_or_else(|| unreadable("certificate", &"the chain is empty"))?;
    if let Err(e) = verifier.verify_client_cert(leaf, intermediates, now) {
        return Err(classify(e));
    }
    let node_id = tls::common_name(leaf).map_err(|e| unreadable("certificate", &e))?;
    if let Some(expected) = expected_node
        && expected != node_id
    {
        return Err(Refusal::WrongNode {
            expected: expected.into(),
            found: node_id,
        });
    }
    let not_after_unix = super::cert_info(leaf)
        .map_err(|e| unreadable("certificate", &e))?
        .not_after_unix;
    Ok(Checked {
        node_id,
        not_after_unix,
    })
}

fn classify(e: rustls::Error) -> Refusal {
    use rustls::CertificateError as C;
    match &e {
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => Refusal::NotValidNow(e.to_string()),
        _ => Refusal::NotFromCa(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rakkr_devpki::{Ca, Validity};

    fn check_pems(ca: &Ca, cert: &str, key: &str, node: Option<&str>) -> Result<Checked, Refusal> {
        check(
            ca.cert_pem.as_bytes(),
            cert.as_bytes(),
            key.as_bytes(),
            node,
            UnixTime::now(),
        )
    }

    #[test]
    fn a_good_identity_passes_and_names_its_node() {
        let ca = Ca::new("Fleet CA").unwrap();
        let leaf = ca.issue_node("node-a", Validity::days(30)).unwrap();
        let ok = check_pems(&ca, &leaf.cert_pem, &leaf.key_pem, Some("node-a")).unwrap();
        assert_eq!(ok.node_id, "node-a");
        assert!(ok.not_after_unix > time::OffsetDateTime::now_utc().unix_timestamp());
    }

    #[test]
    fn each_refusal_has_its_own_kind_and_exit_code() {
        let ca = Ca::new("Fleet CA").unwrap();
        let other_ca = Ca::new("Somebody else").unwrap();
        let a = ca.issue_node("node-a", Validity::days(30)).unwrap();
        let b = ca.issue_node("node-a", Validity::days(30)).unwrap();
        let foreign = other_ca.issue_node("node-a", Validity::days(30)).unwrap();
        let expired = ca.issue_node("node-a", Validity::expired()).unwrap();
        let named_b = ca.issue_node("node-b", Validity::days(30)).unwrap();
        let cases: [(Result<Checked, Refusal>, u8); 5] = [
            (check_pems(&ca, "not pem", &a.key_pem, None), 20),
            (check_pems(&ca, &a.cert_pem, &b.key_pem, None), 21),
            (
                check_pems(&ca, &foreign.cert_pem, &foreign.key_pem, None),
                22,
            ),
            (
                check_pems(&ca, &expired.cert_pem, &expired.key_pem, None),
                23,
            ),
            (
                check_pems(&ca, &named_b.cert_pem, &named_b.key_pem, Some("node-a")),
                24,
            ),
        ];
        let mut codes = Vec::new();
        for (result, code) in cases {
            let refusal = result.expect_err("must be refused");
            assert_eq!(refusal.exit_code(), code, "{refusal}");
            codes.push(code);
        }
        codes.dedup();
        assert_eq!(codes.len(), 5);
    }
}
