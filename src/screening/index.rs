//! The denied-party list indexed, so a party is scored against the few
//! names that could come close rather than all of them.
//!
//! Design: the index may let through names that then score low, never keep
//! out one that would not be [`Closeness::Apart`]. A likeness needs a word
//! that tells the listed name from others to meet a declared word
//! ([`super::score`]), and words meet only in ways the index looks up: the
//! same letters; letters within the edit budget, found through the near
//! keys ([`listed_near_keys`]: the same consonants, or one consonant
//! more, less or swapped); the same Double Metaphone code; the same
//! consonants as Arabic script writes them; or a run of words written
//! joined. A Chinese name against a Chinese name
//! shares a character. [`screen_all`] scores every name, and a property
//! test holds the two to the same answer.

use super::ids::{ID_LOOK_ALIKE, ID_NEAR_MIN, ID_ONE_EDIT, id_look, ids_one_apart};
use super::names::{
    NameKey, Script, Token, consonants, listed_key, spelling_fold, without_article,
};
use super::near::{declared_near_keys, listed_near_keys};
use super::postings::{HashPostings, Lists};
use super::score::{
    Closeness, Listed, POSSIBLE_AT, Rules, closeness, is_key, letters_sim, score_bound, word_sim,
};

/// How many list entries' keys are made at once, on every core.
const KEYS_AT_ONCE: usize = 8192;

/// The most two words within the edit budget differ in length: each
/// letter more costs half a unit, and the budget is one unit at most.
const NEAR_LENGTHS: usize = 2;

use super::{DeniedParty, Kind};
use std::hash::BuildHasher;

// Design: keys are the policy's own and lookups only read, so a fast
// keyed hash serves.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A listed name, its words as the vocabulary's numbers.
#[derive(Debug, Clone)]
struct Name {
    entry: u32,
    /// The entry's kind, here so a candidate's check reads one place.
    kind: Kind,
    exact: Box<str>,
    form: Option<&'static str>,
    script: Script,
    tokens: Box<[u32]>,
    native: Option<Box<str>>,
}

/// The list's index; built with the policy.
#[derive(Debug, Clone, Default)]
pub struct ScreenIndex {
    hasher: foldhash::fast::FixedState,
    /// Entries by their id's look ([`id_look`]).
    by_id: HashPostings,
    /// Each id with one character taken out (every position): two ids one
    /// character apart share one of these.
    by_id_near: HashPostings,
    names: Vec<Name>,
    /// Per entry: its kind, and the scripts of its names compared as
    /// characters (Chinese, Korean).
    entries: Vec<(Kind, Vec<Script>)>,
    vocab: Vec<Token>,
    /// Per word, what a candidate's check reads of it, in a few bytes.
    shapes: Vec<Shape>,
    /// The vocabulary's numbers by word, while the index is built.
    vocab_ids: HashMap<Box<str>, u32>,
    /// Per word: the names it tells apart (a key word of theirs).
    keyed: Lists,
    /// Words by their near keys ([`listed_near_keys`]).
    near: HashPostings,
    /// Words by sound code.
    by_sound: HashPostings,
    /// Words by their spelling folded ([`spelling_fold`]).
    by_spelling: HashPostings,
    /// Words by their consonants; and of names in Arabic script alone.
    by_consonants: HashPostings,
    abjad_consonants: HashPostings,
    /// Names by their words after lossless steps alone ([`NameKey::exact`]).
    by_exact: HashPostings,
    /// Names by a run of their words written joined (holding a key word).
    runs: HashPostings,
    /// Names in Chinese or Korean by each distinctive character.
    by_native: HashMap<char, Vec<u32>>,
}

/// An id (as [`id_look`] leaves it) with one character taken out, at each
/// position; none for an id too short to compare one edit away.
fn one_out(look: &str) -> Vec<String> {
    let chars: Vec<char> = look.chars().collect();
    if chars.len() < ID_NEAR_MIN {
        return Vec::new();
    }
    (0..chars.len())
        .map(|i| {
            chars
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, c)| *c)
                .collect()
        })
        .collect()
}

impl ScreenIndex {
    /// Indexes a list.
    pub fn new(list: &[DeniedParty]) -> ScreenIndex {
        use rayon::prelude::*;
        let mut ix = ScreenIndex::default();
        // Design: a name's key is the costly part and depends on the name
        // alone, so a long list's keys are made on every core, a slice at
        // a time (not all at once: they are larger than the index), by
        // threads of its own: the shared pool's threads are named for the
        // verify stage that starts them, and its CPU is counted by name.
        let pool = (list.len() > KEYS_AT_ONCE)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("screen-index-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        let keys_of =
            |entry: &DeniedParty| -> Vec<NameKey> { entry.all_names().map(listed_key).collect() };
        let mut at = 0;
        for slice in list.chunks(KEYS_AT_ONCE) {
            let keys: Vec<Vec<NameKey>> = match &pool {
                Some(pool) => pool.install(|| slice.par_iter().map(keys_of).collect()),
                None => slice.iter().map(keys_of).collect(),
            };
            for (entry, keys) in slice.iter().zip(keys) {
                ix.add_entry(at, entry, keys);
                at += 1;
            }
        }
        ix.keyed.finish(ix.vocab.len());
        ix.near.finish();
        ix.by_sound.finish();
        ix.by_spelling.finish();
        ix.by_consonants.finish();
        ix.abjad_consonants.finish();
        ix.runs.finish();
        ix.by_exact.finish();
        ix.by_id.finish();
        ix.by_id_near.finish();
        ix.vocab_ids = HashMap::default();
        ix.vocab.shrink_to_fit();
        ix.shapes.shrink_to_fit();
        ix.names.shrink_to_fit();
        ix
    }

    fn add_entry(&mut self, e: u32, entry: &DeniedParty, keys: Vec<NameKey>) {
        if !entry.id.is_empty() {
            let look = id_look(&entry.id);
            for near in one_out(&look) {
                let h = self.hash(&near);
                self.by_id_near.push(h, e);
            }
            let h = self.hash(&look);
            self.by_id.push(h, e);
        }
        let mut native = Vec::new();
        for key in keys {
            if key.native.is_some() && !native.contains(&key.script()) {
                native.push(key.script());
            }
            self.add_name(e, entry.kind, key);
        }
        self.entries.push((entry.kind, native));
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn add_name(&mut self, entry: u32, kind: Kind, key: NameKey) {
        let n = self.names.len() as u32;
        let script = key.script();
        let plainless = !key.tokens.iter().any(|t| is_key(t.part, kind));
        let is_key_at = |i: usize| plainless || is_key(key.tokens[i].part, kind);
        let mut ids = Vec::with_capacity(key.tokens.len());
        for (i, t) in key.tokens.iter().enumerate() {
            let v = self.word(t, script);
            if is_key_at(i) {
                self.keyed.push(v, n);
            }
            ids.push(v);
        }
        // Runs of words written joined, when one is a key word.
        for from in 0..key.tokens.len() {
            let mut joined = String::new();
            for to in from..key.tokens.len().min(from + super::score::JOIN_MAX) {
                joined.push_str(&key.tokens[to].text);
                if to > from && (from..=to).any(is_key_at) {
                    let h = self.hash(&joined);
                    self.runs.push(h, n);
                }
            }
        }
        if let Some(native) = &key.native {
            for c in native.chars() {
                let list = self.by_native.entry(c).or_default();
                if list.last() != Some(&n) {
                    list.push(n);
                }
            }
        }
        if !key.exact.is_empty() {
            let h = self.hash(&key.exact);
            self.by_exact.push(h, n);
        }
        self.names.push(Name {
            entry,
            kind,
            exact: key.exact.into_boxed_str(),
            form: key.form,
            script,
            tokens: ids.into_boxed_slice(),
            native: key.native.map(String::into_boxed_str),
        });
    }

    /// The vocabulary's number for a word, added with its lookups if new.
    fn word(&mut self, t: &Token, script: Script) -> u32 {
        if let Some(&v) = self.vocab_ids.get(&t.text) {
            if script == Script::Abjad {
                let h = self.hash(&consonants(&t.text));
                self.abjad_consonants.push(h, v);
            }
            return v;
        }
        let v = self.vocab.len() as u32;
        let bare = without_article(&t.text).map(str::to_owned);
        for word in std::iter::once(t.text.to_string()).chain(bare) {
            let near = &mut self.near;
            listed_near_keys(&self.hasher, &word, |h| near.push(h, v));
        }
        let h = self.hash(&spelling_fold(&t.text));
        self.by_spelling.push(h, v);
        if t.text.len() >= 3 {
            for code in t.sound.iter().filter(|&&c| c != 0) {
                self.by_sound.push(*code, v);
            }
        }
        let h = self.hash(&consonants(&t.text));
        self.by_consonants.push(h, v);
        if script == Script::Abjad {
            self.abjad_consonants.push(h, v);
        }
        self.shapes.push(Shape::of(t));
        self.vocab.push(t.clone());
        self.vocab_ids.insert(t.text.clone(), v);
        v
    }

    fn listed(&self, n: u32) -> Listed<'_> {
        let name = &self.names[n as usize];
        Listed {
            exact: &name.exact,
            form: name.form,
            tokens: name
                .tokens
                .iter()
                .map(|&v| &self.vocab[v as usize])
                .collect(),
            script: name.script,
            native: name.native.as_deref(),
        }
    }

    /// The names a declared name could come close to.
    ///
    /// Design: the lookups find a word's neighbours cheaply but loosely;
    /// each word found is then met with the declared word as the scorer
    /// meets them (under its most lenient rules), and only the names of
    /// words that meet are scored. A list of invented firms made a party
    /// the candidate of thousands of names before.
    fn candidates(&self, key: &NameKey, out: &mut Vec<u32>, words: &mut Vec<u32>) {
        words.clear();
        let mut found: Vec<u32> = Vec::new();
        let tokens = &key.tokens;
        let abjad = key.script() == Script::Abjad;
        for from in 0..tokens.len() {
            let mut joined = String::new();
            for to in from..tokens.len().min(from + super::score::JOIN_MAX) {
                joined.push_str(&tokens[to].text);
                found.clear();
                // The declared words, one by one and runs of them joined
                // (and a word without the Arabic article joined to it).
                let bare = (to == from)
                    .then(|| without_article(&joined).map(str::to_owned))
                    .flatten();
                for word in std::iter::once(joined.clone()).chain(bare) {
                    self.near_words(&word, &mut found);
                }
                if to > from {
                    found.sort_unstable();
                    found.dedup();
                    let vocab = &self.vocab;
                    words.extend(
                        found
                            .iter()
                            .filter(|&&v| letters_sim(&joined, &vocab[v as usize].text) > 0.0),
                    );
                    continue;
                }
                // A listed run written joined, for one declared word.
                out.extend(self.runs.get(self.hash(&joined)));
                let t = &tokens[from];
                found.extend(self.by_spelling.get(self.hash(&spelling_fold(&t.text))));
                if t.text.len() >= 3 {
                    for &code in t.sound.iter().filter(|&&c| c != 0) {
                        found.extend(self.by_sound.get(code));
                    }
                }
                // Against a name in Arabic script, consonants; from one, all names'.
                let h = self.hash(&consonants(&t.text));
                if abjad {
                    found.extend(self.by_consonants.get(h));
                } else {
                    found.extend(self.abjad_consonants.get(h));
                }
                found.sort_unstable();
                found.dedup();
                words.extend(
                    found
                        .iter()
                        .filter(|&&v| could_meet(t, &self.vocab[v as usize])),
                );
            }
        }
        words.sort_unstable();
        words.dedup();
        for &v in words.iter() {
            out.extend(self.keyed.get(v));
        }
        if let Some(native) = &key.native {
            for c in native.chars() {
                out.extend(self.by_native.get(&c).into_iter().flatten());
            }
        }
    }

    /// The words a word (or a run written joined) could be within the edit
    /// budget of: those sharing a near key, of a length near enough.
    fn near_words(&self, word: &str, found: &mut Vec<u32>) {
        let len = word.len();
        let near_length = |v: u32| self.vocab[v as usize].text.len().abs_diff(len) <= NEAR_LENGTHS;
        declared_near_keys(&self.hasher, word, |h| {
            found.extend(self.near.get(h).filter(|&v| near_length(v)));
        });
    }

    /// The list entry a party comes closest to: an exact hit (by id or
    /// name; the first listed when several) before the best-scored
    /// possible one (the first listed among equals). The same answer as
    /// [`screen_all`].
    pub fn screen<'a>(
        &self,
        id: &str,
        names: &[NameKey],
        list: &'a [DeniedParty],
    ) -> Option<(Closeness, &'a DeniedParty)> {
        let mut best = Best::default();
        if !id.is_empty() {
            let look = id_look(id);
            for e in self.by_id.get(self.hash(&look)) {
                if id_look(&list[e as usize].id) == look {
                    best.consider(e, id_closeness(&list[e as usize].id, id));
                }
            }
            let mut near: Vec<u32> = one_out(&look)
                .iter()
                .flat_map(|k| self.by_id_near.get(self.hash(k)))
                .filter(|&e| ids_one_apart(&id_look(&list[e as usize].id), &look))
                .collect();
            near.sort_unstable();
            near.dedup();
            for e in near {
                best.consider(e, Closeness::Possible(ID_ONE_EDIT));
            }
        }
        // Design: an exact hit (by id or name) answers before any likeness
        // ([`Best::answer`]), and a name is exact only when its words are
        // the listed ones after lossless steps: found by those, the search
        // for likenesses is spared (a third of declared parties, where a
        // list is screened often for its own names).
        for key in names.iter().filter(|k| !k.exact.is_empty()) {
            for n in self.by_exact.get(self.hash(&key.exact)) {
                if *self.names[n as usize].exact == *key.exact
                    && let Some(c) = self.compare(key, n)
                {
                    best.consider(self.names[n as usize].entry, c);
                }
            }
        }
        if best.exact.is_some() {
            return best.answer(list);
        }
        let (mut found, mut met) = (Vec::new(), Vec::new());
        let mut seen = HashMap::default();
        for key in names {
            found.clear();
            seen.clear();
            self.candidates(key, &mut found, &mut met);
            let letters = Letters::of(key);
            found.sort_unstable();
            found.dedup();
            for &n in &found {
                if !self.may_come_close(key, n, &met, &letters, &mut seen) {
                    continue;
                }
                if let Some(c) = self.compare(key, n) {
                    best.consider(self.names[n as usize].entry, c);
                }
            }
        }
        best.answer(list)
    }

    /// Whether listed name `n` could come close enough to hold, given the
    /// vocabulary words `met` (sorted) that the declared name's words meet:
    /// its other words could meet only as a number, an initial, an
    /// abbreviation or a piece of a run written joined, checked here.
    fn may_come_close(
        &self,
        key: &NameKey,
        n: u32,
        met: &[u32],
        declared: &Letters,
        seen: &mut HashMap<u32, bool>,
    ) -> bool {
        // Design: a name the declared one is exactly was scored before the
        // search ([`ScreenIndex::screen`]).
        let name = &self.names[n as usize];
        if name.native.is_some() && key.native.is_some() {
            return true;
        }
        let mut may_meet = |v: u32, shape: &Shape| {
            if met.binary_search(&v).is_ok() {
                return true;
            }
            if !declared.may_hold(shape) {
                return false;
            }
            *seen.entry(v).or_insert_with(|| {
                let t = &*self.vocab[v as usize].text;
                key.tokens
                    .iter()
                    .any(|d| d.text.contains(t) || t.starts_with(&*d.text))
            })
        };
        let listed = name.tokens.iter().map(|&v| {
            let shape = &self.shapes[v as usize];
            (shape.part, usize::from(shape.len), may_meet(v, shape))
        });
        score_bound(name.kind, name.form, key, listed) >= POSSIBLE_AT - 1e-9
    }

    /// A declared name against listed name `n`; `None` when the entry is
    /// not compared through this name (a Chinese name meets an entry with
    /// a Chinese name through that name alone: its pinyin would make
    /// other characters of the same sound the same name).
    fn compare(&self, key: &NameKey, n: u32) -> Option<Closeness> {
        let name = &self.names[n as usize];
        if key.native.is_some() {
            let native = &self.entries[name.entry as usize].1;
            if !compared_through(key, native, name.native.is_some(), name.script) {
                return None;
            }
        }
        Some(closeness(name.kind, key, &self.listed(n)))
    }

    /// Why a party stands as it does against the entry: its best-scoring
    /// name, the words that met and those that did not.
    pub fn explain(
        &self,
        names: &[NameKey],
        hit: &DeniedParty,
        list: &[DeniedParty],
    ) -> Option<super::Explained> {
        let entry = list.iter().position(|e| std::ptr::eq(e, hit))?;
        let mut best: Option<(f64, super::Explained)> = None;
        // Design: names are added entry by entry, so an entry's are a run.
        let from = self.names.partition_point(|n| (n.entry as usize) < entry);
        let to = self.names.partition_point(|n| (n.entry as usize) <= entry);
        for n in from..to {
            for key in names {
                let c = match self.compare(key, n as u32) {
                    Some(Closeness::Exact) => 2.0,
                    Some(Closeness::Possible(s)) => s,
                    _ => continue,
                };
                if best.as_ref().is_none_or(|(b, _)| c > *b) {
                    let kind = self.entries[entry].0;
                    best = Some((c, super::explain(kind, key, &self.listed(n as u32))));
                }
            }
        }
        best.map(|(_, e)| e)
    }

    /// How many names and distinct words the index holds.
    pub fn size(&self) -> (usize, usize) {
        (self.names.len(), self.vocab.len())
    }
}

/// A listed word's length (up to 255), first letter and part.
#[derive(Debug, Clone)]
struct Shape {
    len: u8,
    first: u8,
    part: super::names::Part,
}

impl Shape {
    fn of(t: &Token) -> Shape {
        Shape {
            len: t.text.len().min(255) as u8,
            first: t.text.bytes().next().unwrap_or(0),
            part: t.part,
        }
    }
}

/// A declared name's letters, so a listed word that is no piece of its
/// words and starts none is told so from its [`Shape`].
struct Letters {
    /// The letters anywhere in its words (one bit for any other byte).
    all: u32,
    /// The letters its words start with.
    firsts: u32,
    shortest: usize,
    longest: usize,
}

fn letter_bit(c: u8) -> u32 {
    if c.is_ascii_lowercase() {
        1 << (c - b'a')
    } else {
        1 << 26
    }
}

impl Letters {
    fn of(key: &NameKey) -> Letters {
        let mut l = Letters {
            all: 0,
            firsts: 0,
            shortest: usize::MAX,
            longest: 0,
        };
        for t in &key.tokens {
            l.all |= t.text.bytes().map(letter_bit).fold(0, |a, b| a | b);
            // Every word starts with an empty one.
            l.firsts |= t.text.bytes().next().map_or(u32::MAX, letter_bit);
            l.shortest = l.shortest.min(t.text.len());
            l.longest = l.longest.max(t.text.len());
        }
        l
    }

    /// Whether a word of this shape may be in a declared word, or start
    /// with one (false only when it is neither).
    fn may_hold(&self, shape: &Shape) -> bool {
        let (len, first) = (usize::from(shape.len), letter_bit(shape.first));
        shape.len == 0
            || shape.len == 255
            || (len <= self.longest && self.all & first != 0)
            || (self.shortest <= len && self.firsts & first != 0)
    }
}

/// Whether a declared name is compared with a listed name of an entry
/// whose names in Chinese or Korean are in `native`: a name in one of
/// those scripts meets such an entry through its names in that script
/// alone, as characters (its syllables would make other characters of the
/// same sound the same name).
fn compared_through(
    declared: &NameKey,
    native: &[Script],
    listed_native: bool,
    listed: Script,
) -> bool {
    let script = declared.script();
    if declared.native.is_some() && native.contains(&script) {
        listed_native && listed == script
    } else {
        true
    }
}

/// Whether a declared word meets a listed one as the scorer would under
/// any of its rules (by letters, spelling, sound, consonants): a word that
/// does not cannot carry a likeness.
fn could_meet(declared: &Token, listed: &Token) -> bool {
    let lenient = Rules {
        consonants: false,
        sounds: true,
        transliterated: true,
        person: true,
    };
    let by_consonants = Rules {
        consonants: true,
        ..lenient
    };
    [lenient, by_consonants].into_iter().any(|rules| {
        let (s, carries) = word_sim(declared, listed, rules);
        s > 0.0 && carries
    })
}

/// A declared id against a listed one found by its look-alike form.
fn id_closeness(listed: &str, declared: &str) -> Closeness {
    if listed == declared {
        Closeness::Exact
    } else {
        Closeness::Possible(ID_LOOK_ALIKE)
    }
}

/// The best answer so far: an exact hit (the first listed), else the
/// best score (the first listed among equals).
#[derive(Default)]
struct Best {
    exact: Option<u32>,
    possible: Option<(f64, u32)>,
}

impl Best {
    fn consider(&mut self, e: u32, c: Closeness) {
        match c {
            Closeness::Exact => self.exact = Some(self.exact.map_or(e, |x| x.min(e))),
            Closeness::Possible(s) => {
                if self
                    .possible
                    .is_none_or(|(b, be)| s > b || (s == b && e < be))
                {
                    self.possible = Some((s, e));
                }
            }
            Closeness::Apart => {}
        }
    }

    fn answer<'a>(&self, list: &'a [DeniedParty]) -> Option<(Closeness, &'a DeniedParty)> {
        match (self.exact, self.possible) {
            (Some(e), _) => Some((Closeness::Exact, &list[e as usize])),
            (None, Some((s, e))) => Some((Closeness::Possible(s), &list[e as usize])),
            (None, None) => None,
        }
    }
}

/// Every listed name scored: what the index must agree with.
pub fn screen_all<'a>(
    id: &str,
    names: &[NameKey],
    list: &'a [DeniedParty],
) -> Option<(Closeness, &'a DeniedParty)> {
    let mut best = Best::default();
    for (e, entry) in list.iter().enumerate() {
        let e = e as u32;
        if !entry.id.is_empty() && !id.is_empty() {
            if id_look(&entry.id) == id_look(id) {
                best.consider(e, id_closeness(&entry.id, id));
            } else if ids_one_apart(&id_look(&entry.id), &id_look(id)) {
                best.consider(e, Closeness::Possible(ID_ONE_EDIT));
            }
        }
        let keys: Vec<NameKey> = entry.all_names().map(listed_key).collect();
        let mut native: Vec<Script> = keys
            .iter()
            .filter(|k| k.native.is_some())
            .map(|k| k.script())
            .collect();
        native.dedup();
        for (declared, listed) in names.iter().flat_map(|d| keys.iter().map(move |l| (d, l))) {
            if !compared_through(declared, &native, listed.native.is_some(), listed.script()) {
                continue;
            }
            best.consider(e, closeness(entry.kind, declared, &Listed::of(listed)));
        }
    }
    best.answer(list)
}
