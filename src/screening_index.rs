//! The denied-party list indexed, so a party is scored against the few
//! entries that could come close rather than all of them: ids and word
//! sets by hash, and the rest through their letter pairs.
//!
//! Design: the filter may let through entries that then score low, never
//! keep out one that would score high. A name within the score's reach
//! ([`crate::screening::POSSIBLE_AT`]) of another differs by at most
//! `d = 0.14 × the longer's length` edits, and each edit (a transposition
//! included) removes at most three distinct letter pairs; so they share at
//! least `pairs − 3d` of the shorter's pairs, and their lengths differ by
//! at most `d`. `screen_all` (every entry scored) is kept for the test that
//! proves the two agree.

use crate::policy::DeniedParty;
use crate::screening::{
    Closeness, ID_LOOK_ALIKE, ID_NEAR_MIN, ID_ONE_EDIT, NameKey, POSSIBLE_AT, closeness, id_look,
    ids_one_apart,
};

// Design: keys are the policy's own and lookups only read, so a fast
// keyed hash serves; SipHash was half of screening a party.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The list's index; built with the policy.
#[derive(Debug, Clone, Default)]
pub struct ScreenIndex {
    by_id: HashMap<String, Vec<usize>>,
    /// Each id with one character taken out (every position): two ids one
    /// character apart share one of these.
    by_id_near: HashMap<String, Vec<usize>>,
    by_words: HashMap<String, Vec<(usize, usize)>>,
    /// (entry, name) of each indexed name, by its number.
    names: Vec<(usize, usize)>,
    /// Letter pairs of the distinctive words, sorted.
    sorted: Pairs,
    /// Letter pairs of the distinctive words in the order written.
    written: Pairs,
}

/// An inverted index of letter pairs; each pair's names sorted by length,
/// so a query reads only those whose length is within reach.
#[derive(Debug, Clone, Default)]
struct Pairs {
    postings: HashMap<[u8; 2], Vec<(usize, u32)>>,
    /// Per name: its length (bytes; the folded forms are ASCII) and distinct pairs.
    shape: Vec<(usize, usize)>,
}

impl Pairs {
    fn add(&mut self, n: u32, s: &str) {
        let pairs = distinct_pairs(s);
        self.shape.push((s.len(), pairs.len()));
        for p in pairs {
            self.postings.entry(p).or_default().push((s.len(), n));
        }
    }

    /// Sorts each pair's names by length, once all are added.
    fn finish(&mut self) {
        for list in self.postings.values_mut() {
            list.sort_unstable();
        }
    }

    /// The names that could score [`POSSIBLE_AT`] or more against `s`.
    /// `counts` is all zeros on entry and on return.
    fn candidates(&self, s: &str, counts: &mut Vec<u16>, out: &mut Vec<u32>) {
        let pairs = distinct_pairs(s);
        counts.resize(self.shape.len(), 0);
        let mut touched = Vec::new();
        // Lengths a name can have and still score POSSIBLE_AT against `s`.
        let shortest = (s.len() as f64 * POSSIBLE_AT - 1e-9).ceil() as usize;
        let longest = (s.len() as f64 / POSSIBLE_AT + 1e-9).floor() as usize;
        for p in &pairs {
            let Some(list) = self.postings.get(p) else {
                continue;
            };
            let from = list.partition_point(|&(len, _)| len < shortest);
            for &(_, n) in list[from..].iter().take_while(|&&(len, _)| len <= longest) {
                let c = &mut counts[n as usize];
                if *c == 0 {
                    touched.push(n);
                }
                *c = c.saturating_add(1);
            }
        }
        for n in touched {
            let common = std::mem::take(&mut counts[n as usize]);
            let (len, distinct) = self.shape[n as usize];
            let longer = len.max(s.len());
            // The most edits a score of POSSIBLE_AT allows (whole edits only).
            let edits = ((1.0 - POSSIBLE_AT) * longer as f64 + 1e-9).floor() as usize;
            if len.abs_diff(s.len()) > edits {
                continue;
            }
            let fewer = distinct.min(pairs.len());
            if usize::from(common) + 3 * edits >= fewer {
                out.push(n);
            }
        }
    }
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

fn distinct_pairs(s: &str) -> Vec<[u8; 2]> {
    let mut v: Vec<[u8; 2]> = s.as_bytes().windows(2).map(|w| [w[0], w[1]]).collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl ScreenIndex {
    /// Indexes a list.
    pub fn new(list: &[DeniedParty]) -> ScreenIndex {
        let mut ix = ScreenIndex::default();
        for (e, entry) in list.iter().enumerate() {
            if !entry.id.is_empty() {
                let look = id_look(&entry.id);
                for near in one_out(&look) {
                    ix.by_id_near.entry(near).or_default().push(e);
                }
                ix.by_id.entry(look).or_default().push(e);
            }
            for (k, name) in entry.names.iter().enumerate() {
                ix.by_words
                    .entry(name.words.join(" "))
                    .or_default()
                    .push((e, k));
                let n = ix.names.len() as u32;
                ix.names.push((e, k));
                ix.sorted.add(n, &name.distinctive);
                ix.written.add(n, &name.written);
            }
        }
        ix.sorted.finish();
        ix.written.finish();
        ix
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
        let mut exact: Option<usize> = None;
        let mut best: Option<(f64, usize)> = None;
        let mut consider = |e: usize, c: Closeness, exact: &mut Option<usize>| match c {
            Closeness::Exact => *exact = Some(exact.map_or(e, |x| x.min(e))),
            Closeness::Possible(s) => {
                if best.is_none_or(|(b, be)| s > b || (s == b && e < be)) {
                    best = Some((s, e));
                }
            }
            Closeness::Apart => {}
        };
        // The listed id itself is certain; its look-alike, or an id one
        // character from it, only likely.
        if !id.is_empty() {
            let look = id_look(id);
            for &e in self.by_id.get(&look).into_iter().flatten() {
                let c = if list[e].id == id {
                    Closeness::Exact
                } else {
                    Closeness::Possible(ID_LOOK_ALIKE)
                };
                consider(e, c, &mut exact);
            }
            let mut near: Vec<usize> = one_out(&look)
                .iter()
                .flat_map(|k| self.by_id_near.get(k).into_iter().flatten().copied())
                .filter(|&e| ids_one_apart(&id_look(&list[e].id), &look))
                .collect();
            near.sort_unstable();
            near.dedup();
            for e in near {
                consider(e, Closeness::Possible(ID_ONE_EDIT), &mut exact);
            }
        }
        let (mut counts, mut found) = (Vec::new(), Vec::new());
        for name in names {
            for &(e, k) in self
                .by_words
                .get(&name.words.join(" "))
                .into_iter()
                .flatten()
            {
                consider(e, closeness(name, &list[e].names[k]), &mut exact);
            }
            found.clear();
            self.sorted
                .candidates(&name.distinctive, &mut counts, &mut found);
            self.written
                .candidates(&name.written, &mut counts, &mut found);
            found.sort_unstable();
            found.dedup();
            for &n in &found {
                let (e, k) = self.names[n as usize];
                consider(e, closeness(name, &list[e].names[k]), &mut exact);
            }
        }
        match (exact, best) {
            (Some(e), _) => Some((Closeness::Exact, &list[e])),
            (None, Some((s, e))) => Some((Closeness::Possible(s), &list[e])),
            (None, None) => None,
        }
    }
}

/// Every entry scored: what the index must agree with.
pub fn screen_all<'a>(
    id: &str,
    names: &[NameKey],
    list: &'a [DeniedParty],
) -> Option<(Closeness, &'a DeniedParty)> {
    let mut best: Option<(f64, &DeniedParty)> = None;
    for entry in list {
        if !entry.id.is_empty() && entry.id == id {
            return Some((Closeness::Exact, entry));
        }
        if !entry.id.is_empty() && !id.is_empty() {
            let score = if id_look(&entry.id) == id_look(id) {
                Some(ID_LOOK_ALIKE)
            } else if ids_one_apart(&id_look(&entry.id), &id_look(id)) {
                Some(ID_ONE_EDIT)
            } else {
                None
            };
            if let Some(score) = score
                && best.is_none_or(|(b, _)| score > b)
            {
                best = Some((score, entry));
            }
        }
        for (name, listed) in names
            .iter()
            .flat_map(|n| entry.names.iter().map(move |l| (n, l)))
        {
            match closeness(name, listed) {
                Closeness::Exact => return Some((Closeness::Exact, entry)),
                Closeness::Possible(score) if best.is_none_or(|(b, _)| score > b) => {
                    best = Some((score, entry));
                }
                _ => {}
            }
        }
    }
    best.map(|(score, entry)| (Closeness::Possible(score), entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::{id_key, name_keys};
    use proptest::prelude::*;

    fn listed(names: &[&str]) -> Vec<DeniedParty> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| DeniedParty {
                id: if i % 3 == 0 {
                    id_key(&format!("XX-{i}-0042"))
                } else {
                    String::new()
                },
                names: name_keys(n),
                display_name: (*n).to_owned(),
                aliases: Vec::new(),
                source: String::new(),
            })
            .collect()
    }

    const LIST: &[&str] = &[
        "Shadow Defense Systems LLC",
        "Shenzhen Hongda Rare Metals Technology Co., Ltd.",
        "ООО Ростек Магнит Трейдинг",
        "Falcon Gulf Aerospace FZE",
        "Nordwind Präzisionstechnik GmbH",
        "Korea Ryonbong General Corporation",
        "Pars Aviation Parts Supply Company",
        "Everbright Sino Magnet Holdings Limited",
        "Apex Drone Dynamics Inc.",
        "Anatolia Kinetic Systems A.S.",
        "Shadow Defence Systems Inc",
        "深圳宏达稀有金属科技有限公司",
    ];

    /// A name with a few of `ops` applied: letters changed, doubled,
    /// dropped, swapped, words moved.
    fn mutate(name: &str, ops: &[(u8, usize)]) -> String {
        let mut c: Vec<char> = name.chars().collect();
        for &(op, at) in ops {
            if c.len() < 2 {
                break;
            }
            let i = at % (c.len() - 1);
            match op % 5 {
                0 => c[i] = 'x',
                1 => c.insert(i, c[i]),
                2 => {
                    c.remove(i);
                }
                3 => c.swap(i, i + 1),
                _ => {
                    let s: String = c.iter().collect();
                    let mut w: Vec<&str> = s.split(' ').collect();
                    w.rotate_left(1);
                    c = w.join(" ").chars().collect();
                }
            }
        }
        c.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_index_answers_as_scoring_every_entry_does(
            pick in 0..LIST.len(),
            ops in prop::collection::vec((any::<u8>(), any::<usize>()), 0..4),
            id in prop::option::of(0usize..12),
            id_edit in prop::option::of(any::<u8>()),
        ) {
            let list = listed(LIST);
            let index = ScreenIndex::new(&list);
            let name = mutate(LIST[pick], &ops);
            let mut id = id.map(|i| id_key(&format!("XX-{i}-0042"))).unwrap_or_default();
            // Sometimes one character of it changed: one edit from a listed id.
            if let Some(x) = id_edit.filter(|_| !id.is_empty()) {
                let mut c: Vec<char> = id.chars().collect();
                let i = usize::from(x) % c.len();
                c[i] = if c[i] == '7' { '8' } else { '7' };
                id = c.into_iter().collect();
            }
            let keys = name_keys(&name);
            let a = index.screen(&id, &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            let b = screen_all(&id, &keys, &list).map(|(c, e)| (c, e.display_name.clone()));
            prop_assert_eq!(a, b, "{}", name);
        }
    }
}
