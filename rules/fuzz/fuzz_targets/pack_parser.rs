//! Any text given to the pack parser either parses or yields an error; never a panic.
//! A pack that parses must also compile and match (`tutela_rules::fuzz_checks::pack_parser`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tutela_rules::fuzz_checks::pack_parser(data));
