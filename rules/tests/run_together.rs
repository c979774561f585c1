//! Words run together, split at run time into the pack's words: a word pattern with many
//! readings, a word glued before a term, a short term with a word glued on; and letters
//! spelt with dots or dashes that are initials or a puzzle. Each attack alerts in one go and
//! typed key by key, as the rule written; each benign twin stays quiet.

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

[lists.i]
words = ["i", "im", "i am", "i just", "i really", "i honestly"]

[lists.want]
words = ["want", "wanna", "wish", "need", "am going", "gonna", "going"]

[lists.die]
words = ["die", "be dead", "end it", "end my life", "kill myself", "not be here"]

[[terms]]
category = "suicide"
kind = "pattern"
terms = ["{i} {want} to? {die}"]

[[terms]]
category = "suicide"
kind = "pattern"
terms = ["{i} {want} to? {die} ~12 tonight"]

[[terms]]
category = "suicide"
kind = "phrase"
terms = ["kill myself"]

[[terms]]
category = "bullying"
terms = ["kys"]

[[terms]]
category = "bullying"
kind = "phrase"
terms = ["kill yourself", "please just go home now you loser"]
"#;

fn matcher() -> Arc<Matcher> {
    compiled(PACK, "test.toml")
}

fn expect(m: &Arc<Matcher>, texts: &[&str], alert: bool) {
    for text in texts {
        assert_eq!(alerts(m, text), alert, "in one go: {text:?}");
        assert_eq!(alerts_typed(m, text), alert, "typed: {text:?}");
    }
}

#[test]
fn a_pattern_with_many_readings_run_together() {
    let m = matcher();
    expect(
        &m,
        &[
            "iwanttoendmylife",
            "honestly imgonnakillmyself",
            "i wanttobedead",
            "ijustwannadie tonight",
        ],
        true,
    );
    let found = m.find(Scope::Typed, "so iwanttoendmylife ok");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule_id, "suicide/{i} {want} to? {die}");
    assert_eq!(
        &"so iwanttoendmylife ok"[found[0].span.clone()],
        "iwanttoendmylife"
    );
    let typed = typed_matches(&m, "so iwanttoendmylife ");
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].rule_id, "suicide/{i} {want} to? {die}");
}

#[test]
fn ordinary_words_run_together_stay_quiet() {
    let m = matcher();
    // They split, but what they say is not a term; a hashtag or a handle is not split.
    expect(
        &m,
        &[
            "iwanttogohomenow",
            "imgoingtogohome",
            "#iwanttoendmylife is a song",
            "@imgonnakillmyself",
            "src/kilmyself_test.rs",
        ],
        false,
    );
}

#[test]
fn a_word_glued_to_a_short_term() {
    let m = matcher();
    expect(&m, &["pleasekys", "omg gokys", "kysloser", "kysnow"], true);
    // Two letters after the term, the term inside a name, an ordinary word: quiet.
    expect(
        &m,
        &["kysto", "kysgohome", "therapist", "skyscraper"],
        false,
    );
}

#[test]
fn initials_are_not_a_term_spelt_out() {
    let m = matcher();
    expect(
        &m,
        &[
            "Best wishes, K.Y.S.",
            "Present: A.B., K.Y.S., J.D.",
            "Authors: K. Y. S. Patel",
            "word puzzle: K-Y-S spells nothing",
        ],
        false,
    );
    expect(
        &m,
        &["just k.y.s already", "go k - y - s", "k. y. s. loser"],
        true,
    );
}

#[test]
fn a_column_of_letters_is_not_a_word() {
    let m = matcher();
    expect(&m, &["k\ny\ns", "row\tk\ty\ts"], false);
    expect(&m, &["k y s"], true);
}

#[test]
fn a_long_word_that_does_not_split_costs_nothing_more() {
    let m: &Matcher = &matcher();
    assert!(m.find(Scope::Typed, "internationalisation").is_empty());
    assert!(m.find(Scope::Title, "supercalifragilistic").is_empty());
}

#[test]
fn a_word_of_chat_glued_before_a_term_of_two_words() {
    let m = matcher();
    expect(
        &m,
        &[
            "honestlykillyourself",
            "literallykillyourself loser",
            "bruhkillmyself",
        ],
        true,
    );
    // The term is not all the rest: an ordinary word glued on.
    expect(&m, &["honestlykillingit", "honestlykillmyselfie"], false);
}

#[test]
fn capitals_inside_a_run_break_it_into_words() {
    let m = matcher();
    expect(
        &m,
        &[
            "ImGonnaKillMyself",
            "IWantToEndMyLife",
            "iWannaDie",
            "GoKillYourself",
        ],
        true,
    );
    // Words that say nothing of the sort, a name, a product ('JustKys' is shaped like one: a
    // short term and a word of chat), a handle: quiet.
    expect(
        &m,
        &[
            "ImGonnaGoHome",
            "KillSwitch",
            "PlayStation",
            "JustKys",
            "@GoKillYourself",
            "Kysonbeats",
        ],
        false,
    );
}

#[test]
fn a_capital_with_an_accent_marks_a_name() {
    let m = matcher();
    expect(&m, &["gokys"], true);
    // A capital in any script starts a name, as 'Gokys' does.
    expect(&m, &["Gokys", "\u{1f4}okys"], false);
}

#[test]
fn a_handle_that_begins_with_a_short_term_is_a_name() {
    let m = matcher();
    expect(&m, &["kysonbeats", "follow kysonmusic", "@kysloser"], false);
    expect(&m, &["kysloser", "kysnow"], true);
}

#[test]
fn a_pattern_ending_far_after_a_split_word_is_heard_typed() {
    let m = matcher();
    let text = "imgonnakillmyself and i mean it because everyone at school hates me tonight";
    let whole: Vec<String> = m
        .find(Scope::Typed, text)
        .into_iter()
        .map(|x| x.rule_id.to_string())
        .collect();
    assert!(
        whole.contains(&"suicide/{i} {want} to? {die} ~12 tonight".to_string()),
        "{whole:?}"
    );
    let mut typed: Vec<String> = typed_matches(&m, text)
        .into_iter()
        .map(|x| x.rule_id.to_string())
        .collect();
    typed.sort();
    typed.dedup();
    let mut whole = whole;
    whole.sort();
    whole.dedup();
    assert_eq!(typed, whole);
}
