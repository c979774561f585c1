//! The normaliser and matcher never panic, and every span maps inside the original text on
//! char boundaries (`tutela_rules::fuzz_checks::normaliser`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tutela_rules::fuzz_checks::normaliser(data));
