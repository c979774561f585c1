//! The properties the fuzz targets (`rules/fuzz/`, cargo-fuzz on nightly) check,
//! shared with the stable test that replays their seed corpora (`rules/fuzz/seeds/`)
//! as fixed cases. Each function panics when a property fails.

use std::sync::{Arc, OnceLock};

use crate::normalise::normalise;
use crate::{CompileOptions, Matcher, Pack, Scope};

/// A small pack that exercises phrases, prefixes, context words, exceptions,
/// lists and patterns.
const PACK: &str = r#"[pack]
id = "f"
name = "F"
version = 1
language = "en"

[categories.suicide]
severity = 5
domains = ["bad.example"]

[lists.want]
words = ["want", "wanna"]

[[terms]]
category = "suicide"
kind = "phrase"
terms = ["kill myself", "suicide", "a"]
scope = ["typed", "title", "url", "search", "process"]

[[terms]]
category = "suicide"
kind = "prefix"
terms = ["kil"]
context = ["me"]

[[terms]]
category = "suicide"
kind = "pattern"
terms = ["{want} to die", "end ~3 life"]

[[exceptions]]
phrases = ["kill a"]
"#;

fn matcher() -> &'static Arc<Matcher> {
    static M: OnceLock<Arc<Matcher>> = OnceLock::new();
    M.get_or_init(|| {
        let pack = Pack::parse(PACK, "f.toml").expect("the fuzz pack parses");
        Arc::new(
            Matcher::compile(&pack, &CompileOptions::default()).expect("the fuzz pack compiles"),
        )
    })
}

/// The normaliser and matcher never panic, and every span maps inside the
/// original text on char boundaries (target `normaliser`).
pub fn normaliser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let n = normalise(&text);
    let len = n.as_str().len();
    for start in 0..=len {
        let span = n.original_span(start..len);
        assert!(span.start <= span.end && span.end <= text.len());
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
    }
    let _ = n.line_of(len);
    // Sentences are numbered in order: never fewer after a later offset.
    let mut last = 0;
    for at in 0..=len {
        let s = n.sentence_of(at);
        assert!(s >= last && s >= n.line_of(at));
        last = s;
    }
    let m = matcher();
    for scope in Scope::ALL {
        for f in m.find(scope, &text) {
            assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
            assert!(f.context.chars().count() <= 120);
        }
    }
    for f in m.find_url(&text) {
        assert!(f.span.end <= text.len());
    }
    let mut typed = m.typed();
    for c in text.chars() {
        if c == '\u{8}' {
            typed.backspace();
        } else {
            for f in typed.push(c) {
                assert!(f.span.end <= typed.text().len());
            }
        }
    }
}

/// Any text given to the pack parser parses or yields an error naming the
/// file; a pack that parses is linted and compiles or is refused, and a
/// compiled one matches its own text (target `pack_parser`).
pub fn pack_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Pack::parse(text, "fuzz.toml") {
        Ok(pack) => {
            let _ = crate::lint::lint(&pack);
            if let Ok(m) = Matcher::compile(&pack, &CompileOptions::default()) {
                for f in m.find(Scope::Typed, text) {
                    assert!(f.span.end <= text.len());
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml"), "{e}"),
    }
}
