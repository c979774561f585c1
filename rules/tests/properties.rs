//! Property tests with a small seeded generator: the normaliser's map always lands inside
//! the original text on char boundaries, and nothing panics on any input.

use std::sync::Arc;
use tutela_rules::normalise::normalise;
use tutela_rules::{search_query, CompileOptions, Matcher, Pack, Scope};

/// xorshift64*: deterministic, so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "kill",
    "k.i.l.l",
    "s u i c i d e",
    "suiiicide",
    "$",
    "@",
    "!",
    "1",
    "0",
    "5",
    " ",
    "  ",
    ".",
    "-",
    "'",
    "é",
    "e\u{301}",
    "ß",
    "ﬁ",
    "ｋ",
    "𝐤",
    "\u{200B}",
    "\u{FEFF}",
    "і",
    "а",
    "ο",
    "ǅ",
    "ﷺ",
    "\u{0}",
    "\t",
    "\n",
    "😀",
    "👨‍👩‍👧",
    "日本",
    "Ⅻ",
    "①",
    "İ",
    "ŉ",
    "x",
    "a",
    "myself",
    "assassin's creed",
    "scunthorpe",
    "https://",
    "?q=",
    "%",
    "%2",
    "+",
    "&",
    "#",
    "/search",
];

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(24) {
        if rng.below(4) == 0 {
            // Any scalar value at all.
            let c = char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{FFFD}');
            s.push(c);
        } else {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    s
}

fn matcher() -> Arc<Matcher> {
    let pack = Pack::parse(
        "[pack]\nid = \"p\"\nname = \"P\"\nversion = 1\nlanguage = \"en\"\n[categories.suicide]\nseverity = 5\ndomains = [\"bad.example\"]\n[categories.violence]\nseverity = 3\n[[terms]]\ncategory = \"suicide\"\nkind = \"phrase\"\nterms = [\"kill myself\", \"suicide\"]\nscope = [\"typed\", \"title\", \"url\", \"search\", \"process\"]\n[[terms]]\ncategory = \"violence\"\nkind = \"prefix\"\nterms = [\"kil\", \"assassin\", \"日本\"]\ncontext = [\"a\"]\n[[terms]]\ncategory = \"violence\"\nkind = \"regex\"\nterms = ['k\\w*']\n[[exceptions]]\nphrases = [\"assassin's creed\", \"kill a\"]\n",
        "p.toml",
    )
    .unwrap();
    Arc::new(Matcher::compile(&pack, &CompileOptions::default()).unwrap())
}

#[test]
fn normaliser_spans_stay_inside_the_original() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        let n = normalise(&text);
        let len = n.as_str().len();
        assert!(!n.as_str().contains("  "), "{text:?} -> {:?}", n.as_str());
        for start in 0..=len {
            for end in start..=len.min(start + 12) {
                let span = n.original_span(start..end);
                assert!(
                    span.start <= span.end && span.end <= text.len(),
                    "{text:?} {start}..{end} -> {span:?}"
                );
                assert!(
                    text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
                    "{text:?} {span:?}"
                );
            }
        }
        assert!(!n.as_str().starts_with(' '), "{text:?} -> {:?}", n.as_str());
        // Whole normalised text maps to a span of the original, in order.
        if len > 0 {
            let all = n.original_span(0..len);
            let first = n.original_span(0..1);
            let last = n.original_span(len - 1..len);
            assert!(
                all.start == first.start && all.end == last.end && first.start <= last.start,
                "{text:?}"
            );
        }
    }
}

#[test]
fn matching_never_panics_and_spans_are_valid() {
    let m = matcher();
    let mut rng = Rng(0xC0FF_EE00_0000_0042);
    let mut typed = m.typed();
    for round in 0..5_000 {
        let text = random_text(&mut rng);
        for scope in Scope::ALL {
            let found = if scope == Scope::Url {
                m.find_url(&text)
            } else {
                m.find(scope, &text)
            };
            for f in found {
                assert!(
                    text.is_char_boundary(f.span.start)
                        && text.is_char_boundary(f.span.end)
                        && f.span.end <= text.len()
                );
                assert!(f.context.chars().count() <= 120);
                assert!(
                    f.context.is_char_boundary(f.context_span.start)
                        && f.context.is_char_boundary(f.context_span.end)
                );
                assert!(f.context_span.end <= f.context.len());
            }
            let e = m.explain(scope, &text);
            for c in e.cancelled {
                assert!(c.exception_span.end <= text.len());
            }
        }
        let _ = search_query(&text);
        for c in text.chars() {
            if rng.below(8) == 0 {
                typed.backspace();
            }
            for f in typed.push(c) {
                let t = typed.text();
                assert!(
                    t.is_char_boundary(f.span.start)
                        && t.is_char_boundary(f.span.end)
                        && f.span.end <= t.len()
                );
            }
        }
        if round % 50 == 0 {
            typed.flush();
            typed.reset();
        }
    }
}

#[test]
fn typed_agrees_with_batch_matching() {
    let m = matcher();
    let mut rng = Rng(0x7777_0000_1111_2222);
    for _ in 0..3_000 {
        let text = random_text(&mut rng).replace(['\u{0}'], " ") + " ";
        if text.chars().count() > 400 {
            continue;
        }
        let mut typed = m.typed();
        let mut got: Vec<(String, usize)> = text
            .chars()
            .flat_map(|c| typed.push(c))
            .map(|f| (f.rule_id.to_string(), f.span.start))
            .collect();
        got.extend(
            typed
                .flush()
                .into_iter()
                .map(|f| (f.rule_id.to_string(), f.span.start)),
        );
        got.sort();
        got.dedup();
        let mut want: Vec<(String, usize)> = m
            .find(Scope::Typed, &text)
            .into_iter()
            .map(|f| (f.rule_id.to_string(), f.span.start))
            .collect();
        want.sort();
        want.dedup();
        for w in &want {
            assert!(
                got.contains(w),
                "typed missed {w:?} in {text:?}: got {got:?}"
            );
        }
    }
}
