//! A command id is acted on once, even when delivered again and across a
//! reconnect.

use std::time::Duration;

use rakkr_controller::ControllerEvent;
use rakkr_e2e::wait_for;
use rakkr_protocol::{CommandBody, EventBody, FailureCode, Outcome, Reply};

use crate::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_command_id_acts_once_also_across_a_reconnect() {
    let store = tempfile::tempdir().unwrap();
    let store_dir = store.path().to_owned();
    let rakkr_e2e::Connected {
        ctl,
        handle: h,
        events: mut rx,
        pki: _pki,
        state: _state,
        agent: _agent,
        ..
    } = rakkr_e2e::connected_agent("node-cmd", |c| c.store = Some(store_dir)).await;

    let body = CommandBody::Annotate {
        text: "only once".into(),
    };
    let first = h
        .command_with_id("node-cmd", "cmd-dup-1", body.clone(), T)
        .await
        .unwrap();
    let Outcome::Done(Reply::Annotated { seq }) = first.outcome else {
        panic!("{first:?}")
    };
    let again = h
        .command_with_id("node-cmd", "cmd-dup-1", body.clone(), T)
        .await
        .unwrap();
    assert_eq!(again, first);

    h.disconnect("node-cmd").await.unwrap();
    wait_for(&mut rx, T, "reconnect", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    let after = h
        .command_with_id("node-cmd", "cmd-dup-1", body, T)
        .await
        .unwrap();
    assert_eq!(after, first);

    // A fresh id does act; then the log must hold exactly one "only once".
    let other = h
        .command(
            "node-cmd",
            CommandBody::Annotate {
                text: "marker".into(),
            },
            T,
        )
        .await
        .unwrap();
    let Outcome::Done(Reply::Annotated { seq: marker }) = other.outcome else {
        panic!("{other:?}")
    };
    assert!(marker > seq);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let log = h.event_log("node-cmd").unwrap();
        if log.iter().any(|e| e.event.seq == marker) {
            let once = log
                .iter()
                .filter(|e| matches!(&e.event.body, EventBody::Annotated { text, .. } if text == "only once"))
                .count();
            assert_eq!(once, 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "marker event never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_command_and_invalid_arguments() {
    let rakkr_e2e::Connected {
        ctl,
        handle: h,
        pki: _pki,
        state: _state,
        agent: _agent,
        ..
    } = rakkr_e2e::connected_agent("node-inv", |_| {}).await;
    let r = h
        .command("node-inv", CommandBody::Inventory, T)
        .await
        .unwrap();
    let Outcome::Done(Reply::Inventory { json }) = r.outcome else {
        panic!("{r:?}")
    };
    let inv: serde_json::Value = serde_json::from_str(&json).unwrap();
    rakkr_e2e::shape::validate_node_inventory(&inv).unwrap();
    assert_eq!(inv["id"], "node-inv");
    let r = h
        .command("node-inv", CommandBody::Annotate { text: "  ".into() }, T)
        .await
        .unwrap();
    assert!(
        matches!(r.outcome, Outcome::Failed(ref f) if f.code == FailureCode::InvalidArgument),
        "{r:?}"
    );
    ctl.shutdown().await;
}
