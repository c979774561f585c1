//! Matcher benchmarks against a generated 10,000-term pack.
//!
//! Targets (issue 3): compile <= 150 ms; an 80-character window title, normalisation
//! included, p50 <= 3 us; typed matching <= 2 us per character; bulk English text,
//! normalisation included, >= 50 MB/s, printed beside a plain Aho-Corasick DFA over the
//! same terms with no normalisation (ratio aim >= 0.3).

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tutela_rules::{CompileOptions, Matcher, Pack, Scope, CATEGORIES};

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

const ENGLISH: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "each",
    "she",
    "which",
    "do",
    "their",
    "time",
    "if",
    "will",
    "way",
    "about",
    "many",
    "then",
    "them",
    "write",
    "would",
    "like",
    "so",
    "these",
    "her",
    "long",
    "make",
    "thing",
    "see",
    "him",
    "two",
    "has",
    "look",
    "more",
    "day",
    "could",
    "go",
    "come",
    "did",
    "number",
    "sound",
    "no",
    "most",
    "people",
    "my",
    "over",
    "know",
    "water",
    "than",
    "call",
    "first",
    "who",
    "may",
    "down",
    "side",
    "been",
    "now",
    "find",
    "homework",
    "school",
    "teacher",
    "lesson",
    "Minecraft",
    "football",
    "maths",
    "science",
    "history",
    "friends",
    "tomorrow",
    "weekend",
    "YouTube",
    "project",
];

fn syllable(rng: &mut Rng) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvwz";
    const V: &[u8] = b"aeiou";
    let mut s = String::new();
    s.push(C[rng.below(C.len())] as char);
    s.push(V[rng.below(V.len())] as char);
    if rng.below(2) == 0 {
        s.push(C[rng.below(C.len())] as char);
    }
    s
}

fn generated_term(rng: &mut Rng) -> String {
    let words = 1 + usize::from(rng.below(3) == 0);
    (0..words)
        .map(|_| {
            (0..2 + rng.below(3))
                .map(|_| syllable(rng))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A pack of 10,000 generated terms over the twelve categories, with exceptions, a few
/// regexes and domains; also returns the literal terms for the baseline automaton.
fn generated_pack() -> (String, Vec<String>) {
    let mut rng = Rng(0xBE0C_4000_0000_0001);
    let mut toml = String::from(
        "[pack]\nid = \"bench\"\nname = \"Bench\"\nversion = 1\nlanguage = \"en-GB\"\n\n",
    );
    let mut all = Vec::new();
    let per = 10_000 / CATEGORIES.len() + 1;
    let mut seen = std::collections::HashSet::new();
    for (i, cat) in CATEGORIES.iter().enumerate() {
        toml.push_str(&format!(
            "[categories.{cat}]\nseverity = {}\ndomains = [\"bad{i}.example\"]\n\n",
            1 + i % 5
        ));
        let mut terms = Vec::new();
        while terms.len() < per && all.len() < 10_000 {
            let t = generated_term(&mut rng);
            if seen.insert(t.clone()) {
                terms.push(t.clone());
                all.push(t);
            }
        }
        let kind = if i % 3 == 0 { "prefix" } else { "phrase" };
        toml.push_str(&format!(
            "[[terms]]\ncategory = \"{cat}\"\nkind = \"{kind}\"\nterms = [{}]\n\n",
            terms
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    toml.push_str("[[terms]]\ncategory = \"weapons\"\nkind = \"regex\"\nterms = ['\\bgun ?s(?:hop|tore)\\b', '\\bknife \\d+ ?cm\\b']\n\n");
    let exceptions: Vec<String> = (0..200)
        .map(|_| {
            format!(
                "\"{} {}\"",
                generated_term(&mut rng),
                generated_term(&mut rng)
            )
        })
        .collect();
    toml.push_str(&format!(
        "[[exceptions]]\nphrases = [{}]\n",
        exceptions.join(", ")
    ));
    (toml, all)
}

fn english_text(bytes: usize, terms: &[String]) -> String {
    let mut rng = Rng(0x7E47_0000_0000_0002);
    let mut s = String::with_capacity(bytes + 64);
    while s.len() < bytes {
        if rng.below(400) == 0 {
            s.push_str(&terms[rng.below(terms.len())]);
        } else {
            s.push_str(ENGLISH[rng.below(ENGLISH.len())]);
        }
        s.push_str(match rng.below(12) {
            0 => ". ",
            1 => ", ",
            _ => " ",
        });
    }
    s
}

fn title(terms: &[String]) -> String {
    let mut t = format!(
        "Year 10 homework - how do I {} in Minecraft? - Google Search - Mozilla",
        terms[42]
    );
    while t.chars().count() < 80 {
        t.push('!');
    }
    t.chars().take(80).collect()
}

fn median<F: FnMut()>(mut f: F, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn benches(c: &mut Criterion) {
    let (toml, terms) = generated_pack();
    let pack = Pack::parse(&toml, "bench.toml").expect("generated pack parses");
    let opts = CompileOptions::default();
    let matcher = Arc::new(Matcher::compile(&pack, &opts).expect("generated pack compiles"));
    assert!(matcher.term_count() >= 10_000);

    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.bench_function("compile_10k_terms", |b| {
        b.iter(|| Matcher::compile(black_box(&pack), &opts).unwrap())
    });
    g.finish();

    let title = title(&terms);
    assert_eq!(matcher.find(Scope::Title, &title).len(), 1);
    c.bench_function("title_80_chars", |b| {
        b.iter(|| matcher.find(Scope::Title, black_box(&title)))
    });

    let typed_text = english_text(4096, &terms);
    let chars = typed_text.chars().count() as u64;
    let mut g = c.benchmark_group("typed");
    g.throughput(Throughput::Elements(chars));
    g.bench_function("typed_per_char", |b| {
        b.iter(|| {
            let mut t = matcher.typed();
            let mut n = 0;
            for ch in typed_text.chars() {
                n += t.push(ch).len();
            }
            black_box(n)
        })
    });
    g.finish();

    let bulk = english_text(1 << 20, &terms);
    let baseline = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(true)
        .build(&terms)
        .unwrap();
    let mut g = c.benchmark_group("bulk");
    g.throughput(Throughput::Bytes(bulk.len() as u64));
    g.sample_size(20);
    g.bench_function("normalise_and_match", |b| {
        b.iter(|| matcher.find(Scope::Typed, black_box(&bulk)).len())
    });
    g.bench_function("plain_dfa_baseline", |b| {
        b.iter(|| baseline.find_overlapping_iter(black_box(&bulk)).count())
    });
    g.finish();

    // One summary block with the targets, measured here with plain timers.
    let compile = median(|| drop(Matcher::compile(&pack, &opts).unwrap()), 9);
    let title_p50 = {
        let mut v: Vec<Duration> = (0..20_001)
            .map(|_| {
                let t = Instant::now();
                black_box(matcher.find(Scope::Title, black_box(&title)));
                t.elapsed()
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    };
    let typed = median(
        || {
            let mut t = matcher.typed();
            for ch in typed_text.chars() {
                black_box(t.push(ch));
            }
        },
        51,
    );
    let ours = median(
        || {
            black_box(matcher.find(Scope::Typed, &bulk));
        },
        11,
    );
    let plain = median(
        || {
            black_box(baseline.find_overlapping_iter(&bulk).count());
        },
        11,
    );
    let mbps = |d: Duration| bulk.len() as f64 / d.as_secs_f64() / 1e6;
    println!("\nsummary (targets from issue 3):");
    println!(
        "  compile 10k terms: {:.1} ms (target <= 150 ms)",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  80-char title p50: {:.2} us (target <= 3 us)",
        title_p50.as_secs_f64() * 1e6
    );
    println!(
        "  typed: {:.3} us per char (target <= 2 us)",
        typed.as_secs_f64() * 1e6 / chars as f64
    );
    println!(
        "  bulk: {:.1} MB/s normalised vs {:.1} MB/s plain DFA, ratio {:.2} (target >= 50 MB/s, ratio aim >= 0.3)",
        mbps(ours),
        mbps(plain),
        plain.as_secs_f64() / ours.as_secs_f64()
    );
}

criterion_group! {
    name = matcher;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(matcher);
