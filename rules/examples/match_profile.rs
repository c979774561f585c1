//! Match one text many times, for instruction counts under a profiler:
//!
//! ```sh
//! cargo build --release -p tutela-rules --example match_profile
//! valgrind --tool=callgrind target/release/examples/match_profile packs/en-GB.toml title 10000 "i just want to die"
//! ```
//!
//! Count only the repetitions with `--collect-atstart=no --toggle-collect='*repeat*'`
//! (or run it with 0 and with N repetitions): over N, the cost of one match, without
//! compiling the pack or building the patterns it meets. The scope is `title` or `typed` (a typed window fed one
//! character at a time, then flushed). Titles separated by `|` are matched in turn, as the
//! bench does, for cache misses (`valgrind --tool=callgrind --cache-sim=yes`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use tutela_rules::{CompileOptions, Matcher, Pack, Scope};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pack, scope, times, text] = args.as_slice() else {
        anyhow::bail!("usage: match_profile <pack.toml> <title|typed> <repetitions> <text>");
    };
    let pack = Pack::load(Path::new(pack))?;
    let matcher = Arc::new(Matcher::compile(&pack, &CompileOptions::default())?);
    let times: usize = times.parse()?;
    let titles: Vec<String> = text
        .split('|')
        .map(|t| t.chars().chain(std::iter::repeat(' ')).take(80).collect())
        .collect();
    let next = std::cell::Cell::new(0usize);
    let once = || -> anyhow::Result<()> {
        match scope.as_str() {
            "title" => {
                let title = &titles[next.get() % titles.len()];
                next.set(next.get() + 1);
                black_box(matcher.find(Scope::Title, black_box(title)));
            }
            "typed" => {
                let mut typed = matcher.typed();
                for ch in text.chars() {
                    black_box(typed.push(ch));
                }
                black_box(typed.flush());
            }
            other => anyhow::bail!("unknown scope {other}: use title or typed"),
        }
        Ok(())
    };
    // Build the lazily compiled patterns of every title once, outside the counted
    // repetitions.
    for _ in 0..titles.len() {
        once()?;
    }
    repeat(times, once)
}

/// The counted repetitions, in their own function so that a profiler can count only them
/// (`valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*repeat*'`).
#[inline(never)]
fn repeat(times: usize, once: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    for _ in 0..times {
        once()?;
    }
    Ok(())
}
