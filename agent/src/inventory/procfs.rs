//! What `/proc/asound` says of a USB card's capture stream, readable while
//! the device is open — by our own capture between takes, or by anyone:
//! probing through ALSA then fails with "Device or resource busy", and the
//! interface would vanish from the inventory (and from the controller's
//! view of the node) exactly while it records.
//!
//! The file is snd-usb-audio's `streamD` (see Linux
//! `sound/usb/proc.c`): a `Capture:` section with one block per
//! altset, each with `Format:`, `Channels:` and `Rates:` lines, the rates
//! a list (`44100, 48000`) or a range (`8000 - 48000 (continuous)`).

use std::collections::BTreeSet;

use super::audio::{Card, STANDARD_RATES};

/// Channel counts, rates and sample formats the capture stream offers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub channel_counts: Vec<u16>,
    pub sample_rates: Vec<u32>,
    pub sample_formats: Vec<String>,
}

/// The card's capture stream as `/proc/asound` lists it (`None`: not a USB
/// card, or no capture).
pub fn capture_stream(card: &Card) -> Option<Stream> {
    let text = std::fs::read_to_string(format!(
        "/proc/asound/card{}/stream{}",
        card.index, card.device
    ))
    .ok()?;
    parse(&text)
}

fn parse(text: &str) -> Option<Stream> {
    let mut lines = text.lines().skip_while(|l| l.trim_end() != "Capture:");
    lines.next()?;
    let (mut ch, mut rates, mut fmts) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    // The section runs while lines are indented.
    for line in lines.take_while(|l| l.is_empty() || l.starts_with(' ')) {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Channels:") {
            ch.extend(v.trim().parse::<u16>().ok());
        } else if let Some(v) = line.strip_prefix("Format:") {
            fmts.insert(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Rates:") {
            let v = v.trim();
            match v.split_once(" - ") {
                Some((lo, hi)) => {
                    let lo = lo.trim().parse::<u32>().ok();
                    let hi = hi
                        .split_whitespace()
                        .next()
                        .and_then(|h| h.parse::<u32>().ok());
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        rates.extend(
                            STANDARD_RATES
                                .iter()
                                .copied()
                                .filter(|r| (lo..=hi).contains(r)),
                        );
                    }
                }
                None => rates.extend(v.split(',').filter_map(|r| r.trim().parse::<u32>().ok())),
            }
        }
    }
    (!ch.is_empty()).then(|| Stream {
        channel_counts: ch.into_iter().collect(),
        sample_rates: rates.into_iter().collect(),
        sample_formats: fmts.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An X-USB-class card while it captures (shape of Linux's
    /// `sound/usb/proc.c` output).
    const X_USB: &str = "BEHRINGER X-USB at usb-0000:00:14.0-1, high speed : USB Audio

Playback:
  Status: Stop
  Interface 1
    Altset 1
    Format: S32_LE
    Channels: 32
    Endpoint: 0x01 (1 OUT) (ASYNC)
    Rates: 44100, 48000
    Data packet interval: 125 us

Capture:
  Status: Running
    Interface = 2
    Altset = 1
    Packet Size = 1560
    Momentary freq = 48000 Hz (0x6.0000)
  Interface 2
    Altset 1
    Format: S32_LE
    Channels: 32
    Endpoint: 0x81 (2 IN) (ASYNC)
    Rates: 44100, 48000
    Data packet interval: 125 us
    Bits: 24
";

    #[test]
    fn a_busy_usb_console_is_known_from_its_stream_file() {
        assert_eq!(
            parse(X_USB),
            Some(Stream {
                channel_counts: vec![32],
                sample_rates: vec![44_100, 48_000],
                sample_formats: vec!["S32_LE".into()],
            })
        );
    }

    #[test]
    fn continuous_rates_and_several_altsets() {
        let text = "X\n\nCapture:\n  Interface 1\n    Altset 1\n    Format: S16_LE\n    Channels: 2\n    Rates: 8000 - 48000 (continuous)\n  Interface 1\n    Altset 2\n    Format: S24_3LE\n    Channels: 8\n    Rates: 96000\n";
        let s = parse(text).unwrap();
        assert_eq!(s.channel_counts, [2, 8]);
        assert_eq!(s.sample_rates, [44_100, 48_000, 96_000]);
        assert_eq!(s.sample_formats, ["S16_LE", "S24_3LE"]);
    }

    #[test]
    fn playback_only_or_garbage_says_nothing() {
        assert_eq!(
            parse("X\n\nPlayback:\n  Interface 1\n    Channels: 2\n"),
            None
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("Capture:\n  Channels: many\n"), None);
    }
}
