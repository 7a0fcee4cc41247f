//! Any datagram a console (or anyone on its LAN) sends: never a panic,
//! and what parses stays within the crate's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(update)) = rakkr_console::parse_datagram(data) {
        let mut console = rakkr_console::state::Console::default();
        console.apply(update);
        let aliases = console.aliases(48, &Default::default());
        assert_eq!(aliases.len(), 48);
    }
});
