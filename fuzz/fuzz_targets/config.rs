//! Any text as a config file: parsed and resolved into settings, or an
//! error naming the problem; never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use winback::config::{Overrides, parse, resolve};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(raw) = parse(path, text) {
        let over = Overrides {
            data: Some("d".into()),
            out: Some("o".into()),
            needs_data: true,
            ..Overrides::default()
        };
        let _ = resolve(None, raw, over);
    }
});
