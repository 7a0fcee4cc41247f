use super::resolve::parse_url;
use super::*;

const FULL: &str = r#"
[node]
id = "node_x32_a"
alias = "FOH recorder"
site = "Main campus"
room = "Hall A"
building = "North"
floor = "2"
tags = ["x32", "foh"]

[controller]
url = "rakkr://controller.example.org:7443"
bridge_port = 7443
server_name = "controller.example.org"
ca_cert_path = "/etc/rakkr/ca.pem"
heartbeat_seconds = 15
connect_timeout_seconds = 10
backoff_initial_ms = 1000
backoff_max_ms = 30000

[trust]
cert_path = "/x/node.pem"
key_path = "/x/node.key"

[storage]
recordings_path = "/srv/recordings"
min_free_mb = 2048
warn_free_mb = 8192
stop_free_mb = 512

[capture]
device = "hw:CARD=XUSB,DEV=0"
channels = 32
sample_rate = 48000
format = "wav"
buffer_frames = 1024
segment_seconds = 1800
channel_names = ["Kick", "Snare"]
pre_roll_seconds = 5
meter_hz = 20
max_takes = 2
resume_within_seconds = 300
realtime = "auto"
realtime_priority = 70

[outbox]
max_events = 10000

[log]
level = "info"

[update]
probation_seconds = 300
stable_seconds = 30
max_starts = 3
trusted_keys = ["RWTZbb8SjLMfZkH52OOtzSAxRUwUemT7DLpBP3aRUK48TSxJ3OxOIFXa lab key"]

[transfer]
max_bytes_per_second = 50000000

[retention]
delete_received_after_hours = 48
max_takes_mb = 100000
min_free_percent = 10

[health]
raise_after = 3
clear_after = 3
clip_dbfs = -1.0
flatline_dbfs = -120
low_signal_dbfs = -55.0
correlation = 0.98
disk_warning_percent = 85
disk_critical_percent = 95
cpu_warning_per_core = 2.0
cpu_critical_per_core = 4.0
clock_skew_warning_seconds = 5
clock_skew_recover_seconds = 2

[console]
address = "192.168.1.20"
discovery = false
discovery_address = "192.168.1.255"
model = "x32"
routing = { 1 = 17, 2 = 18 }
lost_after_seconds = 15
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn every_key_has_an_environment_variable() {
    let table: toml::Table = FULL.parse().unwrap();
    let mut in_file: Vec<(String, String)> = Vec::new();
    for (section, v) in &table {
        for key in v.as_table().unwrap().keys() {
            in_file.push((section.clone(), key.clone()));
        }
    }
    let mut in_env: Vec<(String, String)> = env::KEYS
        .iter()
        .map(|(s, k, _)| ((*s).to_owned(), (*k).to_owned()))
        .collect();
    in_file.sort();
    in_env.sort();
    assert_eq!(in_file, in_env);
    let c = parse(FULL, "full", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.transfer_max_bytes_per_second, 50_000_000);
    assert_eq!(
        c.retention,
        crate::take::retention::Policy {
            delete_received_after: Some(std::time::Duration::from_secs(48 * 3600)),
            max_takes_bytes: Some(100_000 << 20),
            min_free_percent: Some(10),
        }
    );
}

#[test]
fn retention_is_off_by_default_and_out_of_range_values_are_named() {
    let c = parse("", "none", &no_env, Path::new("/s")).unwrap();
    assert!(c.retention.is_keep_all(), "keep every take unless told");
    for (bad, names) in [
        (
            "[retention]\nmin_free_percent = 95\n",
            "retention.min_free_percent",
        ),
        ("[retention]\nmax_takes_mb = 0\n", "retention.max_takes_mb"),
    ] {
        let e = parse(bad, "bad", &no_env, Path::new("/s")).unwrap_err();
        assert!(e.to_string().contains(names), "{e}");
    }
}

#[test]
fn empty_file_gives_defaults_under_the_state_dir() {
    let c = parse("", "none", &no_env, Path::new("/var/lib/rakkr/agent")).unwrap();
    assert!(c.controller.endpoint.is_none());
    assert_eq!(
        c.trust.cert,
        Path::new("/var/lib/rakkr/agent/trust/node.pem")
    );
    assert_eq!(
        c.recordings_path,
        Path::new("/var/lib/rakkr/agent/recordings")
    );
    assert_eq!(c.capture.device, DeviceSelector::Auto);
    assert_eq!(c.node.site, "Unassigned Site");
}

#[test]
fn variables_override_the_file() {
    let env = |k: &str| match k {
        "RAKKR_CONTROLLER_URL" => Some("rakkr://[::1]:9000".to_owned()),
        "RAKKR_HEARTBEAT_SECONDS" => Some("5".to_owned()),
        "RAKKR_NODE_TAGS" => Some("a, b".to_owned()),
        "RAKKR_CAPTURE_DEVICE" => Some("*X32*".to_owned()),
        _ => None,
    };
    let c = parse(FULL, "full", &env, Path::new("/s")).unwrap();
    let ep = c.controller.endpoint.unwrap();
    assert_eq!((ep.host.as_str(), ep.port), ("::1", 9000));
    assert_eq!(ep.address(), "[::1]:9000");
    assert_eq!(c.controller.heartbeat, Duration::from_secs(5));
    assert_eq!(c.node.tags, vec!["a", "b"]);
    assert_eq!(c.capture.device, DeviceSelector::Pattern("*X32*".into()));
}

#[test]
fn typo_in_a_key_is_named() {
    let err = parse(
        "[capture]\nchanels = 2\n",
        "/etc/x.toml",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("chanels") && err.contains("/etc/x.toml"),
        "{err}"
    );
}

#[test]
fn an_http_url_of_the_rakkr_controller_means_its_bridge() {
    let env = |k: &str| match k {
        "RAKKR_CONTROLLER_URL" => Some("https://rakkr.example.org:8787/api".to_owned()),
        "RAKKR_CONTROLLER_BRIDGE_PORT" => Some("9443".to_owned()),
        _ => None,
    };
    let c = parse("", "none", &env, Path::new("/s")).unwrap();
    let e = c.controller.endpoint.unwrap();
    assert_eq!(
        (e.host.as_str(), e.port, e.server_name.as_str()),
        ("rakkr.example.org", 9443, "rakkr.example.org")
    );
    assert!(
        c.legacy_notes.iter().any(|n| n.contains("rakkr-bridge")),
        "{:?}",
        c.legacy_notes
    );
    assert_eq!(
        parse_url("http://[::1]", 7443).unwrap(),
        ("::1".into(), 7443)
    );
    assert!(parse_url("https://user@host", 7443).is_err());
    assert!(parse_url("https:///path", 7443).is_err());
}

#[test]
fn url_forms() {
    assert_eq!(
        parse_url("c.example", 1).unwrap(),
        ("c.example".into(), DEFAULT_CONTROLLER_PORT)
    );
    assert_eq!(
        parse_url("rakkr://127.0.0.1:1", 1).unwrap(),
        ("127.0.0.1".into(), 1)
    );
    assert!(parse_url("rakkr://c:notaport", 1).is_err());
    assert!(parse_url("rakkr://c/path", 1).is_err());
}

#[test]
fn syntax_error_names_the_file() {
    let err = parse(
        "[node\n",
        "/etc/rakkr/recorder-agent.toml",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/etc/rakkr/recorder-agent.toml"), "{err}");
}

#[test]
fn capture_format_is_the_file_format_and_legacy_sample_formats_still_parse() {
    let env = |k: &str| (k == "RAKKR_CAPTURE_FORMAT").then(|| "S16_LE".to_owned());
    let c = parse("", "none", &env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.format, Container::Flac);
    assert_eq!(c.capture.legacy_sample_format.as_deref(), Some("S16_LE"));
    let c = parse(
        "[capture]\nformat = \"w64\"\n",
        "f",
        &no_env,
        Path::new("/s"),
    )
    .unwrap();
    assert_eq!(c.capture.format, Container::W64);
    assert!(
        parse(
            "[capture]\nformat = \"mp3\"\n",
            "f",
            &no_env,
            Path::new("/s")
        )
        .is_err()
    );
}

#[test]
fn disk_thresholds_must_keep_the_stop_reserve_lowest() {
    let err = parse(
        "[storage]\nstop_free_mb = 100\nmin_free_mb = 50\n",
        "t",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("storage.stop_free_mb"), "{err}");
    let err = parse(
        "[storage]\nstop_free_mb = 0\n",
        "t",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at least 1"), "{err}");
}

#[test]
fn channel_names_and_pre_roll_parse_and_validate() {
    let c = parse(FULL, "full", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.channel_names, ["Kick", "Snare"]);
    assert_eq!(c.capture.pre_roll, Duration::from_secs(5));
    assert_eq!(c.disk.stop_free_bytes, 512 << 20);
    let env = |k: &str| (k == "RAKKR_CAPTURE_CHANNEL_NAMES").then(|| "Vox, Gtr".to_owned());
    let c = parse("", "t", &env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.channel_names, ["Vox", "Gtr"]);
    assert!(
        parse(
            "[capture]\npre_roll_seconds = 31\n",
            "t",
            &no_env,
            Path::new("/s")
        )
        .is_err()
    );
    assert!(
        parse(
            "[capture]\nchannel_names = [\"a\", \" \"]\n",
            "t",
            &no_env,
            Path::new("/s")
        )
        .is_err()
    );
}

#[test]
fn realtime_is_for_hardware_by_default_and_validated() {
    use super::Realtime;
    let c = parse("", "t", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.realtime, Realtime::Hardware(70));
    assert_eq!(
        c.capture.realtime.priority_for("hw:CARD=XUSB,DEV=0"),
        Some(70)
    );
    assert_eq!(
        c.capture.realtime.priority_for("plughw:CARD=XUSB,DEV=0"),
        Some(70)
    );
    // A userspace plugin may spin (the null PCM is always ready): not by default.
    assert_eq!(c.capture.realtime.priority_for("x32file"), None);
    let c = parse(
        "[capture]\nrealtime = \"always\"\nrealtime_priority = 80\n",
        "t",
        &no_env,
        Path::new("/s"),
    )
    .unwrap();
    assert_eq!(c.capture.realtime.priority_for("x32file"), Some(80));
    let env = |k: &str| (k == "RAKKR_CAPTURE_REALTIME").then(|| "off".to_owned());
    let c = parse("", "t", &env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.realtime.priority_for("hw:0"), None);
    for bad in [
        "realtime = \"sometimes\"",
        "realtime_priority = 0",
        "realtime_priority = 100",
    ] {
        assert!(
            parse(
                &format!("[capture]\n{bad}\n"),
                "t",
                &no_env,
                Path::new("/s")
            )
            .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn config_errors_name_the_line_of_the_key() {
    let text = "# node\n[node]\nid = \"n\"\n\n[capture]\nchannels = 2\nsample_rate = 5\n";
    let err = parse(text, "/etc/x.toml", &no_env, Path::new("/s"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("capture.sample_rate") && err.contains("line 7 of /etc/x.toml"),
        "{err}"
    );
    // A wrong type: the parser's own line and column.
    let err = parse(
        "[capture]\n\nchannels = \"two\"\n",
        "/etc/x.toml",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 3") && err.contains("channels"), "{err}");
    // Set by a variable, the file's line would mislead: none is given.
    let env = |k: &str| (k == "RAKKR_CAPTURE_SAMPLE_RATE").then(|| "6".to_owned());
    let err = parse(text, "/etc/x.toml", &env, Path::new("/s"))
        .unwrap_err()
        .to_string();
    assert!(!err.contains("line 7"), "{err}");
}

#[test]
fn a_trusted_key_that_is_not_a_minisign_key_is_refused_naming_it() {
    let err = parse(
        "[update]\ntrusted_keys = [\"RWTnot-a-key\"]\n",
        "f",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("update.trusted_keys[0]"), "{err}");
    assert!(err.contains("not a minisign public key"), "{err}");
    let c = parse(FULL, "full", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.update.trusted_keys.len(), 1);
}

#[test]
fn resume_within_defaults_to_ten_minutes_and_is_bounded_by_a_day() {
    let c = parse("", "t", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.resume_within, Duration::from_secs(600));
    let c = parse(FULL, "full", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.resume_within, Duration::from_secs(300));
    let env = |k: &str| (k == "RAKKR_CAPTURE_RESUME_WITHIN_SECONDS").then(|| "0".to_owned());
    let c = parse("", "t", &env, Path::new("/s")).unwrap();
    assert_eq!(c.capture.resume_within, Duration::ZERO, "0: never");
    let e = parse(
        "[capture]\nresume_within_seconds = 86401\n",
        "t",
        &no_env,
        Path::new("/s"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("capture.resume_within_seconds 86401"), "{e}");
}

#[test]
fn console_address_routing_and_discovery_from_file_and_environment() {
    let c = parse(FULL, "full", &no_env, Path::new("/s")).unwrap();
    assert_eq!(c.console.address, Some(("192.168.1.20".to_owned(), None)));
    assert_eq!(c.console.family, Some(rakkr_console::Family::X32));
    assert_eq!(c.console.routing.get(&2), Some(&18));
    let env = |v: &str| match v {
        "RAKKR_CONSOLE_ADDRESS" => Some("x32.local:10023".to_owned()),
        "RAKKR_CONSOLE_ROUTING" => Some("3=20, 4=21".to_owned()),
        "RAKKR_CONSOLE_DISCOVERY" => Some("yes".to_owned()),
        _ => None,
    };
    let c = parse("", "none", &env, Path::new("/s")).unwrap();
    assert_eq!(
        c.console.address,
        Some(("x32.local".to_owned(), Some(10023)))
    );
    assert!(c.console.discovery && c.console.enabled());
    assert_eq!(c.console.routing.get(&4), Some(&21));
    assert!(
        !parse("", "none", &no_env, Path::new("/s"))
            .unwrap()
            .console
            .enabled()
    );
    for (var, value, names) in [
        ("RAKKR_CONSOLE_ADDRESS", "x32:99999", "console.address"),
        ("RAKKR_CONSOLE_ROUTING", "1=41", "console.routing.1"),
        ("RAKKR_CONSOLE_ROUTING", "1:2", "RAKKR_CONSOLE_ROUTING"),
        (
            "RAKKR_CONSOLE_DISCOVERY",
            "maybe",
            "RAKKR_CONSOLE_DISCOVERY",
        ),
        ("RAKKR_CONSOLE_MODEL", "yamaha", "console.model"),
    ] {
        let env = |v: &str| (v == var).then(|| value.to_owned());
        let e = parse("", "none", &env, Path::new("/s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(names), "{var}={value}: {e}");
    }
}
