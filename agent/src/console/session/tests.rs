use std::net::SocketAddr;

use rakkr_console::osc::{Arg, encode};
use rakkr_console::presence::Edge;

use super::{Effect, Session};
use crate::config::ConsoleConfig;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn xinfo(name: &str, model: &str, fw: &str) -> Vec<u8> {
    let s = |v: &str| Arg::Str(v.into());
    encode("/xinfo", &[s("10.0.0.5"), s(name), s(model), s(fw)])
}

fn name(ch: u16, n: &str) -> Vec<u8> {
    encode(&format!("/ch/{ch:02}/config/name"), &[Arg::Str(n.into())])
}

fn session() -> Session {
    let cfg = ConsoleConfig {
        address: Some(("10.0.0.5".into(), Some(10023))),
        ..ConsoleConfig::default()
    };
    let mut s = Session::new(cfg.clone(), |_| None);
    s.set_targets(super::targets::for_address(
        &cfg,
        &["10.0.0.5".parse().unwrap()],
    ));
    s
}

#[test]
fn only_the_configured_address_is_believed() {
    let mut s = session();
    let console = addr("10.0.0.5:10023");
    // The same answer from another host, or another port: dropped.
    assert!(
        s.heard(&xinfo("FOH", "X32", "4.06"), addr("10.0.0.9:10023"), 0)
            .is_empty()
    );
    assert!(
        s.heard(&xinfo("FOH", "X32", "4.06"), addr("10.0.0.5:10024"), 0)
            .is_empty()
    );
    assert_eq!(s.view().dropped, 2);
    assert_eq!(s.view().state, "searching");
    let e = s.heard(&xinfo("FOH", "X32", "4.06"), console, 10);
    assert!(
        matches!(e[..], [Effect::Edge(ref e), Effect::Refresh] if matches!(**e, Edge::Found(_)))
    );
    // Garbage from the console itself: dropped too, nothing believed.
    assert!(
        s.heard(b"/ch/01/config/name\0\0,s\0\0\xff", console, 20)
            .is_empty()
    );
    assert_eq!(s.view().dropped, 3);
    assert_eq!(s.view().state, "found");
}

#[test]
fn a_second_name_is_a_rename_on_the_card_channels_that_carry_it() {
    let mut s = session();
    let console = addr("10.0.0.5:10023");
    s.heard(&xinfo("FOH", "X32", "4.06"), console, 0);
    assert!(s.heard(&name(17, "Input 17"), console, 1).is_empty());
    let e = s.heard(&name(17, "Pastor"), console, 2);
    assert_eq!(
        e,
        [Effect::Renamed {
            channel: 17,
            from: "Input 17".into(),
            to: "Pastor".into(),
            device_channels: vec![17],
        }]
    );
    assert_eq!(s.view().name_of(17), Some("Pastor"));
    // A rename heard from a spoofing host is not believed.
    assert!(
        s.heard(&name(17, "Spoof"), addr("10.0.0.6:10023"), 3)
            .is_empty()
    );
    assert_eq!(s.view().name_of(17), Some("Pastor"));
}

#[test]
fn a_swapped_console_forgets_the_old_names_without_renames() {
    let mut s = session();
    let console = addr("10.0.0.5:10023");
    s.heard(&xinfo("FOH", "X32", "4.06"), console, 0);
    s.heard(&name(1, "Kick"), console, 1);
    let e = s.heard(&xinfo("MON", "M32", "4.06"), console, 2);
    assert!(
        matches!(e[..], [Effect::Edge(ref e), Effect::Refresh] if matches!(**e, Edge::Swapped { .. }))
    );
    assert_eq!(s.view().name_of(1), None);
    assert!(
        s.heard(&name(1, "Vox"), console, 3).is_empty(),
        "first heard, not renamed"
    );
}

#[test]
fn silence_is_lost_once_and_the_identity_brings_it_back() {
    let mut s = session();
    let console = addr("10.0.0.5:10023");
    s.heard(&xinfo("FOH", "X32", "4.06"), console, 0);
    assert!(s.tick(14_000).is_empty());
    assert!(
        matches!(s.tick(15_000)[..], [Effect::Edge(ref e)] if matches!(**e, Edge::Lost { .. }))
    );
    assert!(s.tick(30_000).is_empty());
    assert_eq!(s.view().state, "lost");
    let e = s.heard(&xinfo("FOH", "X32", "4.06"), console, 40_000);
    assert!(
        matches!(e[..], [Effect::Edge(ref e), Effect::Refresh] if matches!(**e, Edge::Back { away_ms: 25_000, .. }))
    );
}

#[test]
fn discovery_with_two_answers_chooses_neither_and_says_so() {
    let cfg = ConsoleConfig {
        discovery: true,
        ..ConsoleConfig::default()
    };
    let mut s = Session::new(cfg, |_| None);
    s.start_discovery(1000);
    s.heard(&xinfo("FOH", "X32", "4.06"), addr("10.0.0.5:10023"), 1);
    s.heard(
        b"WING,10.0.0.6,MON,ngc-full,S1,3.0",
        addr("10.0.0.6:2222"),
        2,
    );
    // Not a console's port: not an answer to our discovery.
    s.heard(&xinfo("X", "X32", "1"), addr("10.0.0.7:5555"), 3);
    assert!(s.tick(1000).is_empty());
    let v = s.view();
    assert_eq!(v.state, "ambiguous");
    assert_eq!(v.candidates.len(), 2);
    assert!(v.problem.unwrap().contains("console.address"));
    // One answer: chosen; a WING is then spoken to on its OSC port.
    let mut s = Session::new(
        ConsoleConfig {
            discovery: true,
            ..ConsoleConfig::default()
        },
        |_| None,
    );
    s.start_discovery(1000);
    s.heard(
        b"WING,10.0.0.6,MON,ngc-full,S1,3.0",
        addr("10.0.0.6:2222"),
        2,
    );
    assert!(
        matches!(s.tick(1000)[..], [Effect::Edge(ref e), Effect::Refresh] if matches!(**e, Edge::Found(_)))
    );
    assert_eq!(s.view().address.as_deref(), Some("10.0.0.6:2223"));
    assert_eq!(s.view().serial.as_deref(), Some("S1"));
}
