//! Weighing: turns a text's raw matches into alerts with term weights, cues and each
//! category's threshold (see `cue` for the rules). Most packs' terms weigh 1 against a
//! threshold of 1 and have no cue nearby, so this costs nothing on most text.

use crate::cue::{CueHit, CueTarget};
use crate::matcher::{Hit, Match, Matcher};
use crate::normalise::Normalised;
use crate::pack::TermKind;
use crate::CATEGORIES;
use smallvec::SmallVec;

/// How one match was weighed: for `tutela-rules test`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weighed {
    pub matched: Match,
    /// The term's weight.
    pub weight: f32,
    /// Cues near it that changed its score.
    pub cues: Vec<CueHit>,
    /// Weight plus cues.
    pub score: f32,
}

/// A category's score in one text: for `tutela-rules test`.
#[derive(Clone, Debug, PartialEq)]
pub struct CategoryScore {
    pub category: String,
    pub score: f32,
    pub threshold: f32,
    /// Cues found anywhere in the text that changed the score.
    pub anywhere: Vec<CueHit>,
    pub alerted: bool,
}

/// Raw weighing of hits, before they are turned into matches.
#[derive(Debug, Default)]
pub(crate) struct Weighing {
    /// (hit, weight, local cues, score), for every hit weighed.
    pub(crate) hits: Vec<(Hit, f32, Vec<CueHit>, f32)>,
    /// (category index, score, threshold, anywhere cues, alerted).
    pub(crate) categories: Vec<(usize, f32, f32, Vec<CueHit>, bool)>,
}

impl Matcher {
    /// Keep the hits whose category reaches its threshold; with `explain`, say how.
    /// `cue_occurrences` are the cue phrases in the text (cue index, span), by end;
    /// `original` is the text `n` was normalised from.
    pub(crate) fn weigh(
        &self,
        n: &Normalised,
        original: &str,
        hits: Vec<Hit>,
        explain: bool,
        cue_occurrences: &[(u32, std::ops::Range<usize>)],
    ) -> (Vec<Hit>, Weighing) {
        let text = n.as_str();
        let mut weighing = Weighing::default();
        if !self.needs_weighing() {
            return (hits, weighing);
        }
        if !explain && cue_occurrences.is_empty() && self.each_category_reached(&hits) {
            let mut hits = hits;
            hits.retain(|h| self.rules[h.rule as usize].weight > 0.0);
            return (hits, weighing);
        }
        // Small vectors on the stack: a text rarely has more than a few matches, and
        // weighing runs on every text that has one.
        // No cue in the text (most texts): no per-hit cue lists are allocated.
        let (local, anywhere) = if cue_occurrences.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let spans: SmallVec<[CueTarget; 8]> = hits
                .iter()
                .map(|h| {
                    let rule = &self.rules[h.rule as usize];
                    CueTarget {
                        span: h.norm.clone(),
                        category_bit: rule.category_bit,
                        pattern: (rule.kind == TermKind::Pattern)
                            .then(|| self.pattern_of(h.rule))
                            .flatten(),
                        role_bit: rule.role_bit,
                    }
                })
                .collect();
            self.cues.find(n, original, cue_occurrences, &spans)
        };
        let cues_of = |i: usize| local.get(i).map_or(&[][..], Vec::as_slice);
        let scores: SmallVec<[f32; 8]> = hits
            .iter()
            .enumerate()
            .map(|(i, h)| {
                self.rules[h.rule as usize].weight
                    + cues_of(i).iter().map(|c| c.weight).sum::<f32>()
            })
            .collect();
        // Which hits are kept: the hits come ordered by position, and keeping them in
        // place keeps that order.
        let mut kept: SmallVec<[bool; 8]> = SmallVec::from_elem(false, hits.len());
        let present = hits
            .iter()
            .fold(0u16, |m, h| m | self.rules[h.rule as usize].category_bit);
        // The categories with a hit, in the order of [`CATEGORIES`].
        let mut rest = present & ((1 << CATEGORIES.len()) - 1);
        while rest != 0 {
            let cat_index = rest.trailing_zeros() as usize;
            let bit = 1u16 << cat_index;
            rest &= !bit;
            let members: SmallVec<[usize; 8]> = (0..hits.len())
                .filter(|&i| self.rules[hits[i].rule as usize].category_bit == bit)
                .collect();
            if members.is_empty() {
                continue;
            }
            // The same words count once: two rules matching exactly the same words count at
            // the better score, and one rule matching the same words again adds nothing (a
            // word repeated is not more evidence; different words, or a longer match, are).
            let mut by_span: SmallVec<[usize; 8]> = SmallVec::new();
            for &i in &members {
                match by_span.iter_mut().find(|j| hits[**j].norm == hits[i].norm) {
                    Some(j) if scores[i] > scores[*j] => *j = i,
                    Some(_) => {}
                    None => by_span.push(i),
                }
            }
            // A match inside a longer one that scores as well adds nothing ('suicide' in
            // 'commit suicide'); a weaker longer one adds to it ('isis' near 'attack').
            let inner = |i: usize| {
                by_span.iter().any(|&j| {
                    let (a, b) = (&hits[i].norm, &hits[j].norm);
                    j != i
                        && b.start <= a.start
                        && a.end <= b.end
                        && a != b
                        && scores[j] >= scores[i]
                })
            };
            let outer: SmallVec<[usize; 8]> =
                by_span.iter().copied().filter(|&i| !inner(i)).collect();
            let mut distinct: SmallVec<[(u32, &str, f32); 8]> = SmallVec::new();
            for i in outer {
                let key = (hits[i].rule, text.get(hits[i].norm.clone()).unwrap_or(""));
                match distinct.iter_mut().find(|(r, t, _)| (*r, *t) == key) {
                    Some((_, _, s)) => *s = s.max(scores[i]),
                    None => distinct.push((key.0, key.1, scores[i])),
                }
            }
            let mut total: f32 = distinct.iter().map(|(_, _, s)| s.max(0.0)).sum();
            // A text-wide cue describes the line it is on (a chat message, a paragraph), or
            // with `within` its sentence or clause: it counts, once, when it shares that
            // with one of this category's matches (one of the roles it lowers, if it names
            // some).
            let shares = |reach: &std::ops::Range<usize>, lowers: u16| {
                members.iter().any(|&i| {
                    let h = &hits[i].norm;
                    (lowers == 0 || self.rules[hits[i].rule as usize].role_bit & lowers != 0)
                        // A match that runs across a sentence end is in each of its sentences.
                        && h.start < reach.end
                        && reach.start < h.end
                })
            };
            let mut context: Vec<CueHit> = Vec::new();
            let mut lowered: SmallVec<[f32; 8]> = SmallVec::new();
            for c in &anywhere {
                if c.categories & bit == 0
                    || c.cancelled & bit != 0
                    || context.iter().any(|x| x.name == c.hit.name)
                    || !shares(&c.reach, c.lowers)
                {
                    continue;
                }
                if c.lowers == 0 {
                    total += c.hit.weight;
                    context.push(c.hit.clone());
                    continue;
                }
                // A cue that lowers some roles takes from their matches' scores only, never
                // below zero: a supporter's words beside news of the fight keep theirs.
                if lowered.is_empty() {
                    lowered = distinct.iter().map(|(_, _, s)| s.max(0.0)).collect();
                }
                let mut need = -c.hit.weight;
                for (k, (rule, _, _)) in distinct.iter().enumerate() {
                    if self.rules[*rule as usize].role_bit & c.lowers != 0 {
                        let take = need.min(lowered[k]);
                        lowered[k] -= take;
                        need -= take;
                    }
                }
                let taken = -c.hit.weight - need;
                if taken <= 0.0 {
                    continue;
                }
                total -= taken;
                context.push(CueHit {
                    weight: -taken,
                    ..c.hit.clone()
                });
            }
            let threshold = self.thresholds[cat_index];
            let alerted = total >= threshold - 1e-4;
            if alerted {
                for &i in members.iter().filter(|&&i| scores[i] > 0.0) {
                    kept[i] = true;
                }
            }
            if explain {
                weighing
                    .categories
                    .push((cat_index, total, threshold, context, alerted));
            }
        }
        if explain {
            for (i, h) in hits.iter().enumerate() {
                let w = self.rules[h.rule as usize].weight;
                weighing
                    .hits
                    .push((h.clone(), w, cues_of(i).to_vec(), scores[i]));
            }
        }
        let mut hits = hits;
        let mut at = 0;
        hits.retain(|_| {
            at += 1;
            kept[at - 1]
        });
        (hits, weighing)
    }

    /// The regex of the word pattern of rule `rule` (patterns are in the order of rules).
    fn pattern_of(&self, rule: u32) -> Option<&crate::compile::LazyPattern> {
        let at = self
            .patterns
            .binary_search_by_key(&rule, |(r, _)| *r)
            .ok()?;
        Some(&self.patterns[at].1)
    }

    /// Whether, with no cue in the text, every category with a hit alerts because one of
    /// its hits weighs at least the threshold on its own (most texts that match: one strong
    /// term). Such a category's total is at least its best hit's score (the same words
    /// counted once keep the better score, and an inner match is dropped only for an outer
    /// one that scores as well), so [`Matcher::weigh`] keeps its hits of positive weight,
    /// and none of its bookkeeping is needed. When this is false, the full weighing decides.
    fn each_category_reached(&self, hits: &[Hit]) -> bool {
        let (mut present, mut reached) = (0u16, 0u16);
        for h in hits {
            let rule = &self.rules[h.rule as usize];
            let bit = rule.category_bit;
            // A rule of no known category is never kept: the full weighing says so.
            let Some(threshold) = self.thresholds.get(bit.trailing_zeros() as usize) else {
                return false;
            };
            present |= bit;
            if rule.weight >= threshold - 1e-4 {
                reached |= bit;
            }
        }
        present == reached
    }
}

#[cfg(test)]
mod tests {
    use crate::{CompileOptions, Matcher, Pack, Scope};

    const PACK: &str = r#"[pack]
id = "w"
name = "W"
version = 1
language = "en-GB"

[categories.suicide]
severity = 5
threshold = 0.8

[categories.bullying]
severity = 3

[[terms]]
category = "suicide"
terms = ["want to die", "end it all"]

[[terms]]
category = "suicide"
weight = 0.5
terms = ["hopeless", "worthless", "want to"]

[[terms]]
category = "bullying"
weight = 0.6
terms = ["loser", "nobody likes you"]

[[terms]]
category = "bullying"
terms = ["kill yourself"]
"#;

    /// Texts without cues, where one strong hit settles its category, skip the full
    /// weighing: what they keep is what the full weighing (run by `explain`) keeps.
    #[test]
    fn a_hit_at_the_threshold_keeps_what_full_weighing_keeps() {
        let pack = Pack::parse(PACK, "w.toml").unwrap();
        let m = Matcher::compile(&pack, &CompileOptions::default()).unwrap();
        let rules = |text: &str| -> Vec<String> {
            let found = m.find(Scope::Title, text);
            assert_eq!(found, m.explain(Scope::Title, text).matches, "{text}");
            found.iter().map(|h| h.rule_id.to_string()).collect()
        };
        for (text, want) in [
            (
                "i want to die",
                &["suicide/want to", "suicide/want to die"][..],
            ),
            ("hopeless", &[]),
            (
                "hopeless and worthless",
                &["suicide/hopeless", "suicide/worthless"],
            ),
            ("hopeless hopeless", &[]),
            ("loser", &[]),
            (
                "loser nobody likes you",
                &["bullying/loser", "bullying/nobody likes you"],
            ),
            (
                "kill yourself loser",
                &["bullying/kill yourself", "bullying/loser"],
            ),
            (
                "hopeless loser kill yourself",
                &["bullying/loser", "bullying/kill yourself"],
            ),
            (
                "end it all kill yourself hopeless",
                &[
                    "suicide/end it all",
                    "bullying/kill yourself",
                    "suicide/hopeless",
                ],
            ),
        ] {
            assert_eq!(rules(text), want, "{text}");
        }
    }
}
