//! The human-readable form of the inventory (`inventory` without `--json`).

use std::fmt::Write;

use super::Inventory;

fn bytes(n: Option<u64>) -> String {
    match n {
        None => "?".into(),
        Some(n) => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
    }
}

pub fn render_table(inv: &Inventory) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Node        {} ({}, id from {})",
        inv.id, inv.alias, inv.id_source
    );
    let _ = writeln!(s, "Status      {}", inv.status);
    let _ = writeln!(
        s,
        "Host        {}  {}",
        inv.hostname,
        inv.ip_addresses.join(" ")
    );
    let _ = writeln!(
        s,
        "Location    {} / {}",
        inv.location.site, inv.location.room
    );
    let _ = writeln!(
        s,
        "Agent       {} ({}, {}, built {})",
        inv.build.version, inv.build.git_revision, inv.build.target, inv.build.build_date
    );
    let _ = writeln!(
        s,
        "Libraries   FFmpeg {}, alsa-lib {}",
        inv.build.ffmpeg_version, inv.build.alsa_lib_version
    );
    let _ = writeln!(
        s,
        "Controller  {}",
        inv.controller.url.as_deref().unwrap_or("(not configured)")
    );
    let _ = writeln!(s, "Console     {}", inv.console.summary());
    let named: Vec<String> = (inv.console.channels.iter())
        .filter_map(|c| Some(format!("{}={}", c.channel, c.name.as_ref()?)))
        .collect();
    if !named.is_empty() {
        let _ = writeln!(s, "            {}", named.join("  "));
    }
    match &inv.trust.certificate {
        Some(c) => {
            let _ = writeln!(
                s,
                "Trust       {}: {} (until {}, {} days left)",
                inv.trust.status, c.subject, c.not_after, c.days_left
            );
        }
        None => {
            let _ = writeln!(s, "Trust       {}", inv.trust.status);
        }
    }
    let st = &inv.storage;
    let _ = writeln!(
        s,
        "Storage     {}  {} free of {}{}",
        st.recordings_path,
        bytes(st.free_bytes),
        bytes(st.total_bytes),
        if st.writable { "" } else { "  NOT WRITABLE" }
    );
    let _ = writeln!(s, "\nAudio devices:");
    if inv.audio_devices.is_empty() {
        let _ = writeln!(s, "  (none found)");
    }
    let _ = writeln!(
        s,
        "     {:<28} {:<10} {:<20} FORMATS",
        "DEVICE", "CHANNELS", "RATES"
    );
    for d in &inv.audio_devices {
        let mark = if inv.selected_device.name.as_deref() == Some(&d.name) {
            "*"
        } else {
            " "
        };
        let ch: Vec<String> = d.channel_counts.iter().map(u16::to_string).collect();
        let rates: Vec<String> = d
            .sample_rates
            .iter()
            .map(|r| format!("{}k", *r as f64 / 1000.0))
            .collect();
        let _ = writeln!(
            s,
            "  {mark:<2} {:<28} {:<10} {:<20} {}{}",
            d.name,
            ch.join(","),
            rates.join(","),
            d.sample_formats.join(","),
            d.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "  selected: {}", inv.selected_device.reason);
    if !inv.problems.is_empty() {
        let _ = writeln!(s, "\nTo do before this node can run:");
        for p in &inv.problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    s
}
