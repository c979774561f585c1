//! Disguised spellings typed key by key: every line of the fourth set of disguised spellings
//! (words glued, camel-cased, spelt with leetspeak, emoji or marks, handles and names) raises
//! the same rules typed a character at a time, then flushed, as it does matched in one go.

mod common;

use common::typed_matches;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use tutela_rules::eval::load_corpus;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

/// Lines known to differ typed, each a fault still open (see rules/README.md, *Round 18:
/// disguised spellings*): a camel-cased run heard when its tail ends with it, before the
/// next word carries the match past it; letters joined by underscores heard as a prefix term
/// too while typed; initials heard as a term before the other initials of the line arrive.
/// Any other difference fails, and so does one of these once mended (take it out here).
const KNOWN: [&str; 3] = [
    "ImGoingToKillMyself tonight",
    "s_u_i_c_i_d_e",
    "K.Y.S. and J.P. are on the rota",
];

#[test]
fn typed_key_by_key_raises_what_the_whole_text_raises() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pack = Pack::load(&root.join("packs/en-GB.toml")).unwrap_or_else(|e| panic!("{e}"));
    let m = Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap());
    let set = root.join("corpus/probes/en-GB-evasive-spelling-4.tsv");
    let examples = load_corpus(&set).unwrap_or_else(|e| panic!("{e}"));
    assert!(examples.len() >= 160, "{} lines", examples.len());
    let mut differ = Vec::new();
    for e in examples.iter().filter(|e| e.scope == Scope::Typed) {
        let whole: BTreeSet<String> = m
            .find(Scope::Typed, &e.text)
            .into_iter()
            .map(|x| x.rule_id.to_string())
            .collect();
        let typed: BTreeSet<String> = typed_matches(&m, &e.text)
            .into_iter()
            .map(|x| x.rule_id.to_string())
            .collect();
        if (whole != typed) != KNOWN.contains(&e.text.as_str()) {
            differ.push(format!(
                "line {} {:?}: whole {whole:?}, typed {typed:?}",
                e.line, e.text
            ));
        }
    }
    assert!(differ.is_empty(), "typed differs:\n{}", differ.join("\n"));
}
