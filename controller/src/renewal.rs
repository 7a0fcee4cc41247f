//! The reference controller's certificate authority for renewals over the
//! link, with fault injection for tests (certificates for the wrong key,
//! from the wrong CA, already expired, naming another node), and the
//! revocation list it checks at every handshake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rakkr_devpki::{Ca, Validity};

/// What the controller does wrong when asked to renew (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RenewFault {
    #[default]
    None,
    /// A valid certificate for a key the agent does not have.
    WrongKey,
    /// Signed by a CA the agent does not trust.
    WrongCa,
    /// Expired before it is sent.
    Expired,
    /// Names another node.
    OtherNode,
    /// Refuses.
    Refuse,
}

/// Signs renewal requests with `ca` for `lifetime`.
#[derive(Debug)]
pub struct Renewal {
    pub ca: Arc<Ca>,
    pub lifetime: Duration,
    fault: Mutex<RenewFault>,
}

impl Renewal {
    pub fn new(ca: Arc<Ca>, lifetime: Duration) -> Self {
        Self {
            ca,
            lifetime,
            fault: Mutex::new(RenewFault::None),
        }
    }

    pub fn set_fault(&self, fault: RenewFault) {
        *super::lock(&self.fault) = fault;
    }
}

impl super::Signer for Renewal {
    fn renew(&self, node: &str, csr_der: &[u8]) -> Result<String, String> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(
            &rustls::pki_types::CertificateSigningRequestDer::from(csr_der.to_vec()),
        )
        .map_err(|e| format!("not a valid certificate signing request: {e}"))?;
        let named = csr
            .params
            .distinguished_name
            .get(&rcgen::DnType::CommonName)
            .map(dn_text);
        if named.as_deref() != Some(node) {
            return Err(format!(
                "the request names {named:?}; this connection is certified as {node:?}"
            ));
        }
        let valid = Validity::lasting(self.lifetime);
        let fault = *super::lock(&self.fault);
        match fault {
            RenewFault::None => self.ca.sign_node_csr(csr_der, node, valid),
            RenewFault::WrongKey => self.ca.issue_node(node, valid).map(|l| l.cert_pem),
            RenewFault::WrongCa => Ca::new("Not the fleet CA")
                .and_then(|rogue| rogue.sign_node_csr(csr_der, node, valid)),
            RenewFault::Expired => self.ca.sign_node_csr(csr_der, node, Validity::expired()),
            RenewFault::OtherNode => self.ca.sign_node_csr(csr_der, "another-node", valid),
            RenewFault::Refuse => return Err("renewal refused (fault injector)".into()),
        }
        .map_err(|e| format!("signing failed: {e}"))
    }
}

fn dn_text(v: &rcgen::DnValue) -> String {
    match v {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_owned(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}
