//! The happy path: handshake, inventory, heartbeats, clean stop; and a
//! silent controller declared dead.

use std::time::Duration;

use rakkr_controller::ControllerEvent;
use rakkr_e2e::wait_for;
use rakkr_protocol::EventBody;

use crate::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_connects_reports_inventory_heartbeats_and_stops_cleanly_on_sigterm() {
    let rakkr_e2e::Connected {
        ctl,
        handle: h,
        events: mut rx,
        mut agent,
        hello,
        pki: _pki,
        state: _state,
        ..
    } = rakkr_e2e::connected_agent("node-hs-1", |c| c.heartbeat = Duration::from_millis(200)).await;
    assert_eq!(
        hello.node_id, "node-hs-1",
        "node id comes from the certificate"
    );
    let inv: serde_json::Value = serde_json::from_str(&hello.inventory_json).unwrap();
    assert_eq!(inv["id"], "node-hs-1");
    assert_eq!(inv["status"], "online");
    assert_eq!(inv["trust"]["status"], "ok");
    rakkr_e2e::shape::validate_node_inventory(&inv).unwrap();

    // The process start is the first event of a fresh stream.
    let first = wait_for(&mut rx, T, "AgentStarted event", |e| match e {
        ControllerEvent::Event { event, .. } => Some(event.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first.seq, 0);
    assert!(matches!(first.body, EventBody::AgentStarted { .. }));

    // Heartbeats flow from the agent at the controller's interval.
    for _ in 0..3 {
        wait_for(&mut rx, Duration::from_secs(5), "agent heartbeat", |e| {
            matches!(e, ControllerEvent::Heartbeat { node } if node == "node-hs-1").then_some(())
        })
        .await;
    }
    assert!(h.node("node-hs-1").unwrap().heartbeats >= 3);

    let status = agent
        .terminate(Duration::from_secs(5))
        .expect("agent exits within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    let stopping = wait_for(&mut rx, T, "AgentStopping event", |e| match e {
        ControllerEvent::Event { event, .. } => {
            matches!(event.body, EventBody::AgentStopping { .. }).then_some(())
        }
        _ => None,
    })
    .await;
    let () = stopping;
    wait_for(&mut rx, T, "Disconnected", |e| {
        matches!(e, ControllerEvent::Disconnected { .. }).then_some(())
    })
    .await;
    assert!(agent.count(&["connected to controller"]) == 1);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_controller_is_declared_dead_and_the_agent_reconnects() {
    // Heartbeats every 200 ms, so a silent peer is dead after 600 ms.
    let rakkr_e2e::Connected {
        ctl,
        handle: h,
        events: mut rx,
        agent,
        pki: _pki,
        state: _state,
        ..
    } = rakkr_e2e::connected_agent("node-dead", |c| c.heartbeat = Duration::from_millis(200)).await;
    // Half a frame: the agent's decoder waits for the rest; nothing else
    // the controller sends can be read as a message any more, so the agent
    // sees silence and must declare the controller dead (3 × 200 ms).
    h.inject_raw("node-dead", vec![0, 0, 0, 200, 1])
        .await
        .unwrap();
    agent.wait_log(&["declared dead"], 1, T);
    wait_for(&mut rx, T, "reconnect", |e| {
        matches!(e, ControllerEvent::Connected { .. }).then_some(())
    })
    .await;
    ctl.shutdown().await;
}
