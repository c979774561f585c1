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

/// Runs `tutela-rules check` on the pack `text` written as `name` in a scratch folder: whether
/// it passed, and what it printed (standard output, then standard error).
pub fn check(name: &str, text: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("tutela-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tutela-rules"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
