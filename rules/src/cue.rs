//! Cues: words near a match (or anywhere in the text) that raise or lower its weight.
//!
//! Negation (`i don't hate`), reported speech (`the article says`), counter-speech
//! (`stop saying`) and lesson, news, game, sport and support-service contexts are cues
//! with negative weights. A match's score is its term's weight plus the weights of the
//! cues found within `before` words before it, `after` words after it, or inside it (a
//! negator in a pattern's gap); cues marked
//! `anywhere` count once per category for the line they are on (a chat message, a paragraph). A category alerts when the sum
//! of its matches' positive scores, plus its `anywhere` cues, reaches its threshold.
//!
//! `within` bounds a cue group: a `before`/`after` window stops at the end of the
//! sentence by default (`within = "line"`: at the end of the line; `within = "clause"`: at
//! a comma, semicolon, spaced dash or 'but' too), and an `anywhere` cue describes its line
//! by default (`within = "sentence"` or `"clause"`: only that). A cue inside a word
//! pattern's match counts when it reaches into one of the pattern's gaps (`they are not
//! lazy`), not when the pattern's own words or list entries make it up (`{group} are not
//! welcome`).
//!
//! `question = true` makes a group count only in a question (see `clause`); `cancels`
//! names lowering groups that do not lower a match the group stands beside (an
//! endorsement beside a match is not a lesson about it).

use crate::clause::Stretches;
use crate::compile::LazyPattern;
pub(crate) use crate::cue_roles::{declared_roles, role_problem, RoleBits};
use crate::normalise::Normalised;
use crate::pack::Problem;
use crate::pattern::ListEntries;
use crate::phrases::PhrasesBuilder;
use crate::wordlist::expand;
use crate::{is_category, CATEGORIES};
use serde::Deserialize;
use smallvec::SmallVec;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use toml::Spanned;

/// Largest `before` or `after` window, in words.
pub const MAX_CUE_WINDOW: usize = 30;
/// Largest absolute weight of a cue or term, and largest threshold.
pub const MAX_WEIGHT: f64 = 10.0;

/// Most distinct term roles a pack may name (a role is a bit in a mask).
pub const MAX_ROLES: usize = 16;

/// The stretch of text a cue group reaches: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Within {
    Clause,
    Sentence,
    Line,
}

impl Within {
    const NAMES: [(&'static str, Within); 3] = [
        ("clause", Within::Clause),
        ("sentence", Within::Sentence),
        ("line", Within::Line),
    ];

    /// The default: windows stop at a sentence end, `anywhere` cues cover their line.
    pub fn default_for(anywhere: bool) -> Within {
        if anywhere {
            Within::Line
        } else {
            Within::Sentence
        }
    }
}

/// One cue group as written in the pack.
#[derive(Clone, Debug, PartialEq)]
pub struct Cue {
    pub name: String,
    /// Phrases as written; `{list}` names a word list.
    pub phrases: Vec<String>,
    /// Categories it applies to (empty: all).
    pub categories: Vec<String>,
    pub weight: f32,
    pub before: usize,
    pub after: usize,
    pub anywhere: bool,
    /// Where it counts: its clause, its sentence or its line.
    pub within: Within,
    /// The term roles it lowers (`lowers = ["topic"]`; empty: every match).
    pub lowers: Vec<String>,
    /// Cue groups (by name) that do not lower a match this group stands beside.
    pub cancels: Vec<String>,
    /// Counts only in a question (a sentence with a `?`, or one it begins).
    pub question: bool,
    pub note: Option<String>,
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCue {
    pub(crate) name: String,
    phrases: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) categories: Vec<Spanned<String>>,
    pub(crate) weight: Spanned<f64>,
    #[serde(default)]
    before: Option<Spanned<i64>>,
    #[serde(default)]
    after: Option<Spanned<i64>>,
    #[serde(default)]
    anywhere: bool,
    #[serde(default)]
    within: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) lowers: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) cancels: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    question: bool,
    #[serde(default)]
    note: Option<String>,
}

/// Validate the raw cue groups against the pack's word lists and the (category, role)
/// pairs its term groups declare.
pub(crate) fn parse_cues(
    raw: &[Spanned<RawCue>],
    lists: &BTreeMap<String, ListEntries>,
    roles: &BTreeSet<(String, String)>,
    line: &dyn Fn(usize) -> usize,
    problems: &mut Vec<Problem>,
) -> Vec<Cue> {
    let mut out = Vec::new();
    for group in raw {
        let at = line(group.span().start);
        let g = group.get_ref();
        let mut problem = |line: usize, message: String| problems.push(Problem { line, message });
        let weight = *g.weight.get_ref();
        // A group that only cancels others may weigh nothing itself.
        let zero_ok = g.cancels.is_some() && weight == 0.0;
        if !(weight.is_finite() && (weight != 0.0 || zero_ok) && weight.abs() <= MAX_WEIGHT) {
            problem(
                line(g.weight.span().start),
                format!("cue weight {weight} is out of range: use a non-zero number from -{MAX_WEIGHT} to {MAX_WEIGHT} (0 only for a group with `cancels`)"),
            );
        }
        let mut window = |v: &Option<Spanned<i64>>, what: &str| match v {
            None => 0,
            Some(s) if (0..=MAX_CUE_WINDOW as i64).contains(s.get_ref()) => *s.get_ref() as usize,
            Some(s) => {
                problem(
                    line(s.span().start),
                    format!(
                        "cue `{what}` {} is out of range: use 0 to {MAX_CUE_WINDOW} words",
                        s.get_ref()
                    ),
                );
                0
            }
        };
        let before = window(&g.before, "before");
        let after = window(&g.after, "after");
        if !g.anywhere && before == 0 && after == 0 {
            problem(at, format!("cue `{}` can never apply: give it `before`, `after` (words) or `anywhere = true`", g.name));
        }
        let within = match &g.within {
            None => Within::default_for(g.anywhere),
            Some(w) => match Within::NAMES.iter().find(|(n, _)| n == w.get_ref()) {
                Some((_, v)) => *v,
                None => {
                    problem(
                        line(w.span().start),
                        format!(
                            "cue `within` \"{}\" is not known: use \"clause\", \"sentence\" or \"line\"",
                            w.get_ref()
                        ),
                    );
                    Within::default_for(g.anywhere)
                }
            },
        };
        let mut categories = Vec::new();
        for c in &g.categories {
            if is_category(c.get_ref()) {
                categories.push(c.get_ref().clone());
            } else {
                problem(
                    line(c.span().start),
                    format!(
                        "unknown category `{}`: use one of {}",
                        c.get_ref(),
                        CATEGORIES.join(", ")
                    ),
                );
            }
        }
        if g.phrases.is_empty() {
            problem(
                at,
                format!("cue `{}` has no phrases: add some or remove it", g.name),
            );
        }
        let lowers = crate::cue_roles::parse_lowers(g, &categories, roles, line, &mut problem);
        let mut phrases = Vec::new();
        for p in &g.phrases {
            match expand(std::slice::from_ref(p.get_ref()), lists) {
                Ok(n) if n.iter().all(|s| !s.is_empty()) => phrases.push(p.get_ref().clone()),
                Ok(_) => problem(
                    line(p.span().start),
                    format!(
                        "cue phrase `{}` has no letters or digits: remove it",
                        p.get_ref()
                    ),
                ),
                Err(e) => problem(line(p.span().start), e),
            }
        }
        out.push(Cue {
            name: g.name.clone(),
            phrases,
            categories,
            weight: weight as f32,
            before,
            after,
            anywhere: g.anywhere,
            within,
            lowers,
            cancels: Vec::new(),
            question: g.question,
            note: g.note.clone(),
            line: at,
        });
    }
    crate::cue_cancel::parse_cancels(raw, &mut out, line, problems);
    out
}

#[derive(Debug)]
struct CompiledCue {
    name: String,
    weight: f32,
    before: usize,
    after: usize,
    anywhere: bool,
    /// The stretch its windows (or, `anywhere`, its reach) stop at.
    within: Within,
    /// Bit per index in [`CATEGORIES`].
    categories: u16,
    /// The term roles it lowers, one bit each (0: every match).
    lowers: u16,
    /// The groups it stops from lowering a match beside it (indices).
    cancels: Box<[u32]>,
    /// Counts only in a question.
    question: bool,
}

/// A cue found in a text.
#[derive(Clone, Debug, PartialEq)]
pub struct CueHit {
    /// The cue group's name.
    pub name: String,
    pub weight: f32,
    /// Byte span in the normalised text.
    pub span: Range<usize>,
}

/// An `anywhere` cue found in a text.
pub(crate) struct AnywhereCue {
    /// Its categories' bits.
    pub(crate) categories: u16,
    /// The normalised bytes it describes (its line, sentence or clause): it counts for a
    /// category with a match there.
    pub(crate) reach: Range<usize>,
    /// The term roles it lowers (0: every match).
    pub(crate) lowers: u16,
    /// The categories it does not lower: a group that cancels it stands beside one of
    /// their matches.
    pub(crate) cancelled: u16,
    pub(crate) hit: CueHit,
}

/// A match that cues may apply to.
pub(crate) struct CueTarget<'a> {
    /// Byte span in the normalised text.
    pub(crate) span: Range<usize>,
    /// The bit of its category.
    pub(crate) category_bit: u16,
    /// For a word pattern, its regex (`None` for a word or phrase term).
    pub(crate) pattern: Option<&'a LazyPattern>,
    /// The bit of its term's role (0: none).
    pub(crate) role_bit: u16,
}

/// The compiled cues of a pack (their phrases are in the pack's phrase automaton).
#[derive(Debug, Default)]
pub(crate) struct CueSet {
    cues: Vec<CompiledCue>,
}

/// How many word boundaries lie in `text[from..to]` (the difference between the indices
/// of the words holding `to` and `from`): counted where needed, no index of the text built.
fn words_between(text: &str, from: usize, to: usize) -> usize {
    text.as_bytes()
        .get(from..to)
        .map_or(0, |b| b.iter().filter(|&&c| c == b' ').count())
}

impl CueSet {
    /// Compile the cue groups and put their phrases in `phrases`.
    pub(crate) fn compile(
        cues: &[Cue],
        lists: &BTreeMap<String, ListEntries>,
        roles: &RoleBits,
        phrases: &mut PhrasesBuilder,
    ) -> Result<CueSet, String> {
        let mut compiled = Vec::new();
        for (i, cue) in cues.iter().enumerate() {
            for p in expand(&cue.phrases, lists)? {
                phrases.cue(&p, i as u32);
            }
            let categories = if cue.categories.is_empty() {
                u16::MAX
            } else {
                cue.categories
                    .iter()
                    .fold(0u16, |acc, c| acc | category_bit(c))
            };
            let cancels = (0..cues.len() as u32)
                .filter(|&j| cue.cancels.contains(&cues[j as usize].name))
                .collect();
            compiled.push(CompiledCue {
                name: cue.name.clone(),
                weight: cue.weight,
                before: cue.before,
                after: cue.after,
                anywhere: cue.anywhere,
                within: cue.within,
                categories,
                lowers: cue.lowers.iter().fold(0, |m, r| m | roles.bit(r)),
                cancels,
                question: cue.question,
            });
        }
        Ok(CueSet { cues: compiled })
    }

    /// Whether a cue typed after a match (or found anywhere in the text) can lower a
    /// match of the category with bit `category_bit`: a cue of negative weight with an
    /// `after` window or `anywhere`, for that category or for every one.
    pub(crate) fn may_lower_later(&self, category_bit: u16) -> bool {
        self.cues.iter().any(|c| {
            c.weight < 0.0 && (c.after > 0 || c.anywhere) && c.categories & category_bit != 0
        })
    }

    /// For each of `hits`, the local cues that apply (each cue group once), and the
    /// `anywhere` cues in the text. A window stops at the end of the clause, sentence or
    /// line of its group's `within`. Only a pattern's match can hold a cue inside it, in
    /// a gap; a phrase written with a negator in it ('the holocaust never happened')
    /// means it, and so does a pattern whose own words make up the cue ('{group} are not
    /// welcome'). `occurrences` are the cue phrases in the text on word boundaries (cue
    /// index, span), in order of their end; `original` is the text `n` was normalised
    /// from (clauses and questions are read from it).
    pub(crate) fn find(
        &self,
        n: &Normalised,
        original: &str,
        occurrences: &[(u32, Range<usize>)],
        hits: &[CueTarget],
    ) -> (Vec<Vec<CueHit>>, Vec<AnywhereCue>) {
        let text = n.as_str();
        let mut local = vec![Vec::new(); hits.len()];
        let mut anywhere: Vec<AnywhereCue> = Vec::new();
        if occurrences.is_empty() {
            return (local, anywhere);
        }
        let stretches = Stretches::new(n, original);
        // The spans each pattern match's gaps skipped, found when a cue is inside it.
        // All four are filled in only when needed (most texts need none of them).
        let mut gaps: Vec<Option<Vec<Range<usize>>>> = Vec::new();
        // The groups cancelled beside each match.
        let mut cancelled: Vec<SmallVec<[u32; 2]>> = Vec::new();
        // Inside each pattern match: the cues in its gaps, and the groups its own words
        // make up (their cues in its gaps do not count).
        let mut in_gaps: Vec<SmallVec<[CueHit; 1]>> = Vec::new();
        let mut own: Vec<SmallVec<[u32; 2]>> = Vec::new();
        let sized = |n: usize| n == hits.len();
        for (c, span) in occurrences {
            let cue = &self.cues[*c as usize];
            if cue.question && !stretches.in_question(span) {
                continue;
            }
            let hit = || CueHit {
                name: cue.name.clone(),
                weight: cue.weight,
                span: span.clone(),
            };
            if cue.anywhere && cue.cancels.is_empty() {
                anywhere.push(AnywhereCue {
                    categories: cue.categories,
                    reach: stretches.around(cue.within, span.start),
                    lowers: cue.lowers,
                    cancelled: 0,
                    hit: hit(),
                });
                continue;
            }
            for (i, target) in hits.iter().enumerate() {
                let h = &target.span;
                if cue.categories & target.category_bit == 0
                    || (cue.lowers != 0 && cue.lowers & target.role_bit == 0)
                {
                    continue;
                }
                let overlaps = span.start < h.end && h.start < span.end;
                let inside = span.start >= h.start && span.end <= h.end;
                let near = if !cue.cancels.is_empty() && (overlaps || cue.anywhere) {
                    // A group that cancels counts anywhere in the match, or its stretch.
                    overlaps || stretches.same(cue.within, span.start, h.start)
                } else if overlaps && inside {
                    // Inside, only in a gap of a pattern; made up of the pattern's own
                    // words, its group does not lower the match from its gaps.
                    let Some(p) = target.pattern else { continue };
                    if !sized(gaps.len()) {
                        gaps.resize(hits.len(), None);
                        in_gaps.resize(hits.len(), SmallVec::new());
                        own.resize(hits.len(), SmallVec::new());
                    }
                    let gap = gaps[i]
                        .get_or_insert_with(|| p.gaps(text, h))
                        .iter()
                        .find(|g| span.start < g.end && g.start < span.end)
                        .cloned();
                    match gap {
                        // It is about the pattern's words after the gap: in their stretch
                        // (a negator in another clause is not), or reaching into them.
                        Some(g)
                            if span.end > g.end
                                || stretches.same(cue.within, span.end - 1, g.end) =>
                        {
                            in_gaps[i].push(hit())
                        }
                        Some(_) => {}
                        None => own[i].push(*c),
                    }
                    continue;
                } else if overlaps {
                    // Across an edge it is next to the match.
                    true
                } else {
                    self.beside(cue, &stretches, span, h.start, h.end)
                };
                if !near || local[i].iter().any(|x: &CueHit| x.name == cue.name) {
                    continue;
                }
                if !cue.cancels.is_empty() {
                    if !sized(cancelled.len()) {
                        cancelled.resize(hits.len(), SmallVec::new());
                    }
                    cancelled[i].extend(cue.cancels.iter().copied());
                }
                local[i].push(hit());
            }
        }
        for (i, found) in in_gaps.into_iter().enumerate() {
            for x in found {
                if !self.named(&own[i], &x.name) && !local[i].iter().any(|y| y.name == x.name) {
                    local[i].push(x);
                }
            }
        }
        if !cancelled.is_empty() {
            self.cancel(&cancelled, hits, &mut local, &mut anywhere);
        }
        (local, anywhere)
    }

    /// Whether a cue at `span` is within its `before` window of words starting at `next`,
    /// or its `after` window of words ending at `last`, in the same stretch (beside the
    /// match `next..last`).
    fn beside(
        &self,
        cue: &CompiledCue,
        stretches: &Stretches,
        span: &Range<usize>,
        next: usize,
        last: usize,
    ) -> bool {
        let text = stretches.text();
        (span.end <= next
            && words_between(text, span.end - 1, next) <= cue.before
            && stretches.same(cue.within, span.end - 1, next))
            || (span.start >= last
                && words_between(text, last.saturating_sub(1), span.start) <= cue.after
                && stretches.same(cue.within, last.saturating_sub(1), span.start))
    }

    /// Whether one of `groups` (indices) is named `name`.
    fn named(&self, groups: &[u32], name: &str) -> bool {
        groups.iter().any(|&g| self.cues[g as usize].name == name)
    }

    /// Drop the cues that a group beside a match cancels: from its local cues, and the
    /// `anywhere` cues from its category.
    fn cancel(
        &self,
        cancelled: &[SmallVec<[u32; 2]>],
        hits: &[CueTarget],
        local: &mut [Vec<CueHit>],
        anywhere: &mut [AnywhereCue],
    ) {
        for (i, groups) in cancelled.iter().enumerate() {
            if groups.is_empty() {
                continue;
            }
            local[i].retain(|c| !self.named(groups, &c.name));
            for a in anywhere.iter_mut() {
                if self.named(groups, &a.hit.name) {
                    a.cancelled |= hits[i].category_bit;
                }
            }
        }
    }
}

/// The bit of a category id in a category mask (0 for an unknown id).
pub(crate) fn category_bit(id: &str) -> u16 {
    CATEGORIES
        .iter()
        .position(|c| *c == id)
        .map(|i| 1u16 << i)
        .unwrap_or(0)
}
