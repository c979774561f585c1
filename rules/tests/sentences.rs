//! Sentence ends: a cue's `before`/`after` window stops at the end of its sentence (unless
//! its group says `within = "line"`), an `anywhere` cue with `within = "sentence"` lowers
//! only its sentence, and a pattern written without gaps does not read across a sentence
//! end; abbreviations, decimals and file names do not end a sentence. Batch and typed.

use proptest::prelude::*;
use std::sync::Arc;
use tutela_rules::normalise::normalise;
use tutela_rules::{Matcher, Scope};

mod common;
use common::{alerts, alerts_typed, compiled};

const PACK: &str = r#"[pack]
id = "s"
name = "S"
version = 1
language = "en-GB"

[categories.discrimination]
severity = 3

[categories.extremism]
severity = 4

[categories.bullying]
severity = 3

[lists.group]
identity = true
words = ["muslims", "jews"]

[[terms]]
category = "discrimination"
kind = "pattern"
terms = ["(hate|kill all|deport all the) {group}"]

[[terms]]
category = "extremism"
kind = "pattern"
terms = ["join isis"]

[[terms]]
category = "bullying"
kind = "pattern"
terms = ["bully (me|my)", "you ~2 (loser|idiot)"]

[[cues]]
name = "negation"
categories = ["discrimination", "bullying"]
phrases = ["don't", "aren't", "not"]
weight = -1.0
before = 4

[[cues]]
name = "counter-speech"
categories = ["discrimination"]
phrases = ["is racist"]
weight = -1.0
before = 8
after = 8
within = "line"

[[cues]]
name = "crimes told"
categories = ["extremism"]
phrases = ["burned"]
weight = -1.0
anywhere = true
within = "sentence"

[[cues]]
name = "news"
categories = ["extremism"]
phrases = ["reports say"]
weight = -1.0
anywhere = true
"#;

fn matcher() -> Arc<Matcher> {
    compiled(PACK, "s.toml")
}

#[test]
fn a_negation_stops_at_the_end_of_its_sentence() {
    let m = matcher();
    assert!(alerts(&m, "you aren't wanted here. deport all the jews"));
    assert!(alerts(&m, "i don't care! hate jews"));
    assert!(alerts(&m, "are you not coming? kill all muslims"));
    assert!(alerts(&m, "i don't know\nkill all muslims"));
    assert!(!alerts(&m, "i don't hate jews. they are my friends"));
    assert!(!alerts(&m, "we aren't going to deport all the jews"));
}

#[test]
fn abbreviations_decimals_and_file_names_do_not_end_a_sentence() {
    let m = matcher();
    assert!(!alerts(&m, "not e.g. hate jews"));
    assert!(!alerts(&m, "not Mr. Smith, hate jews"));
    assert!(!alerts(&m, "not 2.5 hate jews"));
    assert!(!alerts(&m, "not notes.txt hate jews"));
    assert!(alerts(&m, "not 2. hate jews"));
}

#[test]
fn a_group_can_reach_its_line_and_an_anywhere_cue_only_its_sentence() {
    let m = matcher();
    // `within = "line"`: counter-speech in the next sentence still lowers.
    assert!(!alerts(&m, "they said hate muslims. that is racist"));
    assert!(alerts(&m, "they said hate muslims.\nthat is racist"));
    // `anywhere` with `within = "sentence"`: a crime told in another sentence does not
    // lower a supporter's words; in the same sentence it does.
    assert!(alerts(&m, "i want to join isis. they burned the church"));
    assert!(!alerts(&m, "they burned the church of those who join isis"));
    // `anywhere` by default covers its line.
    assert!(!alerts(
        &m,
        "reports say the men wanted to go. they tried to join isis"
    ));
}

#[test]
fn a_pattern_without_gaps_does_not_read_across_a_sentence_end() {
    let m = matcher();
    assert!(alerts(&m, "they bully me every day"));
    assert!(!alerts(
        &m,
        "the film was called big bully. my brother loved it"
    ));
    // A gap may cross it.
    assert!(alerts(&m, "you. are a loser"));
}

#[test]
fn typed_text_is_weighed_with_its_sentence_ends() {
    let m = matcher();
    assert!(alerts_typed(
        &m,
        "you aren't wanted here. deport all the jews "
    ));
    assert!(alerts_typed(&m, "i don't care! hate jews\n"));
    assert!(!alerts_typed(&m, "i don't hate jews. they are my friends "));
    assert!(!alerts_typed(&m, "not e.g. hate jews "));
}

#[test]
fn sentences_are_numbered_in_the_normalised_text() {
    let n = normalise("Stop it. Mr. Smith said e.g. 3.5 is fine!\nok");
    assert_eq!(n.as_str(), "stop it mr smith said e g 3 5 is fine ok");
    let of = |w: &str| n.sentence_of(n.as_str().find(w).unwrap());
    assert_eq!(of("stop"), of("it"));
    assert!(of("mr") > of("it"));
    assert_eq!(of("mr"), of("fine"));
    assert!(of("ok") > of("fine"));
}

const WORDS: [&str; 12] = [
    "hate", "jews", "kill", "all", "muslims", "bully", "me", "my", "you", "loser", "the", "a",
];

/// Words, phrases and a pattern with a gap; no cues.
const PLAIN: &str = r#"[pack]
id = "p"
name = "P"
version = 1
language = "en-GB"

[categories.bullying]
severity = 3

[lists.group]
identity = true
words = ["muslims", "jews"]

[[terms]]
category = "bullying"
terms = ["loser", "bully me", "kill all"]

[[terms]]
category = "bullying"
kind = "pattern"
terms = ["hate ~2 {group}"]
"#;

fn pack_without_cues() -> Arc<Matcher> {
    compiled(PLAIN, "p.toml")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A sentence end is punctuation like any other for the normalised text, and a pack
    /// without cues and without gapless patterns matches the same words with or without it.
    #[test]
    fn sentence_ends_change_neither_the_text_nor_plain_matches(
        words in proptest::collection::vec(0..WORDS.len(), 1..12),
        marks in proptest::collection::vec(0..4usize, 12),
    ) {
        let commas: Vec<String> = words.iter().map(|&w| WORDS[w].to_string()).collect();
        let with_ends: String = words
            .iter()
            .enumerate()
            .map(|(i, &w)| format!("{}{} ", WORDS[w], [",", ".", "!", "?"][marks[i]]))
            .collect();
        let plain: String = commas.iter().map(|w| format!("{w}, ")).collect();
        let (x, y) = (normalise(&with_ends), normalise(&plain));
        prop_assert_eq!(x.as_str(), y.as_str());
        let m = pack_without_cues();
        let a: Vec<_> = m.find(Scope::Typed, &with_ends).into_iter().map(|x| (x.rule_id, x.span)).collect();
        let b: Vec<_> = m.find(Scope::Typed, &plain).into_iter().map(|x| (x.rule_id, x.span)).collect();
        prop_assert_eq!(a, b);
    }
}
