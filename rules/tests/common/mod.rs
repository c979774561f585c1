//! What the rule tests share: a pack compiled from its text, and whether a text alerts in
//! one go or typed a character at a time (then flushed, as a window losing focus does).

#![allow(dead_code)]

use std::sync::Arc;
use tutela_rules::{CompileOptions, Match, Matcher, Pack, Scope};

/// The pack `text` (named `file` in errors), compiled with the default options.
pub fn compiled(text: &str, file: &str) -> Arc<Matcher> {
    let pack = Pack::parse(text, file).unwrap();
    Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap())
}

/// Whether `text`, matched in one go as typed text, raises anything.
pub fn alerts(m: &Matcher, text: &str) -> bool {
    !m.find(Scope::Typed, text).is_empty()
}

/// Everything `text` raises typed a character at a time, then flushed.
pub fn typed_matches(m: &Arc<Matcher>, text: &str) -> Vec<Match> {
    let mut typed = m.typed();
    let mut found = Vec::new();
    for c in text.chars() {
        found.extend(typed.push(c));
    }
    found.extend(typed.flush());
    found
}

/// Whether `text` typed a character at a time raises anything.
pub fn alerts_typed(m: &Arc<Matcher>, text: &str) -> bool {
    !typed_matches(m, text).is_empty()
}
