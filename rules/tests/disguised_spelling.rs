//! Disguised spellings: letters typed one at a time, words run together, a space inside a
//! word. Each form alerts as the term as written, in one go and typed key by key, with the
//! typed letters as its context; the benign neighbours of each form stay quiet.

mod common;

use common::{alerts, alerts_typed, compiled, typed_matches};
use std::sync::Arc;
use tutela_rules::{Matcher, Scope};

const PACK: &str = r#"
[pack]
id = "test"
name = "Test pack"
version = 1
language = "en-GB"

[categories.suicide]
severity = 5

[categories.bullying]
severity = 3

[categories.violence]
severity = 3

[[terms]]
category = "suicide"
kind = "phrase"
terms = ["kill myself", "end my life", "i want to die"]

[[terms]]
category = "suicide"
terms = ["suicide", "suicidal"]

[[terms]]
category = "suicide"
kind = "prefix"
terms = ["suicid"]

[[terms]]
category = "bullying"
kind = "phrase"
terms = ["kill yourself", "kys", "no homo"]

[[terms]]
category = "violence"
kind = "phrase"
terms = ["kill the lights"]

[[exceptions]]
phrases = ["kill the lights"]
"#;

fn matcher() -> Arc<Matcher> {
    compiled(PACK, "test.toml")
}

/// The rule ids `text` raises in one go, and the original text each match covers.
fn fired(m: &Matcher, text: &str) -> Vec<(String, String)> {
    m.find(Scope::Typed, text)
        .into_iter()
        .map(|x| (x.rule_id.to_string(), text[x.span].to_string()))
        .collect()
}

fn expect(m: &Arc<Matcher>, texts: &[&str], alert: bool) {
    for text in texts {
        assert_eq!(alerts(m, text), alert, "in one go: {text:?}");
        assert_eq!(alerts_typed(m, text), alert, "typed: {text:?}");
    }
}

#[test]
fn letters_typed_one_at_a_time_are_heard() {
    let m = matcher();
    expect(
        &m,
        &[
            "i want to k i l l m y s e l f",
            "k.i.l.l m.y.s.e.l.f tonight",
            "k i l l  m y s e l f",
            "s u i c i d e",
            "just k.y.s already",
            "k-y-s",
        ],
        true,
    );
    assert_eq!(
        fired(&m, "i will k i l l m y s e l f"),
        [(
            "suicide/kill myself".to_string(),
            "k i l l m y s e l f".to_string()
        )]
    );
}

#[test]
fn single_letters_in_ordinary_sentences_stay_apart() {
    let m = matcher();
    expect(
        &m,
        &[
            "i am a student",
            "plan a b or c",
            "a i is changing how we learn",
            "my initials are k. y. and s.",
            "j. r. r. tolkien",
            "h 2 o is water",
        ],
        false,
    );
}

#[test]
fn words_run_together_are_heard_as_the_term() {
    let m = matcher();
    expect(
        &m,
        &[
            "killmyself",
            "gonna killmyself tonight",
            "iwanttodie",
            "KillMySelf",
            "i want to endmylife",
            "go killyourself",
        ],
        true,
    );
    assert_eq!(
        fired(&m, "i will KillMyself"),
        [("suicide/kill myself".to_string(), "KillMyself".to_string())]
    );
    let typed = typed_matches(&m, "iwanttodie ");
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].rule_id, "suicide/i want to die");
}

#[test]
fn run_together_forms_stay_whole_words_and_long() {
    let m = matcher();
    expect(
        &m,
        &[
            // Inside a longer word, or short enough to be a name.
            "killmyselfie",
            "endmylifestyle",
            "nohomo",
            "my skillset is maths",
            "the killswitch",
            // An exception run together still cancels its term.
            "killthelights",
        ],
        false,
    );
}

#[test]
fn a_space_inside_a_word_is_heard() {
    let m = matcher();
    expect(
        &m,
        &["thinking about sui cide", "i feel sui cidal", "suic ide"],
        true,
    );
    assert_eq!(
        fired(&m, "about sui cide"),
        [("suicide/suicide".to_string(), "sui cide".to_string())]
    );
    // Halves of fewer than three letters are not cut.
    expect(&m, &["s uicide now"], false);
}
