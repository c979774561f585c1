//! The splitter's own tests: words split, words left whole, places mapped back.
use super::*;

fn splitter() -> Splitter {
    let words = [
        "i", "wish", "was", "dead", "want", "to", "end", "my", "life", "im", "gona", "kil",
        "myself", "please", "loser", "now", "the", "go", "home", "a", "just", "die",
    ];
    Splitter::new(words.into_iter(), ["kys", "rapist", "suicide"].into_iter())
}

fn split(s: &Splitter, word: &str) -> Option<Vec<String>> {
    let pieces = s.split(word.as_bytes())?;
    Some(pieces.into_iter().map(|p| word[p].to_string()).collect())
}

#[test]
fn splits_a_pattern_run_together() {
    let s = splitter();
    assert_eq!(
        split(&s, "iwishiwasdead").unwrap(),
        ["i", "wish", "i", "was", "dead"]
    );
    // 'want to' folds its two t's into one: the words share it.
    assert_eq!(
        split(&s, "iwantoendmylife").unwrap(),
        ["i", "want", "to", "end", "my", "life"]
    );
    assert_eq!(
        split(&s, "imgonakilmyself").unwrap(),
        ["im", "gona", "kil", "myself"]
    );
}

#[test]
fn a_word_glued_to_a_short_term() {
    let s = splitter();
    assert_eq!(split(&s, "pleasekys").unwrap(), ["please", "kys"]);
    assert_eq!(split(&s, "kysloser").unwrap(), ["kys", "loser"]);
    assert_eq!(split(&s, "kysnow").unwrap(), ["kys", "now"]);
    // Two words without a short term: an ordinary word holds a term as often.
    assert_eq!(split(&s, "therapist"), None);
    assert_eq!(split(&s, "justdie"), None);
    assert_eq!(split(&s, "kysto"), None);
    assert_eq!(split(&s, "gokys").unwrap(), ["go", "kys"]);
    assert_eq!(split(&s, "gohomekys").unwrap(), ["go", "home", "kys"]);
    assert_eq!(split(&s, "kysgohome"), None);
}

#[test]
fn leaves_words_of_the_pack_short_words_and_what_does_not_split() {
    let s = splitter();
    assert_eq!(split(&s, "suicide"), None);
    assert_eq!(split(&s, "kys"), None);
    assert_eq!(split(&s, "wishes"), None);
    assert_eq!(split(&s, "skilset"), None);
    // Two-letter pieces only where they are words: 'st um bled' is not.
    let s2 = Splitter::new(["st", "um", "i"].into_iter(), ["bled"].into_iter());
    assert_eq!(split(&s2, "stumbled"), None);
    assert_eq!(split(&s, "kys2day"), None);
    assert!(!s.splits("diesel"));
    assert!(!s.splits("gohome2"));
}

#[test]
fn maps_places_back() {
    let w = WrittenOut {
        text: "so i wish i was dead ok".into(),
        original: "So iwishiwasdead, ok".into(),
        words: vec![(3..15, 3..20)],
        pieces: vec![vec![3..4, 5..9, 10..11, 12..15, 16..20]],
        kinds: vec![(0, false)],
    };
    assert!(w.covers(&(5..20)));
    assert!(!w.covers(&(12..20)));
    assert!(!w.covers(&(21..23)));
    assert!(!w.covers(&(0..2)));
    assert_eq!(w.back(0, false), 0);
    assert_eq!(w.back(3, false), 3);
    assert_eq!(w.back(12, false), 3);
    assert_eq!(w.back(20, true), 15);
    assert_eq!(w.back(21, false), 16);
    assert_eq!(w.back(23, true), 18);
}
