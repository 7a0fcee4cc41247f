//! Audio capture devices, from cpal's ALSA host (and alsa-lib for card ids
//! and sysfs facts). Read-only: PCMs are opened non-blocking only to ask
//! what they support, and a busy device is reported, not waited for.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cpal::traits::{DeviceTrait, HostTrait};
use serde::Serialize;

/// One device as cpal sees it, with what it supports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioDevice {
    /// ALSA PCM name, e.g. `hw:CARD=XUSB,DEV=0` or a configured PCM.
    pub name: String,
    pub description: String,
    /// Recognised as an X32/M32/X-USB/Wing-class console.
    pub console: bool,
    pub channel_counts: Vec<u16>,
    pub sample_rates: Vec<u32>,
    pub sample_formats: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub card: Option<Card>,
}

/// The capture this node's agent holds open, as the running engine knows
/// it: a device busy because of it is still listed with these facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub device: String,
    pub channels: u16,
    pub rate: u32,
    pub format: String,
}

#[derive(Debug, Clone)]
pub struct Card {
    pub index: u32,
    pub id: String,
    pub device: u32,
}

/// Rates we report when a device offers a continuous range.
pub(super) const STANDARD_RATES: &[u32] = &[44_100, 48_000, 88_200, 96_000, 176_400, 192_000];

/// PCM names that are aliases or conversions of hardware, never capture
/// interfaces of their own.
const ALIAS_PREFIXES: &[&str] = &[
    "default",
    "sysdefault",
    "plughw",
    "front",
    "surround",
    "iec958",
    "hdmi",
    "dmix",
    "dsnoop",
    "null",
    "pulse",
    "pipewire",
    "jack",
    "oss",
    "samplerate",
    "speexrate",
    "lavrate",
    "upmix",
    "vdownmix",
    "usbstream",
    "a52",
    "dpl",
    "speex",
    "rear",
    "center_lfe",
    "side",
    "modem",
    "phoneline",
    "spdif",
    "iec61937",
];

/// Whether a name or description identifies an X32-class console.
pub fn is_console(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["x32", "m32", "x-usb", "xusb", "x-live", "xlive", "wing"]
        .iter()
        .any(|k| t.contains(k))
}

fn is_alias(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or(name);
    ALIAS_PREFIXES
        .iter()
        .any(|p| base == *p || (base.starts_with(p) && *p == "surround"))
}

/// Maps numeric `hw:CARD=<n>` names to the stable card id, and returns the card.
fn card_of(name: &str, cards: &[(u32, String)]) -> Option<Card> {
    let rest = name.strip_prefix("hw:")?;
    let mut card = None;
    let mut dev = 0u32;
    for part in rest.split(',') {
        if let Some(c) = part.strip_prefix("CARD=") {
            card = Some(c);
        } else if let Some(d) = part.strip_prefix("DEV=") {
            dev = d.parse().ok()?;
        } else if card.is_none() {
            card = Some(part);
        }
    }
    let card = card?;
    let (index, id) = cards
        .iter()
        .find(|(i, id)| id == card || card.parse::<u32>().ok() == Some(*i))?
        .clone();
    Some(Card {
        index,
        id,
        device: dev,
    })
}

fn alsa_cards() -> Vec<(u32, String)> {
    alsa::card::Iter::new()
        .filter_map(Result::ok)
        .filter_map(|c| {
            let index = u32::try_from(c.get_index()).ok()?;
            let ctl = alsa::Ctl::new(&format!("hw:{index}"), false).ok()?;
            let id = ctl.card_info().ok()?.get_id().ok()?.to_owned();
            Some((index, id))
        })
        .collect()
}

fn probe(device: &cpal::Device) -> (Vec<u16>, Vec<u32>, Vec<String>, Option<String>) {
    if crate::build_info::fault("probe-busy") {
        let busy = "Device or resource busy (test fault probe-busy)".to_owned();
        return (Vec::new(), Vec::new(), Vec::new(), Some(busy));
    }
    match device.supported_input_configs() {
        Err(e) => (Vec::new(), Vec::new(), Vec::new(), Some(e.to_string())),
        Ok(configs) => {
            let (mut ch, mut rates, mut fmts) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            for c in configs {
                ch.insert(c.channels());
                let (lo, hi) = (c.min_sample_rate(), c.max_sample_rate());
                if lo == hi {
                    rates.insert(lo);
                } else {
                    rates.extend(
                        STANDARD_RATES
                            .iter()
                            .copied()
                            .filter(|r| (lo..=hi).contains(r)),
                    );
                }
                fmts.insert(c.sample_format().to_string());
            }
            let err = ch
                .is_empty()
                .then(|| "the device offers no capture configuration cpal can use".to_owned());
            (
                ch.into_iter().collect(),
                rates.into_iter().collect(),
                fmts.into_iter().collect(),
                err,
            )
        }
    }
}

/// Lists capture devices worth reporting: hardware (`hw:CARD=<id>,DEV=<n>`)
/// and configured PCMs that are not mere aliases.
pub fn discover() -> Vec<AudioDevice> {
    discover_holding(None)
}

/// [`discover`], knowing the capture `held` by this node's agent.
pub fn discover_holding(held: Option<&Held>) -> Vec<AudioDevice> {
    let host = cpal::host_from_id(cpal::HostId::Alsa).unwrap_or_else(|_| cpal::default_host());
    let cards = alsa_cards();
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for device in devices {
        let Ok(id) = device.id() else { continue };
        let raw_name = id.id().to_owned();
        let card = card_of(&raw_name, &cards);
        let name = match &card {
            Some(c) => format!("hw:CARD={},DEV={}", c.id, c.device),
            None if raw_name.starts_with("hw:") || is_alias(&raw_name) => continue,
            None => raw_name.clone(),
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        let description = device
            .description()
            .map(|d| d.name().to_owned())
            .unwrap_or_else(|_| name.clone());
        let (mut channel_counts, mut sample_rates, mut sample_formats, error) = probe(&device);
        // A card we cannot probe (busy: held by a capture, ours between
        // takes included) is still known from /proc/asound, when USB.
        if error.is_some()
            && let Some(st) = card.as_ref().and_then(super::procfs::capture_stream)
        {
            (channel_counts, sample_rates, sample_formats) =
                (st.channel_counts, st.sample_rates, st.sample_formats);
        } else if error.is_some()
            && let Some(h) = held.filter(|h| h.device == name || h.device == raw_name)
        {
            // Not USB (or no /proc stream file): what our own capture
            // runs with is known for certain.
            (channel_counts, sample_rates, sample_formats) =
                (vec![h.channels], vec![h.rate], vec![h.format.clone()]);
        }
        out.push(AudioDevice {
            console: is_console(&name) || is_console(&description),
            name,
            description,
            channel_counts,
            sample_rates,
            sample_formats,
            error,
            card,
        });
    }
    out
}

/// The interface id of the capture device named `name` (a `hw:` or
/// `plughw:` name resolves to its card, like the inventory's listing), so
/// that meter frames join the inventory's interface.
pub fn interface_id_of(name: &str) -> String {
    let hw = name.strip_prefix("plug").unwrap_or(name);
    let card = if hw.starts_with("hw:") {
        card_of(hw, &alsa_cards())
    } else {
        None
    };
    id_for(name, card.as_ref())
}

/// The controller's stable interface id (same as today's agent for hardware).
pub fn interface_id(d: &AudioDevice) -> String {
    id_for(&d.name, d.card.as_ref())
}

fn id_for(name: &str, card: Option<&Card>) -> String {
    let token = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .flat_map(|c| c.to_lowercase())
            .collect()
    };
    match card {
        Some(c) if !token(&c.id).is_empty() => {
            format!("alsa_card_{}_dev_{}", token(&c.id), c.device)
        }
        Some(c) => format!("alsa_hw_{}_{}", c.index, c.device),
        None => format!("alsa_pcm_{}", token(name)),
    }
}

/// Canonical sysfs path of a card's capture PCM, else of the card, else
/// its `/proc/asound` entry (today's agent's order: the controller keys
/// an interface's history on it).
pub fn hardware_path(card: &Card) -> String {
    let p = format!(
        "/sys/class/sound/card{}/pcmC{}D{}c",
        card.index, card.index, card.device
    );
    std::fs::canonicalize(&p)
        .or_else(|_| std::fs::canonicalize(format!("/sys/class/sound/card{}/device", card.index)))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("/proc/asound/card{}/pcm{}c", card.index, card.device))
}

/// The card as ALSA lists it (`arecord -l`): the card's name, then the
/// capture PCM's when it differs, e.g. `X-USB USB Audio`. Today's agent's
/// `systemName`, kept so a node that switches keeps its history.
pub fn system_name(card: &Card) -> Option<String> {
    let ctl = alsa::Ctl::new(&format!("hw:{}", card.index), false).ok()?;
    let card_name = ctl.card_info().ok()?.get_name().ok()?.to_owned();
    let pcm = ctl
        .pcm_info(card.device, 0, alsa::Direction::Capture)
        .ok()?;
    Some(joined_name(&card_name, pcm.get_name().ok()?))
}

fn joined_name(card: &str, pcm: &str) -> String {
    if card.eq_ignore_ascii_case(pcm) {
        pcm.to_owned()
    } else {
        format!("{card} {pcm}")
    }
}

/// USB serial number from sysfs (`serial` file or `SERIAL=` in `uevent`).
pub fn serial_number(card: &Card) -> Option<String> {
    let dev: PathBuf =
        std::fs::canonicalize(format!("/sys/class/sound/card{}/device", card.index)).ok()?;
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    dev.ancestors().find_map(|a| {
        read(&a.join("serial")).or_else(|| {
            read(&a.join("uevent"))?.lines().find_map(|l| {
                l.strip_prefix("SERIAL=")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            })
        })
    })
}

/// A device as discovery would report it, for tests.
#[cfg(test)]
pub(crate) fn test_device(name: &str, card: Option<(&str, u32)>) -> AudioDevice {
    AudioDevice {
        name: name.into(),
        description: name.into(),
        console: is_console(name),
        channel_counts: vec![32],
        sample_rates: vec![48_000],
        sample_formats: vec!["i32".into()],
        error: None,
        card: card.map(|(id, device)| Card {
            index: 3,
            id: id.into(),
            device,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, card: Option<(&str, u32)>) -> AudioDevice {
        test_device(name, card)
    }

    #[test]
    fn stable_ids_match_the_previous_agent() {
        assert_eq!(
            interface_id(&dev("hw:CARD=XUSB,DEV=0", Some(("XUSB", 0)))),
            "alsa_card_xusb_dev_0"
        );
        assert_eq!(interface_id(&dev("x32file", None)), "alsa_pcm_x32file");
        // A PCM that is no card: the name alone, as the inventory lists it.
        assert_eq!(interface_id_of("x32file"), "alsa_pcm_x32file");
    }

    #[test]
    fn system_names_and_paths_match_the_previous_agent() {
        assert_eq!(joined_name("X-USB", "USB Audio"), "X-USB USB Audio");
        assert_eq!(joined_name("Loopback", "loopback"), "loopback");
        // No such card in sysfs: the /proc/asound entry.
        let card = Card {
            index: 97,
            id: "X".into(),
            device: 2,
        };
        assert_eq!(hardware_path(&card), "/proc/asound/card97/pcm2c");
        assert_eq!(system_name(&card), None);
    }

    #[test]
    fn numeric_card_names_map_to_card_ids() {
        let cards = vec![(2, "XUSB".to_owned())];
        let c = card_of("hw:CARD=2,DEV=0", &cards).unwrap();
        assert_eq!((c.id.as_str(), c.device), ("XUSB", 0));
        assert!(card_of("hw:CARD=XUSB,DEV=1", &cards).is_some());
        assert!(card_of("x32file", &cards).is_none());
    }

    #[test]
    fn aliases_are_not_interfaces() {
        assert!(is_alias("plughw:CARD=XUSB,DEV=0"));
        assert!(is_alias("default"));
        assert!(is_alias("surround51:CARD=PCH"));
        assert!(!is_alias("x32file"));
    }
}
