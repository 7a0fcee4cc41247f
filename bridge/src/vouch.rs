//! Enrollment through the bridge: a node that presents its Rakkr node
//! token (what Rakkr's Ansible role gives its agent) gets its first
//! certificate only when the Rakkr controller says the token is that
//! node's; the bridge then keeps the token as the node's credential.

use rakkr_controller::{TokenCheck, TokenVerdict};

use crate::api::{RakkrApi, TokenVerdict as Api};
use crate::credentials::Credentials;

#[derive(Debug)]
pub struct Vouch {
    pub api: RakkrApi,
    pub credentials: Credentials,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl TokenCheck for Vouch {
    fn check<'a>(&'a self, node: &'a str, token: &'a str) -> TokenVerdict<'a> {
        Box::pin(async move {
            let verdict = self.check_token(node, token).await;
            crate::metrics::Metrics::ok(&self.metrics.enrollments, verdict.is_ok());
            verdict
        })
    }
}

impl Vouch {
    async fn check_token(&self, node: &str, token: &str) -> Result<(), String> {
        {
            match self.api.check_token(node, token).await {
                Api::Valid => {
                    // NOTE: kept before the certificate is issued: a token
                    // the controller vouched for is the node's either way.
                    self.credentials
                        .put(node, token)
                        .map_err(|e| format!("the bridge could not keep the token: {e:#}"))?;
                    tracing::info!(%node, "Rakkr node token vouched for by the controller");
                    Ok(())
                }
                Api::OtherNode => Err(format!(
                    "the Rakkr controller says this token is not {node}'s"
                )),
                Api::Invalid => Err(format!(
                    "the Rakkr controller does not know this token for {node} (revoked or mistyped): give the node its current token"
                )),
                Api::Unavailable(why) => Err(format!(
                    "the Rakkr controller could not check the token ({why}): the node tries again"
                )),
            }
        }
    }
}
