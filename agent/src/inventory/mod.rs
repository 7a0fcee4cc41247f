//! The node inventory: a superset of the controller's node inventory shape
//! (camelCase keys, see `docs/controller-contract.md`), plus our
//! own keys (build, audio devices, storage, trust, controller). Building it
//! never writes anything and works without config, trust, audio or network.

pub mod audio;
pub mod meter;
mod procfs;
pub mod select;
mod system;
mod table;

use serde::Serialize;

pub use table::render_table;

use crate::build_info::{self, BuildInfo};
use crate::config::Config;
use crate::trust::{self, TrustReport};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    // --- the controller's shape
    pub agent_version: String,
    pub alias: String,
    pub hostname: String,
    pub id: String,
    pub interfaces: Vec<Interface>,
    pub ip_addresses: Vec<String>,
    pub last_seen_at: String,
    pub location: Location,
    pub runtime: system::Runtime,
    pub status: &'static str,
    pub tags: Vec<String>,
    // --- ours
    /// Where `id` came from: `config`, `certificate` or `hostname`.
    pub id_source: &'static str,
    pub build: BuildInfo,
    pub audio_devices: Vec<audio::AudioDevice>,
    pub selected_device: SelectedDevice,
    pub capture: CaptureInfo,
    pub storage: system::Storage,
    /// Whether the kernel says the clock is synchronised (NTP); see
    /// `health/system.rs`. The skew against the controller's clock is in
    /// `status`.
    pub clock: crate::health::system::ClockSync,
    pub trust: TrustReport,
    pub controller: ControllerInfo,
    /// The console the node is wired to, as the agent sees it (`state`
    /// `off` when none is configured); the selected interface's channel
    /// aliases are its channel names.
    pub console: crate::console::ConsoleView,
    pub config_file: Option<String>,
    pub state_dir: String,
    /// What is missing for this node to run, in words.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub alias: String,
    pub backend: &'static str,
    pub channel_count: u16,
    pub channels: Vec<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_path: Option<String>,
    pub id: String,
    pub sample_rates: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    pub system_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_ref: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub alias: String,
    pub index: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub room: String,
    pub site: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedDevice {
    pub name: Option<String>,
    pub interface_id: Option<String>,
    pub reason: String,
}

/// The configured capture settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureInfo {
    pub device: String,
    /// `null`: all the device offers.
    pub channels: Option<u16>,
    pub sample_rate: u32,
    pub format: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerInfo {
    pub url: Option<String>,
    pub address: Option<String>,
    pub server_name: Option<String>,
}

fn interface(d: &audio::AudioDevice) -> Interface {
    let channel_count = d.channel_counts.iter().copied().max().unwrap_or(0);
    Interface {
        alias: d.description.clone(),
        backend: "alsa",
        channel_count,
        channels: (1..=channel_count)
            .map(|index| Channel {
                alias: format!("Input {index}"),
                index,
            })
            .collect(),
        hardware_path: d.card.as_ref().map(audio::hardware_path),
        id: audio::interface_id(d),
        sample_rates: d.sample_rates.clone(),
        serial_number: d.card.as_ref().and_then(audio::serial_number),
        // A card by its ALSA names (as today's agent); a PCM by its name.
        system_name: d
            .card
            .as_ref()
            .and_then(audio::system_name)
            .unwrap_or_else(|| d.name.clone()),
        system_ref: Some(d.name.clone()),
    }
}

/// The node's id, and where it came from: `node.id`, else the node
/// certificate's common name, else `node_<hostname>`.
fn node_id_of(
    config: &Config,
    trust: &trust::TrustReport,
    hostname: &str,
) -> (String, &'static str) {
    let cert_cn = trust
        .certificate
        .as_ref()
        .and_then(|c| {
            c.subject
                .split(',')
                .find_map(|p| p.trim().strip_prefix("CN="))
        })
        .map(str::to_owned);
    match (&config.node.id, cert_cn) {
        (Some(id), _) => (id.clone(), "config"),
        (None, Some(cn)) => (cn, "certificate"),
        (None, None) => (
            format!(
                "node_{}",
                hostname
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    })
                    .collect::<String>()
            ),
            "hostname",
        ),
    }
}

/// The node's id as the inventory gives it.
pub fn node_id(config: &Config) -> String {
    node_id_of(config, &trust::report(&config.trust), &system::hostname()).0
}

/// Builds the inventory. `online` says whether this is the daemon speaking
/// to the controller (status `online`) or a local look (status from trust).
/// `held`: the capture this node's agent holds open (the daemon passes its
/// own; `--print-inventory` asks a running daemon): a device busy because
/// of it is still listed with what it captures.
pub fn build(
    config: &Config,
    online: bool,
    held: Option<&audio::Held>,
    console: crate::console::ConsoleView,
) -> Inventory {
    let trust = trust::report(&config.trust);
    let hostname = system::hostname();
    let (id, id_source) = node_id_of(config, &trust, &hostname);
    let devices = audio::discover_holding(held);
    let (chosen, reason) = select::choose(&config.capture.device, &devices);
    let selected_device = SelectedDevice {
        name: chosen.map(|d| d.name.clone()),
        interface_id: chosen.map(audio::interface_id),
        reason,
    };
    let endpoint = config.controller.endpoint.as_ref();
    let mut problems = Vec::new();
    if endpoint.is_none() {
        problems
            .push("no controller configured (controller.url / RAKKR_CONTROLLER_URL)".to_owned());
    }
    if let Some(r) = &trust.reason {
        problems.push(r.clone());
    }
    if selected_device.name.is_none() {
        problems.push(selected_device.reason.clone());
    }
    let storage = system::storage(&config.recordings_path);
    if !storage.writable {
        problems.push(format!(
            "recordings path {} is not writable",
            storage.recordings_path
        ));
    }
    let status = if online {
        "online"
    } else if trust.status != "ok" || endpoint.is_none() {
        "provisioning"
    } else {
        "offline"
    };
    let mut interfaces: Vec<Interface> = devices
        .iter()
        .filter(|d| d.error.is_none() || !d.channel_counts.is_empty())
        .map(interface)
        .collect();
    // NOTE: the console feeds the device the agent captures: its names
    // label that interface's channels (and so the meters, which the
    // controller labels from the inventory).
    if let Some(i) =
        (interfaces.iter_mut()).find(|i| Some(&i.id) == selected_device.interface_id.as_ref())
    {
        for ch in &mut i.channels {
            if let Some(name) = console.name_of(ch.index) {
                ch.alias = name.to_owned();
            }
        }
    }
    Inventory {
        agent_version: build_info::VERSION.to_owned(),
        alias: config
            .node
            .alias
            .clone()
            .unwrap_or_else(|| hostname.clone()),
        hostname,
        id,
        // NOTE: a device whose probe failed but whose channels are known
        // (a busy USB card, from /proc/asound) stays an interface; its
        // `audioDevices[].error` still says why it could not be probed.
        interfaces,
        ip_addresses: system::ip_addresses(),
        clock: crate::health::system::clock_sync(),
        last_seen_at: crate::util::now_iso8601(),
        location: Location {
            room: config.node.room.clone(),
            site: config.node.site.clone(),
            building: config.node.building.clone(),
            floor: config.node.floor.clone(),
        },
        runtime: system::runtime(),
        status,
        tags: config.node.tags.clone(),
        id_source,
        build: build_info::get(),
        audio_devices: devices.clone(),
        selected_device,
        capture: CaptureInfo {
            device: match &config.capture.device {
                crate::config::DeviceSelector::Auto => "auto".into(),
                crate::config::DeviceSelector::Exact(d)
                | crate::config::DeviceSelector::Pattern(d) => d.clone(),
            },
            channels: config.capture.channels,
            sample_rate: config.capture.sample_rate,
            format: config.capture.format.extension().to_owned(),
        },
        storage,
        trust,
        controller: ControllerInfo {
            url: endpoint.map(|e| e.url.clone()),
            address: endpoint.map(|e| e.address()),
            server_name: endpoint.map(|e| e.server_name.clone()),
        },
        console,
        config_file: config.source.as_ref().map(|p| p.display().to_string()),
        state_dir: config.state_dir.display().to_string(),
        problems,
    }
}
