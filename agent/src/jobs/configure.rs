//! A controller's `Configure`: check the pushed document key by key, then
//! the whole configuration it makes with the operator's file and
//! environment; keep it in the state directory; publish the new
//! configuration whole (jobs read it from `Node::settings`); hand the
//! capture settings to the engine, which reopens the device when it may.
//!
//! Nothing changes unless every step before publishing succeeded.

use std::sync::Arc;

use rakkr_protocol::{ConfigApplied, ConfigPush, FailureCode, Reopen};

use crate::config::pushed::Pushed;
use crate::node::Node;

type Refused = (FailureCode, String);

pub async fn apply(node: &Arc<Node>, push: &ConfigPush) -> Result<ConfigApplied, Refused> {
    let invalid = |m: String| (FailureCode::InvalidArgument, m);
    let current = node.live();
    let held = current.pushed.as_ref().map_or(0, |p| p.version);
    let doc = Pushed::parse(push.version, &push.document).map_err(|e| invalid(e.to_string()))?;
    if current.pushed.is_some() && push.version < held {
        return Err(invalid(format!(
            "configuration version {} is older than the one in force ({held}); nothing changed",
            push.version
        )));
    }
    if current.pushed.is_some() && push.version == held {
        return if current.pushed.as_ref() == Some(&doc) {
            Ok(ConfigApplied {
                version: held,
                changed: vec![],
                overridden: overridden(&current, &doc),
                reopen: Reopen::NotNeeded,
            })
        } else {
            Err(invalid(format!(
                "configuration version {held} is in force with other settings: push a higher version; nothing changed"
            )))
        };
    }
    let next = current.with_pushed(Some(&doc)).map_err(|e| {
        invalid(format!(
            "with the operator's settings the document is not valid: {e}; nothing changed"
        ))
    })?;
    let state = current.state_dir.clone();
    let keep = doc.clone();
    tokio::task::spawn_blocking(move || crate::config::pushed::save(&state, &keep))
        .await
        .map_err(|e| (FailureCode::Internal, e.to_string()))?
        .map_err(|e| (FailureCode::Internal, format!("{e:#}; nothing changed")))?;
    let changed = changed(&current, &next);
    let overridden = overridden(&next, &doc);
    let next = Arc::new(next);
    node.settings.send_replace(next.clone());
    let reopen = match node.recorder.get() {
        Some(rec) => rec
            .reconfigure(crate::engine::reconfigure::Reconfigure {
                capture: next.capture.clone(),
                disk: next.disk.clone(),
                force: push.force,
            })
            .await
            .map_err(|r| (r.code, r.message))?,
        None => Reopen::NotNeeded,
    };
    tracing::info!(
        version = push.version,
        ?changed,
        ?overridden,
        ?reopen,
        "pushed configuration in force"
    );
    Ok(ConfigApplied {
        version: push.version,
        changed,
        overridden,
        reopen,
    })
}

/// Keys whose effective value differs.
fn changed(a: &crate::config::Config, b: &crate::config::Config) -> Vec<String> {
    a.settings()
        .into_iter()
        .zip(b.settings())
        .filter(|(x, y)| x.value != y.value)
        .map(|(x, _)| x.key)
        .collect()
}

/// Keys the document sets that the file or environment sets too.
fn overridden(c: &crate::config::Config, doc: &Pushed) -> Vec<String> {
    use crate::config::origins::Origin;
    doc.keys()
        .into_iter()
        .filter(|k| matches!(c.origins.get(k), Some(Origin::Env { .. } | Origin::File)))
        .collect()
}
