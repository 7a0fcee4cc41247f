//! The console's MAC address, from the node's ARP table (`/proc/net/arp`):
//! an X32 does not say its own, and a MAC tells one console from another
//! of the same model and name.
//!
//! Layout (one header line, then one line per entry, whitespace
//! separated): `IP address  HW type  Flags  HW address  Mask  Device`;
//! flags `0x0` is an incomplete entry.

use std::net::IpAddr;

/// The MAC of `ip` in `table` (the text of `/proc/net/arp`).
pub fn mac_in(table: &str, ip: IpAddr) -> Option<String> {
    let ip = ip.to_string();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (addr, flags, mac) = (f.first()?, f.get(2)?, f.get(3)?);
        let complete = *flags != "0x0" && *mac != "00:00:00:00:00:00";
        (*addr == ip && complete && mac.len() == 17).then(|| mac.to_ascii_lowercase())
    })
}

/// The MAC of `ip`, if the node has one for it (IPv4 on its LAN).
pub fn mac_of(ip: IpAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    mac_in(&table, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_entries_only() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 10.0.0.5         0x1         0x2         00:0E:DD:11:22:33     *        eth0\n\
                 10.0.0.6         0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            mac_in(t, ip("10.0.0.5")).as_deref(),
            Some("00:0e:dd:11:22:33")
        );
        assert_eq!(mac_in(t, ip("10.0.0.6")), None);
        assert_eq!(mac_in(t, ip("10.0.0.7")), None);
    }
}
