//! Cue groups that cancel others: `cancels = ["lesson", "news headline"]` on a group of
//! weight 0 or above. Where one of its phrases stands beside a match (within its window,
//! inside the match, or in its stretch for an `anywhere` group), the named groups do not
//! lower that match, and their `anywhere` cues do not lower its category: 'the nazis were
//! right to exterminate the jews' is an endorsement, not a history lesson, though it names
//! 'the nazis'.

use crate::cue::{Cue, RawCue};
use crate::pack::Problem;
use toml::Spanned;

/// Check each group's `cancels` against the pack's cue groups and fill in
/// [`Cue::cancels`]: the names must be other groups of negative weight that share a
/// category with it, and the group itself must not lower.
pub(crate) fn parse_cancels(
    raw: &[Spanned<RawCue>],
    cues: &mut [Cue],
    line: &dyn Fn(usize) -> usize,
    problems: &mut Vec<Problem>,
) {
    for (i, group) in raw.iter().enumerate() {
        let Some(cancels) = &group.get_ref().cancels else {
            continue;
        };
        let at = line(cancels.span().start);
        let Some(cue) = cues.get(i) else { continue };
        let name = cue.name.clone();
        let mut problem = |line: usize, message: String| problems.push(Problem { line, message });
        if cancels.get_ref().is_empty() {
            problem(at, format!("cue `{name}` has an empty `cancels`: name the cue groups it stops from lowering a match, or leave `cancels` out"));
        }
        if cue.weight < 0.0 {
            problem(at, format!("cue `{name}` lowers (weight below 0) but has `cancels`: a group that cancels others says a match is meant; give it weight 0 or above"));
        }
        let mut names = Vec::new();
        for other in cancels.get_ref() {
            let wanted = other.get_ref();
            let at = line(other.span().start);
            let named: Vec<&Cue> = cues.iter().filter(|c| &c.name == wanted).collect();
            let message = if wanted == &name {
                Some(format!(
                    "cue `{name}` cancels itself: name other cue groups"
                ))
            } else if named.is_empty() {
                Some(format!("cue `{name}` cancels `{wanted}`, but no cue group is named `{wanted}`: use the `name` of a cue group of this pack"))
            } else if named.iter().any(|c| c.weight > 0.0) {
                Some(format!("cue `{name}` cancels `{wanted}`, which raises (weight above 0): only a group that lowers can be cancelled"))
            } else if !named.iter().all(|c| shares_category(cue, c)) {
                Some(format!("cue `{name}` cancels `{wanted}`, but they share no category: list a category of `{wanted}` in `categories`, or remove it from `cancels`"))
            } else {
                None
            };
            match message {
                Some(m) => problem(at, m),
                None if !names.contains(wanted) => names.push(wanted.clone()),
                None => {}
            }
        }
        if let Some(cue) = cues.get_mut(i) {
            cue.cancels = names;
        }
    }
}

/// Whether two cue groups apply to a category in common (no `categories`: every one).
fn shares_category(a: &Cue, b: &Cue) -> bool {
    a.categories.is_empty()
        || b.categories.is_empty()
        || a.categories.iter().any(|c| b.categories.contains(c))
}
