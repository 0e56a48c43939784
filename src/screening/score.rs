//! How close a declared name comes to a listed one: their words aligned
//! one to one (or one to a run of words written joined), each pair scored,
//! and the pairs weighed by the words' length and what they are to the
//! name.
//!
//! Design: only certainty refuses. [`Closeness::Exact`] needs the listed
//! name itself after lossless steps alone and the same legal form; every
//! other likeness, however close, is at most [`Closeness::Possible`], for
//! an officer to decide. A likeness needs a word of the listed name that
//! tells it from others (not a shared word, title, particle or number) to
//! meet a declared word: the index finds candidates by exactly that.
//!
//! Two words meet when they are the same; when one is the other with a
//! few letters changed (none in words of three letters or fewer, one up to
//! seven, two beyond: `Sparrow` is not `Arrow`, `ABD` not `ABK`); when they
//! sound alike (Double Metaphone: `Brite` and `Bright`, `Usama` and
//! `Osama`); when a person's initial starts the other; or, against a name
//! in Arabic script, when their consonants agree. Chinese names are compared
//! character by character when both are in Chinese: the same syllables in
//! other characters (`高石早苗`, `高市早苗`) are another name.

use super::Kind;
use super::names::{
    NameKey, Part, Script, Token, consonant_class, consonants, is_generic_form, without_article,
};
use super::words;

/// Least score of a name that holds the shipment as `possible_denied_party`.
pub const POSSIBLE_AT: f64 = 0.86;
/// The most a likeness scores: the same words reached through a lossy step.
pub const SAME_WORDS: f64 = 0.97;
/// The score of two words that sound alike (Double Metaphone).
const SOUNDS_ALIKE: f64 = 0.88;
/// The score of two words spelled as transliterations differ.
const SPELLED_ALIKE: f64 = 0.9;
/// The factor on a word met once the Arabic article is set aside.
const ARTICLE_JOINED: f64 = 0.95;
/// The score of an abbreviation against the word it starts.
const ABBREVIATION: f64 = 0.8;
/// The factor on a listed word nothing met, a person's or a shared one:
/// lists give names in full (middle names, the parent body), declarations
/// often shorter.
const LISTED_LONE: f64 = 0.5;
/// The score of an initial against the word it starts.
const INITIAL: f64 = 0.7;
/// A shared word's weight against a plain word's.
const COMMON_WEIGHT: f64 = 0.35;
/// An unmatched patronymic's weight against a plain word's: one side
/// often leaves it out.
const LONE_PATRONYMIC: f64 = 0.25;
/// The factor on a firm's or a vessel's name whose words met out of
/// order: a person's names move freely, a firm's rarely.
const MOVED: f64 = 0.97;
/// The longest run of words compared as one word written joined.
pub const JOIN_MAX: usize = 4;

/// How a declared party stands against one list entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Closeness {
    /// The same party: rejects.
    Exact,
    /// Close enough for an officer to look (the score, 0–1).
    Possible(f64),
    /// Not this entry.
    Apart,
}

/// A listed name as the scorer reads it: its words borrowed from the
/// index's vocabulary.
#[derive(Debug, Clone)]
pub struct Listed<'a> {
    /// As [`NameKey::exact`].
    pub exact: &'a str,
    /// Its legal form.
    pub form: Option<&'static str>,
    /// Its words, in the order written.
    pub tokens: Vec<&'a Token>,
    /// Its script.
    pub script: Script,
    /// Its distinctive characters, for a name in Chinese or Korean.
    pub native: Option<&'a str>,
}

impl<'a> Listed<'a> {
    /// A listed name read from a key.
    pub fn of(key: &'a NameKey) -> Listed<'a> {
        Listed {
            exact: &key.exact,
            form: key.form,
            tokens: key.tokens.iter().collect(),
            script: key.script(),
            native: key.native.as_deref(),
        }
    }
}

/// Words of both names that met, and how well.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The declared words (indices; several when written apart).
    pub declared: Vec<usize>,
    /// The listed words.
    pub listed: Vec<usize>,
    /// How well they meet, 0–1.
    pub sim: f64,
}

/// Two names aligned and scored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scored {
    /// The score, 0–1 (before the caps [`closeness`] puts on it).
    pub score: f64,
    /// Words that met.
    pub pairs: Vec<Pair>,
    /// Whether a word that tells the listed name from others met one.
    pub key_met: bool,
}

/// Whether the listed entry's kind reads names as a person's (word order,
/// initials, titles, patronymics), when known to be one or not known.
fn personal(kind: Kind) -> bool {
    matches!(kind, Kind::Person | Kind::Unknown)
}

/// Whether a word of this part, in a name of this kind, tells the name
/// from others (and so is what the index finds it by).
pub fn is_key(part: Part, kind: Kind) -> bool {
    match part {
        Part::Plain | Part::Patronymic => true,
        Part::Title => matches!(kind, Kind::Company | Kind::Organization),
        Part::Common | Part::Particle | Part::Number => false,
    }
}

/// The kind a listed name is read as: a name of no known kind with a
/// legal form is a firm's.
fn read_as(kind: Kind, form: Option<&str>) -> Kind {
    match (kind, form) {
        (Kind::Unknown, Some(_)) => Kind::Company,
        _ => kind,
    }
}

/// The most [`score`] could give two names when only the listed words
/// `may_meet` says could meet a declared word: every declared word met in
/// full, every such listed word (`true` beside it) too, the others alone.
///
/// Design: a bound, never below the score: met words add the same weight
/// to both sides of the ratio (which is at most 1), unmet ones only below.
/// The index skips a name whose bound falls short of [`POSSIBLE_AT`].
pub fn score_bound(
    kind: Kind,
    form: Option<&str>,
    declared: &NameKey,
    listed: impl Iterator<Item = (Part, usize, bool)>,
) -> f64 {
    let kind = read_as(kind, form);
    let person = personal(kind);
    let both: f64 = declared.tokens.iter().map(|t| weight(t, kind)).sum();
    let (mut met, mut alone) = (0.0, 0.0);
    for (part, len, may_meet) in listed {
        if may_meet {
            met += part_weight(part, len, kind);
        } else if person || part == Part::Common {
            alone += lone_weight(part, len, kind) * LISTED_LONE;
        } else {
            alone += lone_weight(part, len, kind);
        }
    }
    let num = both + met;
    if num + alone > 0.0 {
        num / (num + alone)
    } else {
        0.0
    }
}

/// A word's weight in the score.
fn weight(t: &Token, kind: Kind) -> f64 {
    part_weight(t.part, t.text.len(), kind)
}

/// The weight of a word of this part and length.
fn part_weight(part: Part, len: usize, kind: Kind) -> f64 {
    let len = len as f64;
    match part {
        Part::Plain | Part::Patronymic | Part::Number => len,
        Part::Common => len * COMMON_WEIGHT,
        Part::Particle => 0.0,
        Part::Title if is_key(Part::Title, kind) => len,
        Part::Title => 0.0,
    }
}

/// A word's weight when nothing met it.
fn lone_weight(part: Part, len: usize, kind: Kind) -> f64 {
    if part == Part::Patronymic && personal(kind) {
        len as f64 * LONE_PATRONYMIC
    } else {
        part_weight(part, len, kind)
    }
}

/// The most a word may change and still meet another, by the shorter's
/// length, in [`edit_cost`]'s units: nothing in words of three letters or
/// fewer, a vowel or a doubled letter in four, one consonant from five.
///
/// Design: every change costs at least half a unit, so a pair within the
/// budget differs by two changes at most; the index's near keys rest on
/// it ([`super::index`]).
pub fn edit_budget(shorter: usize) -> f64 {
    match shorter {
        0..=3 => 0.0,
        4 => 0.5,
        _ => 1.0,
    }
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

/// How much two words differ, weighing each change by how often spellings
/// and typos make it rather than two names differ: a vowel for a vowel, a
/// consonant for one of its sound, a doubled letter or vowel added or
/// dropped, or two vowels swapped cost half a unit; a consonant added or
/// dropped, or two consonants swapped, a unit; another consonant in its
/// place a unit and a half (`Helios` is not `Helion`, `Neomag` not
/// `Neomat`; `Trident` may be `Tridant`).
pub fn edit_cost(a: &str, b: &str) -> f64 {
    edit_cost_within(a, b, f64::INFINITY).unwrap_or(f64::INFINITY)
}

/// [`edit_cost`] when it is `budget` or less, else `None`: stops at the
/// first two rows that every path leaves over budget (a swap reaches back
/// two rows; no step costs less than nothing). Most words a lookup finds
/// are told apart in a row or two.
pub fn edit_cost_within(a: &str, b: &str, budget: f64) -> Option<f64> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (n, m) = (a.len(), b.len());
    // Design: a letter added or dropped costs half a unit at least, so a
    // path within the budget keeps within `w` diagonals of the corner-to-
    // corner one; cells outside that band are never reached.
    let w = if budget.is_finite() {
        (budget.max(0.0) * 2.0) as usize
    } else {
        n.max(m)
    };
    if n.abs_diff(m) > w {
        return None;
    }
    let indel = |w: &[u8], i: usize| -> f64 {
        let c = w[i];
        let doubled = (i > 0 && w[i - 1] == c) || w.get(i + 1) == Some(&c);
        if doubled || is_vowel(c) { 0.5 } else { 1.0 }
    };
    let sub = |x: u8, y: u8| -> f64 {
        if x == y {
            0.0
        } else if (is_vowel(x) && is_vowel(y)) || consonant_class(x) == consonant_class(y) {
            0.5
        } else {
            1.5
        }
    };
    // Three rows (this one, the last, the one before, for a swap), on the
    // stack for words of up to 63 letters.
    let width = m + 1;
    let mut stack = [0.0f64; 3 * 64];
    let mut heap = Vec::new();
    let rows: &mut [f64] = if 3 * width <= stack.len() {
        &mut stack[..3 * width]
    } else {
        heap.resize(3 * width, 0.0);
        &mut heap
    };
    let row = |i: usize| (i % 3) * width;
    let far = f64::INFINITY;
    rows[0] = 0.0;
    for j in 1..=m.min(w) {
        rows[j] = rows[j - 1] + indel(b, j - 1);
    }
    if w < m {
        rows[w + 1] = far;
    }
    let mut last_over = false;
    for i in 1..=n {
        let (this, last) = (row(i), row(i - 1));
        let (lo, hi) = (i.saturating_sub(w).max(1), (i + w).min(m));
        // The band's edges read as out of reach (the buffer holds an
        // older row).
        rows[this] = if i <= w {
            rows[last] + indel(a, i - 1)
        } else {
            far
        };
        if lo > 1 {
            rows[this + lo - 1] = far;
        }
        if hi < m {
            rows[this + hi + 1] = far;
        }
        let mut least = rows[this];
        for j in lo..=hi {
            let mut v = (rows[last + j] + indel(a, i - 1))
                .min(rows[this + j - 1] + indel(b, j - 1))
                .min(rows[last + j - 1] + sub(a[i - 1], b[j - 1]));
            if i > 1
                && j > 1
                && a[i - 1] == b[j - 2]
                && a[i - 2] == b[j - 1]
                && a[i - 1] != a[i - 2]
            {
                let swap = if is_vowel(a[i - 1]) || is_vowel(a[i - 2]) {
                    0.5
                } else {
                    1.0
                };
                v = v.min(rows[row(i - 2) + j - 2] + swap);
            }
            rows[this + j] = v;
            least = least.min(v);
        }
        let over = least > budget;
        if over && last_over {
            return None;
        }
        last_over = over;
    }
    Some(rows[row(n) + m]).filter(|&c| c <= budget)
}

/// Whether two words start alike: the same letter, two vowels, or two
/// letters that transliterations swap (`k`/`g`/`c`/`q`, `p`/`b`, `t`/`d`,
/// `f`/`v`, `s`/`z`). A word's first letter is seldom a typo: a word that
/// starts otherwise gets one edit less (`Pride` is not `Bride`…, `Eastwind`
/// not `Westwind`).
fn start_alike(a: &str, b: &str) -> bool {
    let (Some(x), Some(y)) = (a.bytes().next(), b.bytes().next()) else {
        return false;
    };
    let vowel = |c: u8| b"aeiou".contains(&c);
    let class = |c: u8| {
        [&b"kgcq"[..], b"pb", b"td", b"fv", b"sz"]
            .iter()
            .position(|k| k.contains(&c))
    };
    x == y || (vowel(x) && vowel(y)) || (class(x).is_some() && class(x) == class(y))
}

/// How the two names' words may meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// One name in Arabic script, the other not: by consonants.
    pub consonants: bool,
    /// Whether sounds may meet (not for a name written in consonants).
    pub sounds: bool,
    /// Whether a name came from another script: its first letter may be
    /// another that transliterations swap (`Gim`, `Kim`).
    pub transliterated: bool,
    /// Whether initials and abbreviations meet (a person's name, or any).
    pub person: bool,
}

/// How well two words meet (0 when they do not), and whether the meeting
/// can carry a likeness on its own (an initial or an abbreviation cannot).
pub fn word_sim(a: &Token, b: &Token, rules: Rules) -> (f64, bool) {
    if a.part == Part::Number || b.part == Part::Number {
        return (if a.text == b.text { 1.0 } else { 0.0 }, false);
    }
    if a.part == Part::Particle && b.part == Part::Particle {
        let filial = |t: &str| words::is_in(&["bin", "ibn", "ben"], t);
        let same = a.text == b.text || (filial(&a.text) && filial(&b.text));
        return (if same { 1.0 } else { 0.0 }, false);
    }
    if a.text == b.text {
        return (1.0, true);
    }
    if rules.consonants {
        let (ca, cb) = (consonants(&a.text), consonants(&b.text));
        let long_enough = ca.len() >= 2 || a.text.len().min(b.text.len()) >= 3;
        return if !ca.is_empty() && ca == cb && long_enough {
            (SOUNDS_ALIKE, true)
        } else {
            (0.0, false)
        };
    }
    let (la, lb) = (a.text.len(), b.text.len());
    if la.min(lb) == 1 {
        let (short, long) = if la == 1 { (a, b) } else { (b, a) };
        let starts = long.text.starts_with(&*short.text) && long.text.len() > 1;
        return (if rules.person && starts { INITIAL } else { 0.0 }, false);
    }
    let mut best = letters_sim(&a.text, &b.text);
    if best < SPELLED_ALIKE && la.min(lb) >= 3 && a.spelling == b.spelling {
        best = SPELLED_ALIKE;
    }
    if best < SOUNDS_ALIKE
        && rules.sounds
        && la.min(lb) >= 3
        && (same_start(&a.text, &b.text)
            || hard_c(&a.text, &b.text)
            || (rules.transliterated && start_alike(&a.text, &b.text)))
        && a.sound.iter().any(|&x| x != 0 && b.sound.contains(&x))
    {
        best = SOUNDS_ALIKE;
    }
    // The Arabic article written joined on one side (`Alameri`, `al-Amiri`).
    if best == 0.0 {
        let (sa, sb) = (without_article(&a.text), without_article(&b.text));
        let stripped = [(sa, Some(&*b.text)), (Some(&*a.text), sb), (sa, sb)];
        for (x, y) in stripped {
            if let (Some(x), Some(y)) = (x, y)
                && (x, y) != (&*a.text, &*b.text)
            {
                best = best.max(letters_sim(x, y) * ARTICLE_JOINED);
            }
        }
    }
    if best > 0.0 {
        return (best, true);
    }
    // An abbreviation (`Eng.` for `Engineering`): not enough alone.
    let (short, long) = if la < lb {
        (&a.text, &b.text)
    } else {
        (&b.text, &a.text)
    };
    if (3..=4).contains(&short.len()) && long.len() >= short.len() + 2 && long.starts_with(&**short)
    {
        return (ABBREVIATION, false);
    }
    (0.0, false)
}

/// Whether two words start with a hard `c`, `k` or `q` (`Captain`, `Kapitan`).
fn hard_c(a: &str, b: &str) -> bool {
    let hard = |w: &str| {
        matches!(
            w.as_bytes(),
            [b'k' | b'q', ..] | [b'c', b'a' | b'o' | b'u' | b'l' | b'r', ..]
        )
    };
    hard(a) && hard(b)
}

/// Whether two words start with the same letter, or both with a vowel.
fn same_start(a: &str, b: &str) -> bool {
    let vowel = |c: u8| b"aeiou".contains(&c);
    match (a.bytes().next(), b.bytes().next()) {
        (Some(x), Some(y)) => x == y || (vowel(x) && vowel(y)),
        _ => false,
    }
}

/// How alike two words' letters are within the edit budget, else 0.
pub fn letters_sim(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    let (la, lb) = (a.len(), b.len());
    let mut budget = edit_budget(la.min(lb));
    if !same_start(a, b) {
        budget -= 1.0;
    }
    // Each letter more or fewer costs half a unit at least.
    if budget <= 0.0 || la.abs_diff(lb) as f64 * 0.5 > budget {
        return 0.0;
    }
    match edit_cost_within(a, b, budget) {
        Some(cost) => 1.0 - cost / la.max(lb) as f64,
        None => 0.0,
    }
}

/// Aligns and scores two names' words.
pub fn score(kind: Kind, declared: &NameKey, listed: &Listed) -> Scored {
    let kind = read_as(kind, listed.form);
    let d: Vec<&Token> = declared.tokens.iter().collect();
    let l = &listed.tokens;
    let (da, la) = (
        declared.script() == Script::Abjad,
        listed.script == Script::Abjad,
    );
    let rules = Rules {
        consonants: da != la,
        sounds: !da && !la,
        transliterated: declared.script() != Script::Latin || listed.script != Script::Latin,
        person: personal(kind),
    };
    let plainless = !l.iter().any(|t| is_key(t.part, kind));
    let key = |j: usize| plainless || is_key(l[j].part, kind);

    // Every pair of words that meets, best first (ties: nearest in place).
    let mut cands: Vec<(f64, bool, usize, usize)> = Vec::new();
    for (i, a) in d.iter().enumerate() {
        for (j, b) in l.iter().enumerate() {
            let (s, carries) = word_sim(a, b, rules);
            if s > 0.0 {
                cands.push((s, carries, i, j));
            }
        }
    }
    cands.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(x.2.abs_diff(x.3).cmp(&y.2.abs_diff(y.3)))
            .then((x.2, x.3).cmp(&(y.2, y.3)))
    });
    let (mut d_used, mut l_used) = (vec![false; d.len()], vec![false; l.len()]);
    let mut out = Scored::default();
    // Words that meet as words first, then runs written joined, then
    // initials and abbreviations (`Ural` must not take the place of
    // `Uralmagnitprom`'s first run).
    // Passes: 0 the same words, 1 likenesses, 2 initials and abbreviations;
    // runs written joined before 1 (`Tian Yu` is `Tianyu` before `Tian`
    // sounds like it).
    let pass_of = |s: f64, carries: bool| {
        if s >= 1.0 {
            0
        } else if carries {
            1
        } else {
            2
        }
    };
    for pass in 0..3 {
        if pass == 1 && !rules.consonants {
            join_runs(&d, l, &mut d_used, &mut l_used, &mut out, &key);
        }
        for &(s, carries, i, j) in &cands {
            if pass_of(s, carries) != pass || d_used[i] || l_used[j] {
                continue;
            }
            d_used[i] = true;
            l_used[j] = true;
            out.key_met |= carries && key(j);
            out.pairs.push(Pair {
                declared: vec![i],
                listed: vec![j],
                sim: s,
            });
        }
    }

    // Weights: what met counts on both sides, what did not only below.
    let mut num = 0.0;
    for p in &out.pairs {
        let w: f64 = p.declared.iter().map(|&i| weight(d[i], kind)).sum::<f64>()
            + p.listed.iter().map(|&j| weight(l[j], kind)).sum::<f64>();
        num += p.sim * w;
    }
    let den: f64 = d
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if d_used[i] {
                weight(t, kind)
            } else {
                lone_weight(t.part, t.text.len(), kind)
            }
        })
        .sum::<f64>()
        + l.iter()
            .enumerate()
            .map(|(j, t)| {
                if l_used[j] {
                    weight(t, kind)
                } else if rules.person || t.part == Part::Common {
                    lone_weight(t.part, t.text.len(), kind) * LISTED_LONE
                } else {
                    lone_weight(t.part, t.text.len(), kind)
                }
            })
            .sum::<f64>();
    out.score = if den > 0.0 { num / den } else { 0.0 };
    if !rules.person && moved(&out.pairs) {
        out.score *= MOVED;
    }
    if rules.person
        && (swapped_across_filial(&d, l, &out.pairs) || other_patronymic(&d, l, &out.pairs))
    {
        out.score = 0.0;
    }
    if contrasted(&d, l) {
        out.score = 0.0;
    }
    out
}

/// Whether words met out of their order: read in the declared order, the
/// listed words they met do not rise.
fn moved(pairs: &[Pair]) -> bool {
    let mut order: Vec<(usize, usize)> = pairs
        .iter()
        .filter_map(|p| Some((*p.declared.first()?, *p.listed.first()?)))
        .collect();
    order.sort_unstable();
    order.windows(2).any(|w| w[1].1 < w[0].1)
}

/// Whether the names hold words of one contrast (colours, directions)
/// and none in common: `Red Anchor` is not `Blue Anchor`, `Western
/// Liberation Front` not `Eastern`.
fn contrasted(d: &[&Token], l: &[&Token]) -> bool {
    let meanings = |ts: &[&Token], set: u8| -> u64 {
        ts.iter()
            .filter_map(|t| t.contrast)
            .filter(|c| c.0 == set)
            .fold(0, |bits, (_, m)| bits | 1 << (m % 64))
    };
    d.iter().filter_map(|t| t.contrast).any(|(set, _)| {
        let (a, b) = (meanings(d, set), meanings(l, set));
        a != 0 && b != 0 && a & b == 0
    })
}

/// Whether both names give a patronymic and they did not meet: another
/// father, another person (`Nadezhda Petrovna`, `Nadezhda Viktorovna`).
fn other_patronymic(d: &[&Token], l: &[&Token], pairs: &[Pair]) -> bool {
    let pat = |ts: &[&Token]| ts.iter().position(|t| t.part == Part::Patronymic);
    let (Some(i), Some(j)) = (pat(d), pat(l)) else {
        return false;
    };
    !pairs
        .iter()
        .any(|p| p.declared.contains(&i) && p.listed.contains(&j))
}

/// The numbers a name gives, sorted.
fn numbers<'a>(ts: &[&'a Token]) -> Vec<&'a str> {
    let mut v: Vec<&str> = ts
        .iter()
        .filter(|t| t.part == Part::Number)
        .map(|t| &*t.text)
        .collect();
    v.sort_unstable();
    v
}

/// Words written joined on one side and apart on the other (`Aerotech`,
/// `Aero-Tech`; a pinyin word and its syllables): a run of up to
/// [`JOIN_MAX`] free words on one side against one free word on the other.
fn join_runs(
    d: &[&Token],
    l: &[&Token],
    d_used: &mut [bool],
    l_used: &mut [bool],
    out: &mut Scored,
    key: &dyn Fn(usize) -> bool,
) {
    // A run on the listed side for a declared word.
    for (i, a) in d.iter().enumerate() {
        if d_used[i] {
            continue;
        }
        if let Some((from, to, s)) = best_run(&a.text, l, l_used, true) {
            d_used[i] = true;
            l_used[from..to].iter_mut().for_each(|u| *u = true);
            out.key_met |= (from..to).any(key);
            out.pairs.push(Pair {
                declared: vec![i],
                listed: (from..to).collect(),
                sim: s,
            });
        }
    }
    // A run on the declared side for a listed word.
    for (j, b) in l.iter().enumerate() {
        if l_used[j] {
            continue;
        }
        if let Some((from, to, s)) = best_run(&b.text, d, d_used, false) {
            l_used[j] = true;
            d_used[from..to].iter_mut().for_each(|u| *u = true);
            out.key_met |= key(j);
            out.pairs.push(Pair {
                declared: (from..to).collect(),
                listed: vec![j],
                sim: s,
            });
        }
    }
}

/// The best run of free words in `words` that, joined, meets `word`: the
/// same letters, or (`exact` false) within the edit budget.
///
/// Design: a listed name's runs are indexed by their letters alone (a
/// neighbourhood of every run would cost more than the list), so a listed
/// run must meet the declared word exactly.
fn best_run(
    word: &str,
    words: &[&Token],
    used: &[bool],
    exact: bool,
) -> Option<(usize, usize, f64)> {
    let mut best: Option<(usize, usize, f64)> = None;
    for from in 0..words.len() {
        let mut joined = String::new();
        for to in from..words.len().min(from + JOIN_MAX) {
            if used[to] {
                break;
            }
            joined.push_str(&words[to].text);
            if to == from || joined.len() > word.len() + 2 {
                continue;
            }
            let s = if exact {
                if joined == word { 1.0 } else { 0.0 }
            } else {
                letters_sim(&joined, word)
            };
            if s > 0.0 && best.is_none_or(|b| s > b.2) {
                best = Some((from, to + 1, s));
            }
        }
    }
    best
}

/// Whether a person's given name and father's name (the words before and
/// after `bin`, `ibn`…) met each other's: `Salman bin Muhammad` is not
/// `Muhammad bin Salman`.
fn swapped_across_filial(d: &[&Token], l: &[&Token], pairs: &[Pair]) -> bool {
    let around = |ts: &[&Token]| {
        let p = ts
            .iter()
            .position(|t| t.part == Part::Particle && words::is_in(words::FILIAL, &t.text))?;
        let given = p.checked_sub(1)?;
        (p + 1 < ts.len()).then_some((given, p + 1))
    };
    let (Some((dg, df)), Some((lg, lf))) = (around(d), around(l)) else {
        return false;
    };
    let met = |i: usize, j: usize| {
        pairs
            .iter()
            .any(|p| p.declared.contains(&i) && p.listed.contains(&j))
    };
    met(dg, lf) || met(df, lg)
}

/// How close a declared name comes to a listed one of an entry of `kind`.
pub fn closeness(kind: Kind, declared: &NameKey, listed: &Listed) -> Closeness {
    if listed.tokens.is_empty() && listed.native.is_none_or(str::is_empty) {
        return Closeness::Apart;
    }
    // Design: the listed name itself, through lossless steps alone, with
    // the same legal form: certain.
    if !listed.exact.is_empty() && declared.exact == listed.exact && declared.form == listed.form {
        return Closeness::Exact;
    }
    let forms_agree = match (declared.form, listed.form) {
        (Some(a), Some(b)) => a == b || is_generic_form(a) || is_generic_form(b),
        _ => true,
    };
    // Design: a number is never a typo. Another number, or a number on
    // one side alone, is another party (`Ocean Star 2`, `Ocean Star 3`).
    let declared_tokens: Vec<&Token> = declared.tokens.iter().collect();
    if numbers(&declared_tokens) != numbers(&listed.tokens) {
        return Closeness::Apart;
    }
    let same_script = declared.script() == listed.script;
    let score = match (declared.native.as_deref(), listed.native) {
        (Some(a), Some(b)) if same_script => native_score(a, b),
        _ => {
            let s = score(kind, declared, listed);
            if !s.key_met {
                return Closeness::Apart;
            }
            s.score
        }
    };
    let score = score.min(SAME_WORDS) * if forms_agree { 1.0 } else { 0.98 };
    if score >= POSSIBLE_AT {
        Closeness::Possible(score)
    } else {
        Closeness::Apart
    }
}

/// Two names' distinctive characters (Chinese, Korean) compared as characters.
pub fn native_score(a: &str, b: &str) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let d = strsim::generic_damerau_levenshtein(&a, &b);
    1.0 - d as f64 / a.len().max(b.len()) as f64
}
