//! The normaliser and matcher never panic, and every span maps inside the original text on
//! char boundaries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tutela_rules::normalise::normalise;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

const PACK: &str = "[pack]\nid = \"f\"\nname = \"F\"\nversion = 1\nlanguage = \"en\"\n[categories.suicide]\nseverity = 5\ndomains = [\"bad.example\"]\n[[terms]]\ncategory = \"suicide\"\nkind = \"phrase\"\nterms = [\"kill myself\", \"suicide\", \"a\"]\nscope = [\"typed\", \"title\", \"url\", \"search\", \"process\"]\n[[terms]]\ncategory = \"suicide\"\nkind = \"prefix\"\nterms = [\"kil\"]\ncontext = [\"me\"]\n[[exceptions]]\nphrases = [\"kill a\"]\n";

fn matcher() -> &'static Arc<Matcher> {
    static M: OnceLock<Arc<Matcher>> = OnceLock::new();
    M.get_or_init(|| {
        let pack = Pack::parse(PACK, "f.toml").expect("fuzz pack parses");
        Arc::new(Matcher::compile(&pack, &CompileOptions::default()).expect("fuzz pack compiles"))
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let n = normalise(&text);
    let len = n.as_str().len();
    for start in 0..=len {
        let span = n.original_span(start..len);
        assert!(span.start <= span.end && span.end <= text.len());
        assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
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
});
