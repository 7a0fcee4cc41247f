//! Printing the configuration in force, key by key with where each value
//! comes from (`check`, `status`).

use crate::config::origins::{ConfigStatus, Origin};

/// Every key (`all`), or those not at their default.
pub fn print(c: &ConfigStatus, all: bool) {
    match (c.pushed_version, &c.pushed_ignored) {
        (_, Some(why)) => println!("pushed configuration: IGNORED: {why}"),
        (Some(v), None) => println!("pushed configuration: version {v} in force"),
        (None, None) => println!("pushed configuration: none"),
    }
    let shown: Vec<_> = c
        .settings
        .iter()
        .filter(|s| all || s.origin != Origin::Default)
        .collect();
    let width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in &shown {
        println!("  {:width$} = {}  ({})", s.key, s.value, s.origin);
    }
    if !all {
        println!(
            "  ({} other settings at their defaults; `check` lists every one)",
            c.settings.len() - shown.len()
        );
    }
}
