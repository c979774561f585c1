//! Any text given to the pack parser either parses or yields an error; never a panic.
//! A pack that parses must also compile and match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pack) = Pack::parse(text, "fuzz.toml") {
        let _ = tutela_rules::lint::lint(&pack);
        if let Ok(m) = Matcher::compile(&pack, &CompileOptions::default()) {
            let _ = m.find(Scope::Typed, text);
        }
    }
});
