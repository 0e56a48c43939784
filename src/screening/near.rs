//! The near keys: how a word is found by the words within the edit
//! budget of it, without comparing it with every word of the list.

use super::names::consonant_class;
use super::score::edit_budget;
use std::hash::BuildHasher;

/// A word's consonants as the near lookup keys them: each as its sound's
/// class ([`consonant_class`]), vowels out, a run of one class once.
fn skeleton(word: &str) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(word.len());
    for c in word.bytes().filter(|&c| !is_vowel(c)) {
        let c = consonant_class(c);
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    out
}

fn is_vowel(c: u8) -> bool {
    matches!(c, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

// The near keys' families, kept apart in the hash.
const SKELETON: u8 = 0;
const WORD: u8 = 1;
const WORD_LESS_ONE: u8 = 2;

/// Calls `each` with the keys a listed word is found by within the edit
/// budget: itself; and, for a word that may change at all, how it starts
/// with its [`skeleton`], and itself with a consonant (or a doubled one)
/// out.
///
/// Design: two words within the budget (a unit at most, [`super::score::letters_sim`])
/// start alike (otherwise no budget is left) and either share a skeleton
/// (vowels, a consonant for one of its class and a doubled letter change
/// nothing there) or differ by one change that spends the whole unit: a
/// consonant added or dropped (or a doubled one, half a unit each), or two
/// consonants swapped; a consonant of another class costs a unit and a
/// half. Such words are otherwise letter for letter the same, so the
/// declared word's lookups ([`declared_near_keys`]) find the listed one
/// by its skeleton, by itself less a consonant, or by the declared word
/// less a consonant or swapped. A property test holds the two to it.
pub(super) fn listed_near_keys(
    hasher: &foldhash::fast::FixedState,
    word: &str,
    mut each: impl FnMut(u64),
) {
    if !shared_keys(hasher, word, &mut each) {
        return;
    }
    less_a_consonant(word, |form| each(hasher.hash_one((WORD_LESS_ONE, form))));
}

/// Calls `each` with the keys both sides have: the word itself, and for a
/// word that may change at all, how it starts with its [`skeleton`];
/// whether it may change.
fn shared_keys(
    hasher: &foldhash::fast::FixedState,
    word: &str,
    each: &mut impl FnMut(u64),
) -> bool {
    each(hasher.hash_one((WORD, word.as_bytes())));
    if edit_budget(word.len()) <= 0.0 {
        return false;
    }
    each(hasher.hash_one((SKELETON, start_class(word), &skeleton(word)[..])));
    true
}

/// Calls `each` with the keys a declared word (or a run written joined)
/// looks up: those [`listed_near_keys`] gives the listed words it could
/// be within the edit budget of.
pub(super) fn declared_near_keys(
    hasher: &foldhash::fast::FixedState,
    word: &str,
    mut each: impl FnMut(u64),
) {
    if !shared_keys(hasher, word, &mut each) {
        return;
    }
    // The listed word has a consonant more.
    each(hasher.hash_one((WORD_LESS_ONE, word.as_bytes())));
    // The declared word has one more, or two swapped.
    less_a_consonant(word, |form| each(hasher.hash_one((WORD, form))));
    let w = word.as_bytes();
    let mut form = w.to_vec();
    for i in 1..w.len() {
        let (x, y) = (w[i - 1], w[i]);
        if x != y && !is_vowel(x) && !is_vowel(y) {
            form.swap(i - 1, i);
            each(hasher.hash_one((WORD, &form[..])));
            form.swap(i - 1, i);
        }
    }
}

/// Calls `each` with a word less each consonant, and less each doubled
/// consonant (both letters), in turn (after the first letter: a word that
/// starts otherwise is not within the budget).
fn less_a_consonant(word: &str, mut each: impl FnMut(&[u8])) {
    let w = word.as_bytes();
    let mut form = Vec::with_capacity(w.len());
    for i in 1..w.len() {
        if is_vowel(w[i]) || w[i - 1] == w[i] {
            continue;
        }
        let doubled = w.get(i + 1) == Some(&w[i]);
        for out in [1, 2].into_iter().filter(|&n| n == 1 || doubled) {
            form.clear();
            form.extend_from_slice(&w[..i]);
            form.extend_from_slice(&w[i + out..]);
            each(&form);
        }
    }
}

/// How a word starts, for its near keys: the same letter, or a vowel
/// ([`super::score::letters_sim`]'s start).
fn start_class(word: &str) -> u8 {
    match word.bytes().next() {
        Some(c) if b"aeiou".contains(&c) => b'*',
        Some(c) => c,
        None => b'-',
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::score::letters_sim;
    use proptest::prelude::*;

    fn keys(word: &str, listed: bool) -> Vec<u64> {
        let mut out = Vec::new();
        let hasher = foldhash::fast::FixedState::default();
        if listed {
            listed_near_keys(&hasher, word, |h| out.push(h));
        } else {
            declared_near_keys(&hasher, word, |h| out.push(h));
        }
        out
    }

    /// A word with each of `ops` applied: a letter changed, doubled,
    /// dropped, added, or two swapped.
    fn changed(word: &str, ops: &[(u8, usize, u8)]) -> String {
        let mut w = word.as_bytes().to_vec();
        for &(op, at, letter) in ops {
            let i = at % w.len().max(1);
            match op % 5 {
                0 if !w.is_empty() => w[i] = letter,
                1 if !w.is_empty() => w.insert(i, w[i]),
                2 if w.len() > 1 => {
                    w.remove(i);
                }
                3 => w.insert(i.min(w.len()), letter),
                _ if i + 1 < w.len() => w.swap(i, i + 1),
                _ => {}
            }
        }
        String::from_utf8_lossy(&w).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]
        /// Design: two words the scorer finds within the edit budget share
        /// a near key, so the index never keeps one from the other.
        #[test]
        fn words_within_the_budget_share_a_near_key(
            word in "[aeiouybdgkqrstthz]{1,10}",
            ops in prop::collection::vec((any::<u8>(), any::<usize>(), prop::sample::select(b"aeiyktdsrzh".to_vec())), 1..3),
        ) {
            let other = changed(&word, &ops);
            if letters_sim(&word, &other) > 0.0 {
                for (listed, declared) in [(&word, &other), (&other, &word)] {
                    let (a, b) = (keys(listed, true), keys(declared, false));
                    prop_assert!(a.iter().any(|k| b.contains(k)), "{} / {}", listed, declared);
                }
            }
        }
    }
}
