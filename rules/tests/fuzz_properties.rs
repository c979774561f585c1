//! Fuzzing on the stable toolchain: proptest drives the pack parser, the pattern compiler,
//! the normaliser and the batch and typed matchers with bounded numbers of cases. Nothing
//! may panic; every span lands inside the text on char boundaries; a pack that parses
//! compiles or is refused with an error.

use proptest::prelude::*;
use std::sync::{Arc, OnceLock};
use tutela_rules::lint::lint;
use tutela_rules::normalise::normalise;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

const SHIPPED: &str = include_str!("../packs/en-GB.toml");

fn shipped() -> &'static Arc<Matcher> {
    static M: OnceLock<Arc<Matcher>> = OnceLock::new();
    M.get_or_init(|| {
        let pack = Pack::parse(SHIPPED, "en-GB.toml").unwrap();
        Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap())
    })
}

/// Text built from risky pieces, obfuscation and odd Unicode.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("i want to die".to_string()),
        Just("k.i.l.l myself".to_string()),
        Just("kill all muslims".to_string()),
        Just("don't".to_string()),
        Just("according to".to_string()),
        Just("\n".to_string()),
        Just("é\u{301}\u{200b}ｋ".to_string()),
        "[a-z ]{0,12}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.join(" "))
}

/// A pattern from pattern-syntax pieces, well-formed or not.
fn pattern() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{want}".to_string()),
        Just("{group}".to_string()),
        Just("{nope}".to_string()),
        Just("~2".to_string()),
        Just("~~3".to_string()),
        Just("~99".to_string()),
        Just("(a b|c)".to_string()),
        Just("(".to_string()),
        Just("die?".to_string()),
        Just("hate*".to_string()),
        Just("a|b|".to_string()),
        "[a-z]{1,6}",
        "[{}()|*?~ a-z0-9]{1,8}",
    ];
    proptest::collection::vec(token, 0..7).prop_map(|v| v.join(" "))
}

fn pack_with(pattern: &str) -> String {
    format!(
        "[pack]\nid = \"f\"\nname = \"F\"\nversion = 1\nlanguage = \"en-GB\"\n\n\
         [categories.suicide]\nseverity = 5\n\n\
         [lists.want]\nwords = [\"want\", \"wanna\"]\n\n\
         [lists.group]\nidentity = true\nwords = [\"muslims\"]\n\n\
         [[terms]]\ncategory = \"suicide\"\nkind = \"pattern\"\nterms = [{}]\n",
        toml::Value::String(pattern.to_string())
    )
}

fn check_spans(text: &str, m: &tutela_rules::Match) {
    assert!(
        m.span.start <= m.span.end && m.span.end <= text.len(),
        "{m:?}"
    );
    assert!(text.is_char_boundary(m.span.start) && text.is_char_boundary(m.span.end));
    assert!(m.context_span.end <= m.context.len());
}

proptest! {
    // A fixed seed: CI runs the same cases every time (reproducible, never a coin toss).
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7475_7465_6c61),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_pack_parser_never_panics_on_a_damaged_pack(cut in 0usize..SHIPPED.len(), drop in 0usize..2500, junk in any::<String>()) {
        let mut text: String = SHIPPED.chars().take(cut).collect();
        let lines: Vec<&str> = SHIPPED.lines().collect();
        if drop < lines.len() {
            text = lines.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, l)| *l).collect::<Vec<_>>().join("\n");
            text.push_str(&junk);
        }
        if let Ok(pack) = Pack::parse(&text, "damaged.toml") {
            let _ = lint(&pack);
            let _ = Matcher::compile(&pack, &CompileOptions::default());
        }
    }

    #[test]
    fn any_pattern_is_compiled_or_refused_with_a_line(p in pattern()) {
        match Pack::parse(&pack_with(&p), "p.toml") {
            Ok(pack) => {
                let m = Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap());
                for t in ["i want to die", "wanna hate muslims die", ""] {
                    for found in m.find(Scope::Typed, t) {
                        check_spans(t, &found);
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("p.toml:"), "{}", e),
        }
    }

    #[test]
    fn normalising_and_matching_any_text_keeps_spans_inside_it(t in text()) {
        let n = normalise(&t);
        let _ = n.line_of(n.as_str().len());
        let m = shipped();
        for scope in [Scope::Typed, Scope::Title, Scope::Search] {
            for found in m.find(scope, &t) {
                check_spans(&t, &found);
            }
        }
        let url = format!("https://www.google.com/search?q={t}");
        for found in m.find_url(&url) {
            check_spans(&url, &found);
        }
        let mut typed = m.typed();
        for c in t.chars() {
            for found in typed.push(c) {
                check_spans(typed.text(), &found);
            }
        }
        for found in typed.flush() {
            check_spans(typed.text(), &found);
        }
    }
}

/// Every file of the fuzz targets' seed corpora (`rules/fuzz/seeds/<target>/`, tracked;
/// the fuzzer's own growing `rules/fuzz/corpus/` is not),
/// replayed through the same checks the targets make.
#[test]
fn the_fuzz_targets_corpora_pass_as_fixed_cases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 2] = [
        ("normaliser", tutela_rules::fuzz_checks::normaliser),
        ("pack_parser", tutela_rules::fuzz_checks::pack_parser),
    ];
    for (target, check) in targets {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 10,
            "{target}: a corpus of {} files",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let replayed = std::panic::catch_unwind(|| check(&data));
            assert!(replayed.is_ok(), "{target}: {} fails", file.display());
        }
    }
}
