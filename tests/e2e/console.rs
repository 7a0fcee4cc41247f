//! The console over the network (issue 23): the real agent against the
//! in-repository fake console (`rakkr_e2e::fakeconsole`, X32 and WING
//! dialects): identity and names in `--print-inventory` and `console`,
//! takes named after the console and a rename mid-take at its position,
//! a console off, swapped, upgraded, and garbage and spoofed datagrams
//! never touching the capture.

use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::time::Duration;

use rakkr_e2e::agent::run_agent;
use rakkr_e2e::fakeconsole::{Desk, FakeConsole};
use rakkr_protocol::{CommandBody, ConsoleEvent, EventBody, Outcome, Reply};

use crate::T;
use crate::takes::{
    NODE, assert_take_reaches, audio_taken, drops, logged, recording_node, run, start, started,
    stopped, wait_logged,
};

fn names(pairs: &[(u16, &str)]) -> BTreeMap<u16, String> {
    pairs.iter().map(|(c, n)| (*c, (*n).to_owned())).collect()
}

fn env_for(state: &std::path::Path, console: &[(&str, String)]) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("RAKKR_STATE_DIR".into(), state.display().to_string());
    env.extend(console.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    env
}

fn json_out(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn print_inventory_and_console_say_which_console_and_its_channel_names() {
    let state = tempfile::tempdir().unwrap();
    // An X32 whose card sends local inputs 17-24 on card channels 1-8.
    let x32 = FakeConsole::start(Desk {
        names: names(&[(1, "Kick"), (9, ""), (17, "Pastor"), (18, "Choir L")]),
        x32_card: [2, 1, 2, 20],
        ..Desk::x32("X32", "FOH", "4.06")
    });
    let env = env_for(
        state.path(),
        &[
            ("RAKKR_CONSOLE_ADDRESS", x32.addr().to_string()),
            ("RAKKR_CONSOLE_MODEL", "x32".into()),
        ],
    );
    let out = run_agent(&["--print-inventory"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = &json_out(&out)["console"];
    assert_eq!(c["state"], "found", "{c}");
    assert_eq!(
        (&c["model"], &c["name"], &c["firmware"], &c["family"]),
        (&"X32".into(), &"FOH".into(), &"4.06".into(), &"x32".into())
    );
    assert_eq!(c["address"], x32.addr().to_string());
    let ch = |n: usize| &c["channels"][n - 1];
    assert_eq!(ch(1)["consoleChannel"], 17, "{c}");
    assert_eq!(ch(1)["name"], "Pastor");
    assert_eq!(ch(1)["routing"], "read");
    assert_eq!(ch(2)["name"], "Choir L");
    assert_eq!(ch(9)["consoleChannel"], 9);
    assert!(ch(9)["name"].is_null(), "an empty console name is no name");
    // CARD/25-32 carries OUT1-8: no input channel, no name.
    assert!(ch(25)["consoleChannel"].is_null(), "{c}");
    let out = run_agent(&["console", "--json"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = json_out(&out);
    assert_eq!(c["seenBy"], "asked directly (no agent running)");
    assert_eq!(c["channels"][0]["name"], "Pastor");

    // A WING: its serial, names by its USB routing (USB 1 = channel 3).
    let wing = FakeConsole::start(Desk {
        names: names(&[(3, "Choir L"), (40, "Ambience")]),
        wing_usb: [(1, ("CH".to_owned(), 3)), (2, ("OFF".to_owned(), 1))].into(),
        ..Desk::wing("MON", "S-WING-1", "3.0.5")
    });
    let env = env_for(
        state.path(),
        &[
            ("RAKKR_CONSOLE_ADDRESS", wing.addr().to_string()),
            ("RAKKR_CONSOLE_MODEL", "wing".into()),
        ],
    );
    let out = run_agent(&["--print-inventory"], &env);
    let c = &json_out(&out)["console"];
    assert_eq!(c["state"], "found", "{c}");
    assert_eq!(
        (&c["family"], &c["serial"]),
        (&"wing".into(), &"S-WING-1".into())
    );
    assert_eq!(c["channels"][0]["name"], "Choir L", "{c}");
    assert!(c["channels"][1]["consoleChannel"].is_null());
    assert_eq!(c["channels"][39]["name"], "Ambience");

    // Discovery: `WING?` broadcast (here to loopback), answered on the
    // WING's discovery port; the console is then spoken to on 2223.
    let found = FakeConsole::start_at(
        Desk::wing("FOH-WING", "S-WING-2", "3.1"),
        "127.0.0.1:2222".parse().unwrap(),
    );
    let env = env_for(
        state.path(),
        &[
            ("RAKKR_CONSOLE_DISCOVERY", "true".into()),
            ("RAKKR_CONSOLE_DISCOVERY_ADDRESS", "127.0.0.1".into()),
        ],
    );
    let out = run_agent(&["--print-inventory"], &env);
    let c = &json_out(&out)["console"];
    assert_eq!(
        (&c["state"], &c["name"]),
        (&"found".into(), &"FOH-WING".into()),
        "{c}"
    );
    assert_eq!(c["address"], "127.0.0.1:2223");
    assert!(found.queries() >= 1);
    drop(found);

    // Nothing answers: the inventory says so (and still prints); `console`
    // exits 28. None configured: `console` exits 3.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let env = env_for(
        state.path(),
        &[(
            "RAKKR_CONSOLE_ADDRESS",
            silent.local_addr().unwrap().to_string(),
        )],
    );
    let out = run_agent(&["--print-inventory"], &env);
    assert!(out.status.success());
    let c = &json_out(&out)["console"];
    assert_eq!(c["state"], "searching", "{c}");
    assert!(
        c["problem"].as_str().unwrap().contains("no answer yet"),
        "{c}"
    );
    let out = run_agent(&["console"], &env);
    assert_eq!(
        out.status.code(),
        Some(28),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_agent(&["console"], &env_for(state.path(), &[]));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RAKKR_CONSOLE_ADDRESS"));
}

/// The running agent's view of the console (its `console --json`).
fn view(env: &HashMap<String, String>) -> serde_json::Value {
    json_out(&run_agent(&["console", "--json"], env))
}

/// Polls the running agent's view until `ok` holds (100 ms apart, up to
/// 200 times).
fn wait_view(env: &HashMap<String, String>, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = view(env);
        if ok(&last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the agent's console view never showed {what}: {last}");
}

fn console_events(h: &rakkr_controller::ControllerHandle) -> Vec<ConsoleEvent> {
    logged(h)
        .into_iter()
        .filter_map(|b| match b {
            EventBody::Console(c) => Some(*c),
            _ => None,
        })
        .collect()
}

async fn take_frames(h: &rakkr_controller::ControllerHandle) -> u64 {
    match run(h, CommandBody::TakeStatus).await {
        Outcome::Done(Reply::TakeStatus { take: Some(t), .. }) => t.frames,
        other => panic!("no take running: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_is_named_after_the_console_and_a_rename_mid_take_is_kept_at_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let x32 = FakeConsole::start(Desk {
        names: names(&[(1, "Kick"), (2, "Snare"), (17, "Pastor")]),
        ..Desk::x32("X32", "FOH", "4.06")
    });
    let rig = recording_node(
        tmp.path(),
        &[
            ("RAKKR_CONSOLE_ADDRESS", &x32.addr().to_string()),
            ("RAKKR_CONSOLE_MODEL", "x32"),
        ],
    )
    .await;
    let h = rig.ctl.handle();
    let log = || rig.agent.log().join("\n");
    let found = wait_logged(&h, T, log, |l| {
        l.iter().find_map(|b| match b {
            EventBody::Console(c) => match &**c {
                ConsoleEvent::Found { console } => Some(console.clone()),
                _ => None,
            },
            _ => None,
        })
    })
    .await;
    assert_eq!((found.model.as_str(), found.name.as_str()), ("X32", "FOH"));
    wait_view(&rig.env, "the names", |v| {
        v["channels"][16]["name"] == "Pastor"
    });
    // The inventory: the console, and the captured interface's channels
    // by console name (what the controller labels meters with).
    let Outcome::Done(Reply::Inventory { json }) = run(&h, CommandBody::Inventory).await else {
        panic!("no inventory");
    };
    let inv: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(inv["console"]["model"], "X32");
    let selected = inv["selectedDevice"]["interfaceId"].clone();
    let iface = (inv["interfaces"].as_array().unwrap().iter())
        .find(|i| i["id"] == selected)
        .unwrap_or_else(|| panic!("the captured interface is listed: {inv}"));
    assert_eq!(iface["channels"][0]["alias"], "Kick");
    assert_eq!(iface["channels"][16]["alias"], "Pastor");
    assert_eq!(iface["channels"][2]["alias"], "Input 3");

    let take = started(&h, start("show")).await;
    audio_taken(&h, 10).await;
    let before = take_frames(&h).await;
    x32.rename(2, "Snare Top");
    let (at, takes) = wait_logged(&h, T, log, |l| {
        l.iter().find_map(|b| match b {
            EventBody::Console(c) => match &**c {
                ConsoleEvent::Renamed {
                    console_channel: 2,
                    device_channels,
                    from,
                    to,
                    takes,
                } => {
                    assert_eq!((from.as_str(), to.as_str()), ("Snare", "Snare Top"));
                    assert_eq!(device_channels, &[2]);
                    Some((takes[0].at_sample, takes.clone()))
                }
                _ => None,
            },
            _ => None,
        })
    })
    .await;
    let after = take_frames(&h).await;
    assert_eq!(takes.len(), 1);
    assert_eq!(takes[0].take_id, "show");
    // Where it happened: after the last position read before the rename,
    // before the first read after its event (plus what waited in the ring).
    assert!(
        before <= at && at <= after + 48_000,
        "{before} <= {at} <= {after}"
    );
    audio_taken(&h, 5).await;
    let sent_at = rig.feeder.as_ref().unwrap().fed();
    let m = stopped(&h, "show").await;
    let files: Vec<&str> = (m["files"].as_array().unwrap().iter())
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    // Named at the start: the rename does not rename files mid-take.
    for want in [
        "01-Kick-s001.flac",
        "02-Snare-s001.flac",
        "03-Input_3-s001.flac",
        "17-Pastor-s001.flac",
    ] {
        assert!(files.contains(&want), "{want} in {files:?}");
    }
    assert_eq!(m["console"]["model"], "X32");
    assert_eq!(m["console"]["channels"][16]["consoleChannel"], 17);
    assert_eq!(m["console"]["channels"][16]["name"], "Pastor");
    let r = &m["renames"][0];
    assert_eq!(
        (r["channel"].as_u64(), r["consoleChannel"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str()),
        (Some("Snare"), Some("Snare Top"))
    );
    assert_eq!(r["atSample"].as_u64(), Some(at));
    assert!(at < m["frames"].as_u64().unwrap());
    // The file's own metadata names the console channel.
    let dir = std::path::Path::new(&take.dir);
    let tags = rakkr_e2e::tags::of(&dir.join("17-Pastor-s001.flac"));
    assert_eq!(
        tags.get("title").map(String::as_str),
        Some("Pastor"),
        "{tags:?}"
    );
    let comment = tags.get("comment").cloned().unwrap_or_default();
    assert!(comment.contains("X32 \"FOH\" ch 17 \"Pastor\""), "{tags:?}");
    // And the audio is the console's, bit-exact, to the stop.
    assert_take_reaches(dir, &m, &drops(&rig.feeder), sent_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_off_swapped_upgraded_or_spoofed_changes_names_never_the_capture() {
    let tmp = tempfile::tempdir().unwrap();
    let x32 = FakeConsole::start(Desk {
        names: names(&[(1, "Kick")]),
        ..Desk::x32("X32", "FOH", "4.06")
    });
    let rig = recording_node(
        tmp.path(),
        &[
            ("RAKKR_CONSOLE_ADDRESS", &x32.addr().to_string()),
            ("RAKKR_CONSOLE_MODEL", "x32"),
            ("RAKKR_CONSOLE_LOST_AFTER_SECONDS", "3"),
        ],
    )
    .await;
    let h = rig.ctl.handle();
    let log = || rig.agent.log().join("\n");
    wait_view(&rig.env, "the names", |v| {
        v["channels"][0]["name"] == "Kick"
    });
    let take = started(&h, start("gig")).await;
    audio_taken(&h, 5).await;

    // Garbage from the console's address, and a rename and another
    // identity from elsewhere on the host: dropped, counted, not believed.
    let malformed = x32.send_garbage() as u64;
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = x32.client().expect("the agent asked");
    let osc = |addr: &str, args: Vec<rosc::OscType>| {
        rosc::encoder::encode(&rosc::OscPacket::Message(rosc::OscMessage {
            addr: addr.into(),
            args,
        }))
        .unwrap()
    };
    let s = |v: &str| rosc::OscType::String(v.into());
    spoofer
        .send_to(&osc("/ch/01/config/name", vec![s("Spoofed")]), to)
        .unwrap();
    spoofer
        .send_to(
            &osc("/xinfo", vec![s("127.0.0.1"), s("EVIL"), s("M32"), s("9")]),
            to,
        )
        .unwrap();
    // The malformed ones and both spoofed ones are dropped and counted
    // (the well-formed name of a channel that does not exist is ignored).
    wait_view(&rig.env, "the dropped datagrams", |v| {
        v["dropped"].as_u64().unwrap_or(0) >= malformed + 2
    });
    let v = view(&rig.env);
    assert_eq!(v["channels"][0]["name"], "Kick", "{v}");
    assert_eq!(v["model"], "X32");

    // Off: lost (the take records on); on again: back; another console
    // at its address: swapped, its names read afresh, no renames; then a
    // firmware update.
    x32.change(|d| d.off = true);
    wait_logged(&h, T, log, |l| {
        l.iter()
            .any(|b| matches!(b, EventBody::Console(c) if matches!(**c, ConsoleEvent::Lost { .. })))
            .then_some(())
    })
    .await;
    x32.change(|d| d.off = false);
    wait_logged(&h, T, log, |l| {
        l.iter()
            .any(|b| matches!(b, EventBody::Console(c) if matches!(**c, ConsoleEvent::Back { .. })))
            .then_some(())
    })
    .await;
    x32.change(|d| {
        d.model = "M32".into();
        d.name = "MON".into();
        d.names = names(&[(1, "Vox")]);
    });
    let (from, to) = wait_logged(&h, T, log, |l| {
        l.iter().find_map(|b| match b {
            EventBody::Console(c) => match &**c {
                ConsoleEvent::Swapped { from, to } => Some((from.clone(), to.clone())),
                _ => None,
            },
            _ => None,
        })
    })
    .await;
    assert_eq!((from.model.as_str(), to.model.as_str()), ("X32", "M32"));
    wait_view(&rig.env, "the new console's names", |v| {
        v["channels"][0]["name"] == "Vox"
    });
    x32.change(|d| d.firmware = "4.13".into());
    let was = wait_logged(&h, T, log, |l| {
        l.iter().find_map(|b| match b {
            EventBody::Console(c) => match &**c {
                ConsoleEvent::FirmwareChanged { from, console } => {
                    assert_eq!(console.firmware, "4.13");
                    Some(from.clone())
                }
                _ => None,
            },
            _ => None,
        })
    })
    .await;
    assert_eq!(was, "4.06");
    let events = console_events(&h);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ConsoleEvent::Renamed { .. })),
        "a swap or a spoof is no rename: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ConsoleEvent::Swapped { to, .. } if to.name == "EVIL")),
        "{events:?}"
    );

    // Through all of it the capture went on: bit-exact to the stop.
    let sent_at = rig.feeder.as_ref().unwrap().fed();
    let m = stopped(&h, "gig").await;
    assert_eq!(m["status"], "complete");
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    assert_take_reaches(
        std::path::Path::new(&take.dir),
        &m,
        &drops(&rig.feeder),
        sent_at,
    );
    let _ = NODE;
}
