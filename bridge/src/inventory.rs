//! A node's inventory toward the controller: posted when the node links
//! (from its Hello) and again whenever it changes. The agent has no event
//! for that, so the bridge asks (`Inventory`) when the node reports its
//! device lost or back or a console event (its names are the channel
//! aliases, and so the meters' labels), and every [`EVERY_TICKS`] ticks,
//! and posts the interfaces only when they differ from what the
//! controller last took.

use std::time::Duration;

use rakkr_protocol::{CommandBody, Outcome, Reply};
use serde_json::{Value, json};

/// Ticks between inventory checks without a device event (a minute at
/// Rakkr's 5 s tick).
pub const EVERY_TICKS: u32 = 12;

#[derive(Debug)]
pub struct Inventory {
    /// The node's whole inventory (heartbeat facts, channel labels).
    pub current: Value,
    /// What the controller last accepted (`None`: not yet).
    posted: Option<Value>,
    ticks: u32,
}

impl Inventory {
    pub fn new(hello: Value) -> Self {
        Self {
            current: hello,
            posted: None,
            ticks: 0,
        }
    }

    /// Asks the node when `due` (a device event) or the period is up,
    /// and posts what changed (or was never taken).
    pub async fn tick(
        &mut self,
        api: &crate::api::RakkrApi,
        handle: &rakkr_controller::ControllerHandle,
        node: &str,
        token: &str,
        due: bool,
    ) {
        self.ticks += 1;
        if due || self.ticks >= EVERY_TICKS {
            self.ticks = 0;
            match handle
                .command(node, CommandBody::Inventory, Duration::from_secs(10))
                .await
            {
                Ok(r) => match r.outcome {
                    Outcome::Done(Reply::Inventory { json }) => {
                        if let Ok(v) = serde_json::from_str::<Value>(&json) {
                            self.current = v;
                        }
                    }
                    other => tracing::debug!(%node, outcome = ?other, "no inventory from the node"),
                },
                Err(e) => tracing::debug!(%node, error = %e, "no inventory from the node"),
            }
        }
        let interfaces = json!({ "interfaces": self.current["interfaces"] });
        if self.posted.as_ref() == Some(&interfaces) {
            return;
        }
        let path = api.node_path(node, "inventory");
        match api
            .call("POST", &path, token, Some(interfaces.clone()))
            .await
        {
            Ok((202, _)) => {
                tracing::info!(%node, "inventory forwarded");
                self.posted = Some(interfaces);
            }
            other => {
                tracing::warn!(%node, answer = ?other, "inventory not accepted; again next tick")
            }
        }
    }
}
