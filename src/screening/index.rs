//! The denied-party list indexed, so a party is scored against the few
//! names that could come close rather than all of them.
//!
//! Design: the index may let through names that then score low, never keep
//! out one that would not be [`Closeness::Apart`]. A likeness needs a word
//! that tells the listed name from others to meet a declared word
//! ([`super::score`]), and words meet only in ways the index looks up: the
//! same letters; letters within the edit budget, found through each word
//! with up to that many letters taken out (two words within `k` edits share
//! such a form); the same Double Metaphone code; the same consonants; or a
//! run of words written joined. A Chinese name against a Chinese name
//! shares a character. [`screen_all`] scores every name, and a property
//! test holds the two to the same answer.

use super::ids::{ID_LOOK_ALIKE, ID_NEAR_MIN, ID_ONE_EDIT, id_look, ids_one_apart};
use super::names::{
    NameKey, Script, Token, consonant_key, consonants, listed_key, spelling_fold, without_article,
};
use super::score::{
    Closeness, Listed, POSSIBLE_AT, Rules, closeness, edit_budget, is_key, letters_sim,
    score_bound, word_sim,
};

/// The consonant forms a word is found by, each with how many consonants
/// were taken out: its consonants with up to two out, for a word that may
/// change at all ([`edit_budget`]); else the word itself.
///
/// Design: two words within the budget differ by two consonants taken out
/// at most, counting both sides, so a form with `d` out need only meet the
/// other word's forms with `2 - d` out or fewer. Matching every form
/// against every form would let two words with two consonants in common
/// meet: a list of invented firms made every party a candidate of
/// thousands of names.
fn near_forms(word: &str) -> Vec<(String, usize)> {
    if edit_budget(word.len()) > 0.0 {
        deletions(&consonant_key(word), NEAR_OUT)
    } else {
        vec![(format!("={word}"), 0)]
    }
}

/// The most consonants two words within the edit budget differ by.
const NEAR_OUT: usize = 2;

/// The most two words within the edit budget differ in length: each
/// letter more costs half a unit, and the budget is one unit at most.
const NEAR_LENGTHS: usize = 2;

use super::{DeniedParty, Kind};
use std::hash::BuildHasher;

// Design: keys are the policy's own and lookups only read, so a fast
// keyed hash serves.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// How a word starts, for its consonant forms' keys: two words within the
/// budget start alike (the same letter, or both a vowel), as a word that
/// starts otherwise has no budget left ([`super::score::letters_sim`]).
fn start_class(word: &str) -> u8 {
    match word.bytes().next() {
        Some(c) if b"aeiou".contains(&c) => b'*',
        Some(c) => c,
        None => b'-',
    }
}

/// A word's number with how many consonants its form has out, in one.
fn packed(v: u32, out: usize) -> u32 {
    v << 2 | out as u32
}

/// A listed name, its words as the vocabulary's numbers.
#[derive(Debug, Clone)]
struct Name {
    entry: u32,
    exact: Box<str>,
    form: Option<&'static str>,
    script: Script,
    tokens: Box<[u32]>,
    native: Option<Box<str>>,
}

/// Numbers by a 64-bit hash, in one sorted array: a compact multimap,
/// with a directory by the hash's top bits so a lookup reads one bucket of
/// a few pairs rather than searching the whole array (a party's screen
/// makes hundreds of lookups; a search of millions missed the cache at
/// every step).
#[derive(Debug, Clone, Default)]
struct HashPostings {
    pairs: Vec<(u64, u32)>,
    /// Where each bucket starts in `pairs`, and one past the last.
    directory: Vec<u32>,
    /// How many top bits of a hash choose its bucket.
    bits: u32,
}

impl HashPostings {
    fn finish(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self.pairs.shrink_to_fit();
        // About four pairs a bucket.
        self.bits = (self.pairs.len() / 4).max(1).ilog2().min(30) + 1;
        let buckets = 1usize << self.bits;
        self.directory = Vec::with_capacity(buckets + 1);
        let mut at = 0;
        for b in 0..buckets as u64 {
            while at < self.pairs.len() && self.bucket(self.pairs[at].0) < b {
                at += 1;
            }
            self.directory.push(at as u32);
        }
        self.directory.push(self.pairs.len() as u32);
    }

    fn bucket(&self, h: u64) -> u64 {
        h >> (64 - self.bits)
    }

    fn get(&self, h: u64) -> impl Iterator<Item = u32> + '_ {
        let b = self.bucket(h) as usize;
        let (from, to) = match (self.directory.get(b), self.directory.get(b + 1)) {
            (Some(&f), Some(&t)) => (f as usize, t as usize),
            _ => (0, 0),
        };
        self.pairs[from..to]
            .iter()
            .skip_while(move |&&(k, _)| k < h)
            .take_while(move |&&(k, _)| k == h)
            .map(|&(_, v)| v)
    }
}

/// The list's index; built with the policy.
#[derive(Debug, Clone, Default)]
pub struct ScreenIndex {
    hasher: foldhash::fast::FixedState,
    by_id: HashMap<String, Vec<u32>>,
    /// Each id with one character taken out (every position): two ids one
    /// character apart share one of these.
    by_id_near: HashMap<String, Vec<u32>>,
    names: Vec<Name>,
    /// Per entry: its kind, and the scripts of its names compared as
    /// characters (Chinese, Korean).
    entries: Vec<(Kind, Vec<Script>)>,
    vocab: Vec<Token>,
    vocab_ids: HashMap<Box<str>, u32>,
    /// Per word: the names it tells apart (a key word of theirs).
    keyed: Vec<Vec<u32>>,
    /// Words by each consonant form ([`near_forms`]) and how they start,
    /// each with how many consonants the form has out ([`packed`]).
    near: HashPostings,
    /// Words by sound code.
    by_sound: HashMap<u64, Vec<u32>>,
    /// Words by their spelling folded ([`spelling_fold`]).
    by_spelling: HashPostings,
    /// Words by their consonants; and of names in Arabic script alone.
    by_consonants: HashPostings,
    abjad_consonants: HashPostings,
    /// Names by a run of their words written joined (holding a key word).
    runs: HashPostings,
    /// Names in Chinese or Korean by each distinctive character.
    by_native: HashMap<char, Vec<u32>>,
}

/// A word with up to `k` letters taken out, every way (the word itself first).
fn deletions(w: &str, k: usize) -> Vec<(String, usize)> {
    let mut out = vec![(w.to_owned(), 0)];
    let mut frontier = vec![w.to_owned()];
    for depth in 1..=k {
        let mut next = Vec::new();
        for s in &frontier {
            for i in 0..s.len() {
                let mut t = s.clone();
                t.remove(i);
                next.push(t);
            }
        }
        next.sort_unstable();
        next.dedup();
        out.extend(next.iter().map(|f| (f.clone(), depth)));
        frontier = next;
    }
    out
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
        let mut ix = ScreenIndex::default();
        for (e, entry) in list.iter().enumerate() {
            let e = e as u32;
            if !entry.id.is_empty() {
                let look = id_look(&entry.id);
                for near in one_out(&look) {
                    ix.by_id_near.entry(near).or_default().push(e);
                }
                ix.by_id.entry(look).or_default().push(e);
            }
            let mut native = Vec::new();
            for name in entry.all_names() {
                let key = listed_key(name);
                if key.native.is_some() && !native.contains(&key.script()) {
                    native.push(key.script());
                }
                ix.add_name(e, entry.kind, key);
            }
            ix.entries.push((entry.kind, native));
        }
        ix.near.finish();
        ix.by_spelling.finish();
        ix.by_consonants.finish();
        ix.abjad_consonants.finish();
        ix.runs.finish();
        ix.vocab_ids.shrink_to_fit();
        ix
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
            if is_key_at(i) && self.keyed[v as usize].last() != Some(&n) {
                self.keyed[v as usize].push(n);
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
                    self.runs.pairs.push((h, n));
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
        self.names.push(Name {
            entry,
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
                self.abjad_consonants.pairs.push((h, v));
            }
            return v;
        }
        let v = self.vocab.len() as u32;
        let bare = without_article(&t.text).map(str::to_owned);
        for word in std::iter::once(t.text.to_string()).chain(bare) {
            for (form, out) in near_forms(&word) {
                let h = self.near_hash(&form, &word);
                self.near.pairs.push((h, packed(v, out)));
            }
        }
        let h = self.hash(&spelling_fold(&t.text));
        self.by_spelling.pairs.push((h, v));
        if t.text.len() >= 3 {
            for code in t.sound.iter().filter(|&&c| c != 0) {
                self.by_sound.entry(*code).or_default().push(v);
            }
        }
        let h = self.hash(&consonants(&t.text));
        self.by_consonants.pairs.push((h, v));
        if script == Script::Abjad {
            self.abjad_consonants.pairs.push((h, v));
        }
        self.vocab.push(t.clone());
        self.vocab_ids.insert(t.text.clone(), v);
        self.keyed.push(Vec::new());
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
                    for code in t.sound.iter().filter(|&&c| c != 0) {
                        found.extend(self.by_sound.get(code).into_iter().flatten());
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
            out.extend(&self.keyed[v as usize]);
        }
        if let Some(native) = &key.native {
            for c in native.chars() {
                out.extend(self.by_native.get(&c).into_iter().flatten());
            }
        }
    }

    /// The words a word (or a run written joined) could be within the edit
    /// budget of: those sharing a consonant form, of a length near enough.
    fn near_words(&self, word: &str, found: &mut Vec<u32>) {
        let len = word.len();
        let near_length = |v: u32| self.vocab[v as usize].text.len().abs_diff(len) <= NEAR_LENGTHS;
        for (form, out) in near_forms(word) {
            for p in self.near.get(self.near_hash(&form, word)) {
                let (v, their_out) = (p >> 2, (p & 3) as usize);
                if their_out + out <= NEAR_OUT && near_length(v) {
                    found.push(v);
                }
            }
        }
        // A word that may change meets one that may not only as itself.
        if edit_budget(len) > 0.0 {
            let h = self.near_hash(&format!("={word}"), word);
            found.extend(self.near.get(h).map(|p| p >> 2));
        }
    }

    /// The key of a word's consonant form.
    fn near_hash(&self, form: &str, word: &str) -> u64 {
        self.hasher.hash_one((start_class(word), form))
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
            for &e in self.by_id.get(&look).into_iter().flatten() {
                best.consider(e, id_closeness(&list[e as usize].id, id));
            }
            let mut near: Vec<u32> = one_out(&look)
                .iter()
                .flat_map(|k| self.by_id_near.get(k).into_iter().flatten().copied())
                .filter(|&e| ids_one_apart(&id_look(&list[e as usize].id), &look))
                .collect();
            near.sort_unstable();
            near.dedup();
            for e in near {
                best.consider(e, Closeness::Possible(ID_ONE_EDIT));
            }
        }
        let (mut found, mut met) = (Vec::new(), Vec::new());
        let mut seen = HashMap::default();
        for key in names {
            found.clear();
            seen.clear();
            self.candidates(key, &mut found, &mut met);
            found.sort_unstable();
            found.dedup();
            for &n in &found {
                if !self.may_come_close(key, n, &met, &mut seen) {
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
        seen: &mut HashMap<u32, bool>,
    ) -> bool {
        let name = &self.names[n as usize];
        if (name.native.is_some() && key.native.is_some()) || *name.exact == *key.exact {
            return true;
        }
        let kind = self.entries[name.entry as usize].0;
        let mut may_meet = |v: u32| {
            if met.binary_search(&v).is_ok() {
                return true;
            }
            *seen.entry(v).or_insert_with(|| {
                let t = &*self.vocab[v as usize].text;
                key.tokens
                    .iter()
                    .any(|d| d.text.contains(t) || t.starts_with(&*d.text))
            })
        };
        let listed = name
            .tokens
            .iter()
            .map(|&v| (&self.vocab[v as usize], may_meet(v)));
        score_bound(kind, name.form, key, listed) >= POSSIBLE_AT - 1e-9
    }

    /// A declared name against listed name `n`; `None` when the entry is
    /// not compared through this name (a Chinese name meets an entry with
    /// a Chinese name through that name alone: its pinyin would make
    /// other characters of the same sound the same name).
    fn compare(&self, key: &NameKey, n: u32) -> Option<Closeness> {
        let name = &self.names[n as usize];
        let (kind, native) = &self.entries[name.entry as usize];
        if !compared_through(key, native, name.native.is_some(), name.script) {
            return None;
        }
        Some(closeness(*kind, key, &self.listed(n)))
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
