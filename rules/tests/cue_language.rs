//! The rule language's cues as v10 reads them, through the public matcher (in one go and
//! typed) and `tutela-rules check`: a negator in a pattern's gap, clauses (`within =
//! "clause"`), cues that cancel others (`cancels`) and questions (`question = true`).

use std::sync::Arc;
use tutela_rules::Matcher;

mod common;
use common::{alerts, alerts_typed, check, compiled};

const PACK: &str = r#"[pack]
id = "c"
name = "C"
version = 1
language = "en-GB"

[categories.discrimination]
severity = 3

[categories.extremism]
severity = 4

[lists.group]
identity = true
words = ["polish people", "jews", "muslims"]

[[terms]]
category = "discrimination"
kind = "pattern"
terms = ["{group} ~~12 (they|these) ~2 are? ~2 (lazy|vermin|scum)", "{group} are (vermin|scum)", "{group} are not welcome", "(exterminate|gas) the {group}"]

[[terms]]
category = "extremism"
terms = ["kuffar", "join isis"]

[[cues]]
name = "negation"
categories = ["discrimination"]
phrases = ["don't", "dont", "are not", "not"]
weight = -1.0
before = 3
within = "clause"

[[cues]]
name = "condemning"
categories = ["extremism"]
phrases = ["cowards"]
weight = -0.5
anywhere = true
within = "clause"

[[cues]]
name = "lesson"
categories = ["discrimination"]
phrases = ["the nazis", "in history"]
weight = -0.5
anywhere = true

[[cues]]
name = "endorsement"
categories = ["discrimination"]
phrases = ["were right to", "did nothing wrong"]
weight = 0.0
before = 8
after = 8
cancels = ["lesson"]

[[cues]]
name = "asking"
categories = ["extremism"]
phrases = ["what happened"]
weight = -0.5
anywhere = true
question = true
"#;

fn matcher() -> Arc<Matcher> {
    compiled(PACK, "c.toml")
}

/// Every text alerts (or not) in one go and typed a character at a time.
fn expect(m: &Arc<Matcher>, texts: &[&str], alert: bool) {
    for text in texts {
        assert_eq!(alerts(m, text), alert, "in one go: {text}");
        assert_eq!(alerts_typed(m, text), alert, "typed: {text}");
    }
}

#[test]
fn a_negator_in_a_patterns_gap_lowers_it() {
    let m = matcher();
    expect(
        &m,
        &[
            "polish people, they are not lazy",
            "i met loads of polish people and they are not lazy",
            "they are not lazy, polish people",
            "i don't think jews are vermin",
        ],
        false,
    );
    expect(
        &m,
        &[
            "polish people, they are lazy",
            "they are lazy, polish people",
            // The pattern's own words: 'are not' is what it says.
            "jews are not welcome",
            // A negator in the gap but in another clause is about that clause.
            "muslims, i don't care what you say, they are vermin",
        ],
        true,
    );
}

#[test]
fn a_clause_ends_a_cues_reach() {
    let m = matcher();
    expect(
        &m,
        &[
            "i don't care, jews are vermin",
            "i want to join isis, they are cowards",
            "i want to join isis - they are cowards",
            "i want to join isis but they are cowards",
            "no, muslims are scum",
        ],
        true,
    );
    expect(
        &m,
        &[
            "no, i don't think jews are vermin",
            "only cowards join isis",
            "i don't hate jews, muslims or polish people, jews are not scum",
        ],
        false,
    );
}

#[test]
fn an_endorsement_cancels_the_lesson_cue_beside_it() {
    let m = matcher();
    expect(
        &m,
        &[
            "the nazis were right to exterminate the jews",
            "in history we read they were right to gas the jews",
            "the nazis did nothing wrong, gas the jews",
        ],
        true,
    );
    expect(
        &m,
        &[
            "in history we learned the nazis wanted to exterminate the jews",
            "the nazis tried to exterminate the jews",
        ],
        false,
    );
}

#[test]
fn a_question_cue_counts_only_in_a_question() {
    let m = matcher();
    expect(
        &m,
        &[
            "the kuffar deserve what happened in london",
            "why? the kuffar deserve what happened",
        ],
        true,
    );
    expect(
        &m,
        &[
            "what happened to the kuffar in that film",
            "ok. what happened with the kuffar",
        ],
        false,
    );
    // The '?' comes after the match: in one go it is a question (typed, the agent holds
    // the match and matches the text again once the '?' is typed).
    assert!(!alerts(&m, "so the kuffar, what happened to them?"));
    assert!(!alerts(&m, "so, what happened to the kuffar?"));
}

#[test]
fn explained_cues_name_the_endorsement_and_skip_the_cancelled_lesson() {
    let m = matcher();
    let e = m.explain(
        tutela_rules::Scope::Typed,
        "the nazis were right to exterminate the jews",
    );
    let w = &e.weighed[0];
    assert_eq!(w.cues.len(), 1, "{:?}", w.cues);
    assert_eq!(
        (w.cues[0].name.as_str(), w.cues[0].weight),
        ("endorsement", 0.0)
    );
    let c = &e.categories[0];
    assert!(c.anywhere.is_empty() && c.alerted, "{c:?}");
}

/// (what is broken, the text replaced, its replacement, the line named, words the message
/// must hold)
const BROKEN: [(&str, &str, &str, &str, &str); 7] = [
    (
        "cancels an unknown group",
        "cancels = [\"lesson\"]",
        "cancels = [\"lessons\"]",
        "cancels = [",
        "no cue group is named `lessons`",
    ),
    (
        "cancels itself",
        "cancels = [\"lesson\"]",
        "cancels = [\"endorsement\"]",
        "cancels = [",
        "cancels itself",
    ),
    (
        "cancels a raising group",
        "cancels = [\"lesson\"]",
        "cancels = [\"lesson\", \"raising\"]",
        "cancels = [",
        "which raises",
    ),
    (
        "empty cancels",
        "cancels = [\"lesson\"]",
        "cancels = []",
        "cancels = [",
        "an empty `cancels`",
    ),
    (
        "cancels on a lowering group",
        "weight = 0.0",
        "weight = -0.5",
        "cancels = [",
        "lowers (weight below 0) but has `cancels`",
    ),
    (
        "cancels a group of other categories",
        "cancels = [\"lesson\"]",
        "cancels = [\"asking\"]",
        "cancels = [",
        "share no category",
    ),
    (
        "unknown within",
        "within = \"clause\"\n\n[[cues]]\nname = \"condemning\"",
        "within = \"clauses\"\n\n[[cues]]\nname = \"condemning\"",
        "within = \"clause\"",
        "use \"clause\", \"sentence\" or \"line\"",
    ),
];

const RAISING: &str = r#"
[[cues]]
name = "raising"
categories = ["discrimination"]
phrases = ["if thats racist"]
weight = 0.5
before = 8
"#;

#[test]
fn check_refuses_misused_cancels_and_within_naming_file_and_line() {
    let good = format!("{PACK}{RAISING}");
    let (ok, text) = check("c.toml", &good);
    assert!(ok, "{text}");
    for (what, from, to, at, words) in BROKEN {
        assert_eq!(good.matches(from).count(), 1, "{what}: test set-up");
        let line = good.lines().position(|l| l.starts_with(at)).unwrap() + 1;
        let name = format!("{}.toml", what.replace(' ', "-"));
        let (ok, text) = check(&name, &good.replacen(from, to, 1));
        assert!(!ok, "{what}: check passed\n{text}");
        assert!(
            text.contains(&format!("{name}:{line}:")),
            "{what}: no file and line {line}\n{text}"
        );
        assert!(text.contains(words), "{what}: problem not named\n{text}");
    }
}

#[test]
fn check_refuses_a_zero_weight_without_cancels_and_a_question_not_true_or_false() {
    let zero = PACK.replacen(
        "weight = -0.5\nanywhere = true\nquestion",
        "weight = 0.0\nanywhere = true\nquestion",
        1,
    );
    let (ok, text) = check("zero.toml", &zero);
    assert!(
        !ok && text.contains("cue weight 0 is out of range"),
        "{text}"
    );
    let line = PACK
        .lines()
        .position(|l| l.starts_with("question"))
        .unwrap()
        + 1;
    let (ok, text) = check(
        "question.toml",
        &PACK.replace("question = true", "question = \"yes\""),
    );
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("question.toml:{line}")), "{text}");
}
