//! Malformed, truncated and oversize frames from the controller: the agent
//! closes that connection, logs why, survives and reconnects.

use rakkr_controller::ControllerEvent;
use rakkr_e2e::wait_for;

use crate::T;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_and_the_agent_reconnects() {
    let rakkr_e2e::Connected {
        ctl,
        handle: h,
        events: mut rx,
        mut agent,
        pki: _pki,
        state: _state,
        ..
    } = rakkr_e2e::connected_agent("node-fr", |_| {}).await;
    let connected =
        |e: &ControllerEvent| matches!(e, ControllerEvent::Connected { .. }).then_some(());

    let cases: [(&str, Vec<u8>, bool); 4] = [
        // length 3, body is not a ControllerMsg (variant 0xff)
        (
            "malformed frame body",
            vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
            false,
        ),
        (
            "frame too long: 4294967295 > 1048576",
            vec![0xff, 0xff, 0xff, 0xff],
            false,
        ),
        ("trailing bytes", vec![0, 0, 0, 2, 2, 7], false),
        // 100 bytes announced, 3 sent, then the controller closes the stream
        ("truncated frame", vec![0, 0, 0, 100, 1, 2, 3], true),
    ];
    for (i, (needle, bytes, then_close)) in cases.into_iter().enumerate() {
        h.inject_raw("node-fr", bytes).await.unwrap();
        if then_close {
            h.disconnect("node-fr").await.unwrap();
        }
        agent.wait_log(&["controller link down", needle], 1, T);
        wait_for(&mut rx, T, "reconnect", connected).await;
        assert!(agent.is_running(), "agent died on case {i} ({needle})");
    }
    let protocol_errors = agent.count(&["protocol violation by the peer"]);
    assert!(
        protocol_errors >= 4,
        "each bad frame is named a protocol violation ({protocol_errors})"
    );
    assert!(
        agent
            .terminate(std::time::Duration::from_secs(5))
            .unwrap()
            .success()
    );
    ctl.shutdown().await;
}
