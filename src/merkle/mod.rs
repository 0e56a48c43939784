//! Append-only Merkle logs (RFC 9162 hashing) kept in SQLite, with
//! inclusion and consistency proofs, through the `tlog_tiles` crate (a port
//! of Go's `golang.org/x/mod/sumdb/tlog`).
//!
//! A log is a table of *stored hashes* (`idx INTEGER PRIMARY KEY, hash
//! BLOB`), the layout `tlog` defines: appending leaf `n` stores its hash
//! and the hashes of the subtrees it completes, about two rows a leaf; a
//! root or a proof reads at most `log₂ n` of them.
//!
//! Design: every proof that arrives from outside is checked with a bound
//! on its length first ([`PROOF_MAX`]), so no input can make a check work
//! harder than a genuine proof of a 2^64-leaf tree.

pub mod head;
pub mod staged;
#[cfg(test)]
pub(crate) mod test_log;

use rusqlite::{Connection, OptionalExtension, params};
pub use tlog_tiles::Hash;
use tlog_tiles::HashReader;

/// Most hashes in a proof: a tree of 2^64 leaves needs no more.
pub const PROOF_MAX: usize = 64;

/// Why a log operation or a proof failed.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// SQLite failed reading or writing the stored hashes.
    #[error("merkle log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored hash is missing or not 32 bytes: the log table is damaged.
    #[error("merkle log: stored hash {0} is missing or damaged")]
    Damaged(u64),
    /// The proof does not show what it claims.
    #[error("the proof does not verify")]
    InvalidProof,
    /// The proof is longer than any genuine one.
    #[error("proof of {0} hashes is longer than any genuine one")]
    ProofTooLong(usize),
    /// Sizes or indexes that cannot go together (an index beyond the tree, a shrinking tree).
    #[error("{0}")]
    Input(String),
}

/// The RFC 9162 hash of a leaf: SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog_tiles::record_hash(leaf)
}

/// A log kept in table `table` of a SQLite connection.
pub struct SqlLog<'c> {
    conn: &'c Connection,
    table: &'static str,
}

/// `tlog`'s errors carry no I/O detail; the SQLite error is kept here and
/// reported after the call.
struct Reader<'a, 'c> {
    log: &'a SqlLog<'c>,
    failure: std::cell::RefCell<Option<MerkleError>>,
}

impl staged::Fetch for &SqlLog<'_> {
    type Error = MerkleError;
    fn fetch(&mut self, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, MerkleError> {
        let mut unique = indexes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let hashes = self.read(&unique)?;
        Ok(unique.into_iter().zip(hashes).collect())
    }
}

impl HashReader for Reader<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self.log.read(indexes) {
            Ok(h) => Ok(h),
            Err(e) => {
                *self.failure.borrow_mut() = Some(e);
                Err(tlog_tiles::Error::InvalidInput("stored hashes".into()))
            }
        }
    }
}

impl<'c> SqlLog<'c> {
    /// The log in `table` (one of this crate's log tables) of `conn`.
    pub fn new(conn: &'c Connection, table: &'static str) -> SqlLog<'c> {
        SqlLog { conn, table }
    }

    /// The table's schema, for migrations.
    pub fn create_sql(table: &str) -> String {
        format!("CREATE TABLE {table} (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);")
    }

    fn read(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT hash FROM {} WHERE idx = ?1", self.table))?;
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let blob: Option<Vec<u8>> = st.query_row([i as i64], |r| r.get(0)).optional()?;
            let bytes: [u8; 32] = blob
                .and_then(|b| b.try_into().ok())
                .ok_or(MerkleError::Damaged(i))?;
            out.push(Hash(bytes));
        }
        Ok(out)
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Reader<'_, 'c>) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, MerkleError> {
        let reader = Reader {
            log: self,
            failure: std::cell::RefCell::new(None),
        };
        let out = f(&reader);
        if let Some(e) = reader.failure.into_inner() {
            return Err(e);
        }
        out.map_err(|e| MerkleError::Input(e.to_string()))
    }

    /// Appends leaf number `n` (0-based; the log must hold exactly `n` leaves) with hash `h`.
    pub fn append(&self, n: u64, h: Hash) -> Result<(), MerkleError> {
        let hashes = self.with_reader(|r| tlog_tiles::stored_hashes_for_record_hash(n, h, r))?;
        let first = tlog_tiles::stored_hash_index(0, n);
        let mut st = self.conn.prepare_cached(&format!(
            "INSERT INTO {}(idx, hash) VALUES (?1, ?2)",
            self.table
        ))?;
        for (i, h) in hashes.iter().enumerate() {
            st.execute(params![(first + i as u64) as i64, &h.0[..]])?;
        }
        Ok(())
    }

    /// The root of the tree of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        self.with_reader(|r| tlog_tiles::tree_hash(size, r))
    }

    /// The proofs that each of `indexes` is in the tree of size `size`,
    /// reading each stored hash once (consecutive leaves share most of theirs).
    pub fn prove_many(&self, indexes: &[u64], size: u64) -> Result<Vec<Vec<Hash>>, MerkleError> {
        if let Some(i) = indexes.iter().find(|&&i| i >= size) {
            return Err(MerkleError::Input(format!(
                "leaf {i} is not in a tree of {size}"
            )));
        }
        let mut staged = staged::Staged::default();
        let mut source = self;
        staged.run(&mut source, |r| {
            indexes
                .iter()
                .map(|&i| tlog_tiles::prove_record(size, i, r))
                .collect::<Result<Vec<_>, _>>()
        })
    }

    /// The proof that leaf `index` is in the tree of size `size`.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        if index >= size {
            return Err(MerkleError::Input(format!(
                "leaf {index} is not in a tree of {size}"
            )));
        }
        self.with_reader(|r| tlog_tiles::prove_record(size, index, r))
    }

    /// The proof that the tree of size `old` is a prefix of the tree of size `new`.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
        if old == 0 || old > new {
            return Err(MerkleError::Input(format!(
                "no consistency proof from {old} to {new}"
            )));
        }
        self.with_reader(|r| tlog_tiles::prove_tree(new, old, r))
    }

    /// The number of leaves held (the log's size): the stored hash count of
    /// the tree tells it, read from the table's end.
    pub fn size(&self) -> Result<u64, MerkleError> {
        let last: Option<i64> =
            self.conn
                .query_row(&format!("SELECT MAX(idx) FROM {}", self.table), [], |r| {
                    r.get(0)
                })?;
        let Some(last) = last else { return Ok(0) };
        // The leaf whose stored hashes end at `last`: the smallest n with
        // stored_hash_count(n) > last.
        let (mut lo, mut hi) = (0u64, (last as u64).saturating_add(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if tlog_tiles::stored_hash_count(mid + 1) > last as u64 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo + 1)
    }
}

/// Checks that `leaf` is leaf `index` of the tree of size `size` and root `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: &Hash,
    index: u64,
    leaf: &[u8],
) -> Result<(), MerkleError> {
    if proof.len() > PROOF_MAX {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    if index >= size {
        return Err(MerkleError::Input(format!(
            "leaf {index} is not in a tree of {size}"
        )));
    }
    tlog_tiles::check_record(&proof.to_vec(), size, *root, index, leaf_hash(leaf))
        .map_err(|_| MerkleError::InvalidProof)
}

/// Checks that the tree (`old_size`, `old_root`) is a prefix of (`new_size`, `new_root`).
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
) -> Result<(), MerkleError> {
    if proof.len() > PROOF_MAX {
        return Err(MerkleError::ProofTooLong(proof.len()));
    }
    if old_size > new_size {
        return Err(MerkleError::Input(format!(
            "a log cannot shrink from {old_size} to {new_size} leaves"
        )));
    }
    if old_size == 0 {
        return Ok(());
    }
    if old_size == new_size {
        return if old_root == new_root && proof.is_empty() {
            Ok(())
        } else {
            Err(MerkleError::InvalidProof)
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new_size, *new_root, old_size, *old_root)
        .map_err(|_| MerkleError::InvalidProof)
}

/// Hashes as raw 32-byte strings (for CBOR).
pub fn to_bytes(proof: &[Hash]) -> Vec<Vec<u8>> {
    proof.iter().map(|h| h.0.to_vec()).collect()
}

/// Hashes from raw 32-byte strings; `None` if one is not 32 bytes or there are too many.
pub fn from_bytes(raw: &[Vec<u8>]) -> Option<Vec<Hash>> {
    if raw.len() > PROOF_MAX {
        return None;
    }
    raw.iter()
        .map(|b| <[u8; 32]>::try_from(b.as_slice()).ok().map(Hash))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(n: u64) -> (Connection, Vec<Vec<u8>>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&SqlLog::create_sql("t")).unwrap();
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf {i}").into_bytes()).collect();
        {
            let log = SqlLog::new(&conn, "t");
            for (i, l) in leaves.iter().enumerate() {
                log.append(i as u64, leaf_hash(l)).unwrap();
            }
        }
        (conn, leaves)
    }

    /// The RFC 9162 root computed the slow way, by its definition.
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = n.next_power_of_two() / 2;
                tlog_tiles::node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_rfc_9162_and_proofs_verify() {
        let (conn, leaves) = log_of(37);
        let log = SqlLog::new(&conn, "t");
        assert_eq!(log.size().unwrap(), 37);
        for size in 1..=37u64 {
            let root = log.root(size).unwrap();
            assert_eq!(root, mth(&leaves[..size as usize]), "size {size}");
            for i in 0..size {
                let p = log.prove_inclusion(i, size).unwrap();
                verify_inclusion(&p, size, &root, i, &leaves[i as usize]).unwrap();
                assert!(verify_inclusion(&p, size, &root, i, b"other").is_err());
            }
            for old in 1..=size {
                let p = log.prove_consistency(old, size).unwrap();
                let old_root = log.root(old).unwrap();
                verify_consistency(&p, old, &old_root, size, &root).unwrap();
                if old < size {
                    assert!(verify_consistency(&p, old, &root, size, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn a_rewritten_log_is_not_consistent_with_its_old_head() {
        let (conn, mut leaves) = log_of(10);
        let old_root = SqlLog::new(&conn, "t").root(10).unwrap();
        leaves[4] = b"rewritten".to_vec();
        let conn2 = Connection::open_in_memory().unwrap();
        conn2.execute_batch(&SqlLog::create_sql("t")).unwrap();
        let log2 = SqlLog::new(&conn2, "t");
        for (i, l) in leaves.iter().chain([b"more".to_vec()].iter()).enumerate() {
            log2.append(i as u64, leaf_hash(l)).unwrap();
        }
        let p = log2.prove_consistency(10, 11).unwrap();
        let new_root = log2.root(11).unwrap();
        assert!(verify_consistency(&p, 10, &old_root, 11, &new_root).is_err());
        // Shrinking is never consistent.
        assert!(verify_consistency(&[], 11, &new_root, 10, &old_root).is_err());
    }

    #[test]
    fn hostile_proofs_are_refused_cheaply() {
        let (conn, leaves) = log_of(8);
        let log = SqlLog::new(&conn, "t");
        let root = log.root(8).unwrap();
        let long = vec![Hash([0; 32]); 100_000];
        assert!(matches!(
            verify_inclusion(&long, 8, &root, 3, &leaves[3]),
            Err(MerkleError::ProofTooLong(_))
        ));
        assert!(verify_inclusion(&[], u64::MAX, &root, u64::MAX - 1, b"x").is_err());
        assert!(verify_consistency(&[], 0, &root, u64::MAX, &root).is_ok());
        assert!(
            verify_consistency(&[Hash([1; 32])], u64::MAX - 1, &root, u64::MAX, &root).is_err()
        );
        assert!(from_bytes(&[vec![0; 31]]).is_none());
    }
}
