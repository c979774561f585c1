//! The comparison binary of `rules/perf/against-filed.sh`: the matcher and en-GB pack as
//! filed (issue 13), the current matcher with the shipped pack, and the current matcher with
//! the filed pack, timed in turn in one process. See the script.

mod texts;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// p50 and p99 in microseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

/// Times 40,000 titles in turn and 2,000 typed windows; the same code for both crates.
macro_rules! timed {
    ($matcher:expr, $title:expr) => {{
        let matcher = &$matcher;
        let titles = texts::titles();
        let mut title_times = Vec::with_capacity(40_000);
        for i in 0..40_000 {
            let start = Instant::now();
            black_box(matcher.find($title, black_box(&titles[i % titles.len()])));
            title_times.push(start.elapsed());
        }
        let mut typed_times = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            let start = Instant::now();
            let mut typed = matcher.typed();
            for ch in texts::TYPED.chars() {
                black_box(typed.push(ch));
            }
            black_box(typed.flush());
            typed_times.push(start.elapsed());
        }
        (percentiles(title_times), percentiles(typed_times))
    }};
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, filed_pack, shipped_pack, rounds] = args.as_slice() else {
        eprintln!("usage: compare <filed pack> <shipped pack> <rounds>");
        std::process::exit(2);
    };
    let rounds: usize = rounds.parse().expect("rounds: a number");
    let load_filed = |p: &str| {
        let pack = filed::Pack::load(Path::new(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        Arc::new(filed::Matcher::compile(&pack, &filed::CompileOptions::default()).unwrap())
    };
    let load_now = |p: &str| {
        let pack = now::Pack::load(Path::new(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        Arc::new(now::Matcher::compile(&pack, &now::CompileOptions::default()).unwrap())
    };
    let as_filed = load_filed(filed_pack);
    let shipped = load_now(shipped_pack);
    let filed_pack_now = load_now(filed_pack);
    println!(
        "filed matcher with en-GB v{}; current matcher with en-GB v{} and v{}",
        as_filed.version(),
        shipped.version(),
        filed_pack_now.version()
    );
    println!("round | title p50/p99 us: filed, current, current+v1 | typed p50/p99 us: the same | p99 ratio current/filed: title, typed | current/current+v1: title, typed");
    for round in 0..rounds {
        let (ft, fw) = timed!(as_filed, filed::Scope::Title);
        let (st, sw) = timed!(shipped, now::Scope::Title);
        let (ot, ow) = timed!(filed_pack_now, now::Scope::Title);
        println!(
            "{round} | {:.2}/{:.2} {:.2}/{:.2} {:.2}/{:.2} | {:.0}/{:.0} {:.0}/{:.0} {:.0}/{:.0} | {:.2} {:.2} | {:.2} {:.2}",
            ft.0, ft.1, st.0, st.1, ot.0, ot.1, fw.0, fw.1, sw.0, sw.1, ow.0, ow.1,
            st.1 / ft.1, sw.1 / fw.1, st.1 / ot.1, sw.1 / ow.1
        );
    }
}
