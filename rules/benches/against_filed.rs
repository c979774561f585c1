//! Issue 13's speed target, in `cargo bench -p tutela-rules`: matching a typed window and an
//! 80-character title with the shipped pack at no worse than twice the p99 of the matcher and
//! pack as the issue was filed (commit d079ae9). Two versions of this crate cannot link into
//! one bench, so this bench runs `perf/against-filed.sh`, which builds the filed matcher from
//! the repository's history beside the current one and times both in one process, alternating.
//!
//! `TUTELA_FILED_ROUNDS` sets the rounds (3 by default). A filter that does not name this
//! bench (`cargo bench -p tutela-rules -- typed`) skips it, as does a test run
//! (`cargo test --benches`), which passes no `--bench`.

use std::path::Path;
use std::process::{Command, ExitCode};

const NAME: &str = "against_filed";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: bench");
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("{NAME}: skipped outside `cargo bench`");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    let rounds = std::env::var("TUTELA_FILED_ROUNDS").unwrap_or_else(|_| "3".to_owned());
    if rounds.parse::<u32>().map_or(true, |n| n == 0 || n > 50) {
        eprintln!(
            "{NAME}: TUTELA_FILED_ROUNDS must be a whole number from 1 to 50, not {rounds:?}"
        );
        return ExitCode::FAILURE;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("perf/against-filed.sh");
    println!("{NAME}: the current matcher and shipped en-GB pack against the matcher and pack as filed (d079ae9), {rounds} rounds");
    match Command::new("sh").arg(&script).arg(&rounds).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!(
                "{NAME}: {} failed ({status}); read its message above",
                script.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{NAME}: could not run {} with sh: {e}", script.display());
            ExitCode::FAILURE
        }
    }
}
