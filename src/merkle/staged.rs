//! Merkle log operations for stores that fetch hashes in batches (a
//! database across the network), rather than one at a time.
//!
//! Design: which stored hashes `tlog` reads depends only on the sizes and
//! indexes involved, never on the hashes' values. So an operation is run
//! once against the hashes at hand, recording which are missing; those are
//! fetched in one query; and it is run again. Hashes written in the same
//! transaction are kept at hand, so appending a batch of leaves needs few
//! fetches.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::HashReader;

use super::Hash;

/// Hashes at hand, and those an operation asked for and did not find.
#[derive(Debug, Default)]
pub struct Staged {
    known: HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
    /// Hashes appended here, to be written: (index, hash).
    pub written: Vec<(u64, Hash)>,
}

impl HashReader for Staged {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        for i in indexes {
            match self.known.get(i) {
                Some(h) => out.push(*h),
                None => {
                    self.missing.borrow_mut().push(*i);
                    out.push(Hash([0; 32]));
                }
            }
        }
        Ok(out)
    }
}

/// Where the stored hashes live: fetches some by index.
pub trait Fetch {
    /// The error fetching fails with.
    type Error: From<super::MerkleError>;
    /// The hashes at `indexes` (any order; each must exist).
    fn fetch(&mut self, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, Self::Error>;
}

impl Staged {
    /// Runs `op` with every hash it reads at hand, fetching the missing ones (once, batched).
    pub fn run<T, S: Fetch>(
        &mut self,
        source: &mut S,
        op: impl Fn(&Staged) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, S::Error> {
        for _ in 0..2 {
            self.missing.borrow_mut().clear();
            let out = op(self);
            let missing = std::mem::take(&mut *self.missing.borrow_mut());
            if missing.is_empty() {
                return out.map_err(|e| super::MerkleError::Input(e.to_string()).into());
            }
            for (i, h) in source.fetch(&missing)? {
                self.known.insert(i, h);
            }
        }
        Err(super::MerkleError::Input("stored hashes missing from the log".into()).into())
    }

    /// Runs `op` once: its result if every hash it read was at hand, else
    /// the indexes missing (fetch them, [`Staged::know`] them, run again).
    pub fn attempt<T>(
        &self,
        op: impl Fn(&Staged) -> Result<T, tlog_tiles::Error>,
    ) -> Result<Result<T, super::MerkleError>, Vec<u64>> {
        self.missing.borrow_mut().clear();
        let out = op(self);
        let missing = std::mem::take(&mut *self.missing.borrow_mut());
        if missing.is_empty() {
            Ok(out.map_err(|e| super::MerkleError::Input(e.to_string())))
        } else {
            Err(missing)
        }
    }

    /// Puts fetched hashes at hand.
    pub fn know(&mut self, hashes: impl IntoIterator<Item = (u64, Hash)>) {
        self.known.extend(hashes);
    }

    /// Keeps the hashes `stored_hashes` gave for leaf `n` at hand and in [`Staged::written`].
    pub fn wrote(&mut self, n: u64, hashes: Vec<Hash>) {
        let first = tlog_tiles::stored_hash_index(0, n);
        for (k, h) in hashes.into_iter().enumerate() {
            let idx = first + k as u64;
            self.known.insert(idx, h);
            self.written.push((idx, h));
        }
    }

    /// Appends leaf `n` (the log holds `n` leaves) with hash `h`; the new
    /// hashes are kept at hand and in [`Staged::written`].
    pub fn append<S: Fetch>(&mut self, source: &mut S, n: u64, h: Hash) -> Result<(), S::Error> {
        let hashes = self.run(source, |r| {
            tlog_tiles::stored_hashes_for_record_hash(n, h, r)
        })?;
        self.wrote(n, hashes);
        Ok(())
    }

    /// The root of the first `size` leaves.
    pub fn root<S: Fetch>(&mut self, source: &mut S, size: u64) -> Result<Hash, S::Error> {
        self.run(source, |r| tlog_tiles::tree_hash(size, r))
    }

    /// Inclusion proofs of leaves `indexes` in the tree of `size`, fetching
    /// every hash they need in one batch.
    pub fn prove_many<S: Fetch>(
        &mut self,
        source: &mut S,
        indexes: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, S::Error> {
        self.run(source, |r| {
            indexes
                .iter()
                .map(|&i| tlog_tiles::prove_record(size, i, r))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{SqlLog, leaf_hash};

    /// A source counting its fetches.
    struct Counted(HashMap<u64, Hash>, usize);

    impl Fetch for Counted {
        type Error = crate::merkle::MerkleError;
        fn fetch(&mut self, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, Self::Error> {
            self.1 += 1;
            Ok(indexes
                .iter()
                .filter_map(|i| self.0.get(i).map(|h| (*i, *h)))
                .collect())
        }
    }

    #[test]
    fn staged_operations_agree_with_the_sqlite_log_and_fetch_in_batches() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&SqlLog::create_sql("t")).unwrap();
        let log = SqlLog::new(&conn, "t");
        let mut source = Counted(HashMap::new(), 0);
        // 300 leaves appended in batches of 50, each batch a fresh Staged (a transaction).
        for batch in 0..6u64 {
            let mut st = Staged::default();
            for k in 0..50 {
                let n = batch * 50 + k;
                let h = leaf_hash(&n.to_be_bytes());
                log.append(n, h).unwrap();
                st.append(&mut source, n, h).unwrap();
            }
            let size = (batch + 1) * 50;
            assert_eq!(st.root(&mut source, size).unwrap(), log.root(size).unwrap());
            source.0.extend(st.written.iter().copied());
        }
        assert!(source.1 <= 6 * 8, "{} fetches for 6 batches", source.1);
        let mut st = Staged::default();
        let before = source.1;
        let proofs = st.prove_many(&mut source, &[0, 7, 150, 299], 300).unwrap();
        assert_eq!(source.1 - before, 1, "one fetch for every proof");
        for (i, p) in [0u64, 7, 150, 299].iter().zip(proofs) {
            assert_eq!(p, log.prove_inclusion(*i, 300).unwrap());
        }
    }
}
