//! Letters typed one at a time: a run of single-letter tokens that the normaliser joins into
//! one word (`s u i c i d e`, `k.i.l.l`, `k. y. s.`), or leaves apart when they are spaced
//! unevenly, broken over lines or cells of a table, or too few to be a word spelt out.

use crate::normalise::{emit_sep, emit_token, Class, Sep, Unit};
use crate::normalised::Normalised;

/// Fewest single letters that join into a word: two are initials ('j. k. rowling').
const JOINED_MIN: usize = 3;

/// Pending single-letter tokens that may join, each with the separator before it.
#[derive(Debug, Default, Clone)]
pub(crate) struct LetterRun {
    letters: Vec<(Unit, Sep)>,
    /// The separator before the first letter.
    before: Sep,
    /// How the letters are spaced (see [`spacing`]), once the run has two.
    spacing: Option<(u32, u32)>,
    joined: Vec<Unit>,
}

impl LetterRun {
    pub(crate) fn is_empty(&self) -> bool {
        self.letters.is_empty()
    }

    /// Forget the pending letters.
    pub(crate) fn clear(&mut self) {
        self.letters.clear();
    }

    /// Take the single letter (or leet digit) `unit`, typed after the separator `before`:
    /// it goes on the run when spaced as the run's letters are, else the run is emitted and
    /// a new one starts with it.
    pub(crate) fn push(&mut self, unit: Unit, before: Sep, out: &mut Normalised) {
        let spaced = spacing(before);
        let same = self.letters.len() < 2 || self.spacing == spaced;
        if !self.letters.is_empty() && spaced.is_some() && same {
            self.spacing = spaced;
            self.letters.push((unit, before));
        } else {
            self.flush(out);
            self.before = before;
            self.letters.push((unit, Sep::default()));
        }
    }

    /// Emit the pending letters: joined into one word when there are at least
    /// [`JOINED_MIN`] of them and two are letters, else one by one as typed.
    pub(crate) fn flush(&mut self, out: &mut Normalised) {
        if self.letters.is_empty() {
            return;
        }
        let letters = self
            .letters
            .iter()
            .filter(|(u, _)| u.class == Class::Letter)
            .count();
        if self.letters.len() >= JOINED_MIN && letters >= 2 {
            self.joined.clear();
            self.joined.extend(self.letters.iter().map(|(u, _)| *u));
            emit_sep(out, self.before);
            emit_token(out, &self.joined);
        } else {
            for (i, (u, sep)) in self.letters.iter().enumerate() {
                emit_sep(out, if i == 0 { self.before } else { *sep });
                emit_token(out, std::slice::from_ref(u));
            }
        }
        self.letters.clear();
    }

    /// The text lost its first `delta` bytes: move every pending offset back (wrapping, as
    /// `Normaliser::shift` does).
    pub(crate) fn shift(&mut self, delta: u32) {
        for (u, s) in &mut self.letters {
            u.start = u.start.wrapping_sub(delta);
            u.end = u.end.wrapping_sub(delta);
            s.start = s.start.wrapping_sub(delta);
            s.end = s.end.wrapping_sub(delta);
        }
        self.before.start = self.before.start.wrapping_sub(delta);
        self.before.end = self.before.end.wrapping_sub(delta);
    }
}

/// How a separator between two single letters spaces them when it keeps them in one run
/// that may join: one character (`k y s`, `k.y.s`, `k-y-s`), or one mark with a space or two
/// beside it (`k. y. s.`, `k - y - s`); a run keeps one way of spacing ('u.s. i' stays
/// apart). Two spaces or two marks end a run (`s u  i`), and so does a line break or a tab:
/// single letters one to a line or a cell are a column of a table.
fn spacing(sep: Sep) -> Option<(u32, u32)> {
    if sep.breaks > 0 {
        None
    } else if sep.count == 1 {
        Some((1, 0))
    } else if sep.marks == 1 && sep.count <= 3 {
        Some((sep.count, 1))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::normalise::normalise;

    fn n(s: &str) -> String {
        normalise(s).text
    }

    #[test]
    fn joins_split_letters() {
        assert_eq!(n("s u i c i d e"), "suicide");
        assert_eq!(n("k.i.l.l them"), "kil them");
        assert_eq!(n("I am a cat"), "i am a cat");
        assert_eq!(n("plan a b"), "plan a b");
        assert_eq!(n("s u  i"), "s u i");
        assert_eq!(n("just k. y. s. already"), "just kys already");
        assert_eq!(n("go k - y - s"), "go kys");
        assert_eq!(n("k_y_s"), "kys");
        assert_eq!(n("j. k. rowling"), "j k rowling");
        assert_eq!(n("a .. b .. c"), "a b c");
        assert_eq!(n("x -- y -- z"), "x y z");
        assert_eq!(n("the u.s. i want"), "the u s i want");
        assert_eq!(n("k.i.l.l m.e"), "kilme");
    }

    #[test]
    fn a_column_of_letters_stays_apart() {
        // One letter to a line or to a cell of a pasted table is not a word spelt out.
        assert_eq!(n("k\ny\ns"), "k y s");
        assert_eq!(n("k\r\ny\r\ns"), "k y s");
        assert_eq!(n("k\ty\ts"), "k y s");
        assert_eq!(n("grade\nA\nB\nC"), "grade a b c");
        assert_eq!(n("k\u{2028}y\u{2028}s"), "k y s");
        // A break after the run ends it; the letters before it still join.
        assert_eq!(n("k y s\nok"), "kys ok");
        assert_eq!(n("k.y.s\tx"), "kys x");
    }
}
