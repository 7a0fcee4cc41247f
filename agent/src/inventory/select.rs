//! Which capture device the configured selector picks: `auto` (an
//! X32/M32/X-USB/Wing console by name, else the first usable device), an
//! exact ALSA name, or a glob over names and descriptions.

use super::audio::AudioDevice;
use crate::config::DeviceSelector;

/// Which device the configured selector picks, and why.
pub fn choose<'a>(
    selector: &DeviceSelector,
    devices: &'a [AudioDevice],
) -> (Option<&'a AudioDevice>, String) {
    match selector {
        DeviceSelector::Exact(name) => match devices.iter().find(|d| &d.name == name) {
            Some(d) => (Some(d), format!("configured device {name}")),
            None => (None, format!("configured device {name} is not present")),
        },
        DeviceSelector::Pattern(p) => match devices
            .iter()
            .find(|d| glob(p, &d.name) || glob(p, &d.description))
        {
            Some(d) => (Some(d), format!("first device matching {p:?}")),
            None => (None, format!("no device matches {p:?}")),
        },
        DeviceSelector::Auto => match devices.iter().find(|d| d.console && d.error.is_none()) {
            Some(d) => (
                Some(d),
                "auto: recognised X32/M32/X-USB/Wing console".into(),
            ),
            None => match devices.iter().find(|d| d.error.is_none()) {
                Some(d) => (
                    Some(d),
                    "auto: no console recognised; first usable capture device".into(),
                ),
                None => (None, "auto: no usable capture device found".into()),
            },
        },
    }
}

/// Case-insensitive glob with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::audio::test_device;

    fn dev(name: &str, card: Option<(&str, u32)>) -> AudioDevice {
        test_device(name, card)
    }

    #[test]
    fn auto_prefers_a_console() {
        let devices = vec![
            dev("hw:CARD=PCH,DEV=0", Some(("PCH", 0))),
            dev("hw:CARD=XUSB,DEV=0", Some(("XUSB", 0))),
        ];
        let (d, why) = choose(&DeviceSelector::Auto, &devices);
        assert_eq!(d.unwrap().name, "hw:CARD=XUSB,DEV=0");
        assert!(why.contains("console"));
        let (d, _) = choose(&DeviceSelector::Pattern("*pch*".into()), &devices);
        assert_eq!(d.unwrap().name, "hw:CARD=PCH,DEV=0");
    }

    #[test]
    fn glob_matches() {
        assert!(glob("*X32*", "hw:CARD=X32,DEV=0"));
        assert!(glob("hw:CARD=?USB*", "hw:card=xusb,dev=0"));
        assert!(!glob("wing", "wingman"));
    }
}
