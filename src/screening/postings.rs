//! Compact multimaps for the screening index: numbers by a 64-bit hash,
//! and numbers by a small number. A national list holds millions of
//! postings, so each is eight bytes or four, in one array.

/// Numbers by a 64-bit hash, in one sorted array, with a directory by the
/// hash's top bits so a lookup reads one bucket of a few pairs rather than
/// searching the whole array (a party's screen makes hundreds of lookups).
///
/// Design: a posting keeps the 32 bits of its hash below the bucket's, so
/// two hashes may rarely meet that differ further down. The index lets
/// through what then scores low, so a rare stray is harmless.
#[derive(Debug, Clone, Default)]
pub(super) struct HashPostings {
    /// What was added, until [`HashPostings::finish`].
    adding: Vec<(u64, u32)>,
    /// Each posting: its hash's bits below the bucket's, and its number.
    pairs: Vec<(u32, u32)>,
    /// Where each bucket starts in `pairs`, and one past the last.
    directory: Vec<u32>,
    /// How many top bits of a hash choose its bucket.
    bits: u32,
}

impl HashPostings {
    /// Adds a number under a hash (found once [`HashPostings::finish`]ed).
    pub(super) fn push(&mut self, hash: u64, value: u32) {
        self.adding.push((hash, value));
    }

    /// Sorts what was added into buckets, once: lookups read only what
    /// is finished.
    pub(super) fn finish(&mut self) {
        let mut adding = std::mem::take(&mut self.adding);
        adding.sort_unstable();
        adding.dedup();
        // About four pairs a bucket.
        self.bits = (adding.len() / 4).max(1).ilog2().min(30) + 1;
        let buckets = 1usize << self.bits;
        self.directory = Vec::with_capacity(buckets + 1);
        let mut at = 0;
        for b in 0..buckets as u64 {
            while at < adding.len() && self.bucket(adding[at].0) < b {
                at += 1;
            }
            self.directory.push(at as u32);
        }
        self.directory.push(adding.len() as u32);
        self.pairs = adding.iter().map(|&(h, v)| (self.below(h), v)).collect();
    }

    /// A hash's bucket (none before [`HashPostings::finish`]: the
    /// directory is empty then, and a lookup finds nothing).
    fn bucket(&self, h: u64) -> u64 {
        h.checked_shr(64 - self.bits).unwrap_or(0)
    }

    /// The 32 bits below the bucket's: in a bucket, pairs sort by these.
    fn below(&self, h: u64) -> u32 {
        ((h << self.bits) >> 32) as u32
    }

    /// The numbers under a hash.
    pub(super) fn get(&self, h: u64) -> impl Iterator<Item = u32> + '_ {
        let b = self.bucket(h) as usize;
        let (from, to) = match (self.directory.get(b), self.directory.get(b + 1)) {
            (Some(&f), Some(&t)) => (f as usize, t as usize),
            _ => (0, 0),
        };
        let key = self.below(h);
        self.pairs[from..to]
            .iter()
            .skip_while(move |&&(k, _)| k < key)
            .take_while(move |&&(k, _)| k == key)
            .map(|&(_, v)| v)
    }
}

/// Numbers by a number from nought up (a word's names): every list in one
/// array, found by where each starts.
#[derive(Debug, Clone, Default)]
pub(super) struct Lists {
    adding: Vec<(u32, u32)>,
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    /// Adds `value` to list `at`.
    pub(super) fn push(&mut self, at: u32, value: u32) {
        self.adding.push((at, value));
    }

    /// Lays the lists out for `count` keys, each sorted without repeats.
    pub(super) fn finish(&mut self, count: usize) {
        let mut adding = std::mem::take(&mut self.adding);
        adding.sort_unstable();
        adding.dedup();
        self.starts = Vec::with_capacity(count + 1);
        let mut at = 0;
        for k in 0..count as u32 {
            self.starts.push(at as u32);
            while at < adding.len() && adding[at].0 <= k {
                at += 1;
            }
        }
        self.starts.push(at as u32);
        self.items = adding.iter().take(at).map(|&(_, v)| v).collect();
    }

    /// List `at` (empty past the keys laid out).
    pub(super) fn get(&self, at: u32) -> &[u32] {
        let at = at as usize;
        match (self.starts.get(at), self.starts.get(at + 1)) {
            (Some(&f), Some(&t)) => &self.items[f as usize..t as usize],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Every number is found under the hash it was added with, once.
        #[test]
        fn hash_postings_find_what_was_added(
            added in prop::collection::vec((any::<u64>(), 0u32..50), 0..400),
            probe in any::<u64>(),
        ) {
            let mut p = HashPostings::default();
            let mut want: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
            for &(h, v) in &added {
                // A few hashes shared, as forms are.
                let h = h % 97;
                p.push(h.wrapping_mul(0x9e37_79b9_7f4a_7c15), v);
                want.entry(h).or_default().push(v);
            }
            p.finish();
            for (h, mut vs) in want {
                vs.sort_unstable();
                vs.dedup();
                let mut got: Vec<u32> = p.get(h.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
                got.sort_unstable();
                prop_assert_eq!(got, vs);
            }
            let stray = probe | 1 << 63;
            prop_assert!(p.get(stray).all(|v| added.iter().any(|&(_, a)| a == v)));
            prop_assert_eq!(HashPostings::default().get(probe).count(), 0);
        }

        /// Each list holds what was added to it, sorted, once.
        #[test]
        fn lists_hold_what_was_added(
            added in prop::collection::vec((0u32..30, 0u32..50), 0..300),
        ) {
            let mut l = Lists::default();
            for &(k, v) in &added {
                l.push(k, v);
            }
            l.finish(30);
            for k in 0..31 {
                let mut want: Vec<u32> = added.iter().filter(|a| a.0 == k).map(|a| a.1).collect();
                want.sort_unstable();
                want.dedup();
                prop_assert_eq!(l.get(k), &want[..]);
            }
        }
    }
}
