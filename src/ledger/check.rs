//! `ledger check`: the whole ledger against its log, and the log against
//! every signed head it is given.
//!
//! Design: a head stored in the file proves nothing to someone who can
//! write the file (and may hold the key); a head that left the machine
//! does. So every external head (a file, the hub's acknowledgement) must be
//! a prefix of the log as it is now, and the tables must be exactly what
//! the log says.

use ed25519_dalek::VerifyingKey;
use rusqlite::OptionalExtension;

use super::batch::LOG;
use super::{Ledger, LedgerError, sql};
use crate::clock::to_rfc3339;
use crate::merkle::head::{Head, checkpoint_origin};
use crate::merkle::{Hash, SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, VerdictLeaf};

/// What a passing check covered.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// Leaves in the log.
    pub leaves: u64,
    /// Verdicts (audit rows), each matching its leaf.
    pub verdicts: u64,
    /// Consumed licenses, each matching its leaf.
    pub consumed: u64,
    /// The heads the log was checked against: (where from, size, time).
    pub heads: Vec<(String, u64, String)>,
}

/// RFC 9162 roots of every prefix, computed as leaves stream by: the
/// perfect subtrees of the prefix, folded from the right.
struct RunningRoot {
    stack: Vec<(u32, Hash)>,
    count: u64,
}

impl RunningRoot {
    fn push(&mut self, h: Hash) {
        let mut node = (0u32, h);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, tlog_tiles::node_hash(left, node.1));
        }
        self.stack.push(node);
        self.count += 1;
    }

    fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        for &(_, left) in it {
            acc = tlog_tiles::node_hash(left, acc);
        }
        acc
    }
}

impl Ledger {
    /// Checks every leaf, the tables against the leaves, and the log against
    /// its own signed heads and each of `external` (where from, signed note),
    /// all verified with one of `keys`. `Ok(Err(why))` when the ledger is not intact.
    pub fn check_log(
        &self,
        keys: &[VerifyingKey],
        external: &[(String, String)],
    ) -> Result<Result<CheckReport, String>, LedgerError> {
        // One snapshot for every query: the daemon may be committing meanwhile.
        let _snapshot = self
            .conn
            .unchecked_transaction()
            .map_err(sql(&self.path, super::Operation::Log))?;
        let origin = checkpoint_origin(&self.checkpoint);
        let mut heads: Vec<(String, Head)> = Vec::new();
        let own: Vec<String> = self
            .conn
            .prepare("SELECT note FROM log_heads ORDER BY size")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(sql(&self.path, super::Operation::Log))?;
        for note in own.iter().rev().take(1) {
            match Head::open(note.as_bytes(), &origin, keys) {
                Ok(h) => heads.push(("its own newest head".into(), h)),
                Err(e) => return Ok(Err(format!("its newest signed head does not verify: {e}"))),
            }
        }
        for (from, note) in external {
            match Head::open(note.as_bytes(), &origin, keys) {
                Ok(h) => heads.push((from.clone(), h)),
                Err(e) => {
                    return Ok(Err(format!(
                        "the head from {from} is not this checkpoint's: {e}"
                    )));
                }
            }
        }
        let pending: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM audit WHERE leaf IS NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(sql(&self.path, super::Operation::Log))?;
        if pending {
            return Ok(Err("verdicts written before the log have no leaves yet; start the daemon (or `decide`) once to upgrade".into()));
        }

        let mut wanted: Vec<u64> = heads.iter().map(|h| h.1.size).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut roots: Vec<(u64, Hash)> = Vec::new();
        let mut running = RunningRoot {
            stack: Vec::new(),
            count: 0,
        };
        let (mut verdicts, mut consumptions) = (0u64, 0u64);
        let mut leaves = self
            .conn
            .prepare("SELECT n, leaf FROM log_leaves ORDER BY n")
            .map_err(sql(&self.path, super::Operation::Log))?;
        let mut rows = leaves
            .query([])
            .map_err(sql(&self.path, super::Operation::Log))?;
        let mut audit = self
            .conn
            .prepare("SELECT verdict_json, leaf FROM audit WHERE id = ?1")
            .map_err(sql(&self.path, super::Operation::Log))?;
        let mut consumed = self
            .conn
            .prepare("SELECT seq, record, leaf FROM consumed WHERE license_id = ?1")
            .map_err(sql(&self.path, super::Operation::Log))?;
        while let Some(r) = rows
            .next()
            .map_err(sql(&self.path, super::Operation::Log))?
        {
            let n: i64 = r.get(0).map_err(sql(&self.path, super::Operation::Log))?;
            let leaf: Vec<u8> = r.get(1).map_err(sql(&self.path, super::Operation::Log))?;
            if n as u64 != running.count {
                return Ok(Err(format!(
                    "the log has no leaf {}: leaves were removed",
                    running.count
                )));
            }
            if let Some(v) = VerdictLeaf::from_leaf(&leaf) {
                verdicts += 1;
                let row: Option<(String, Option<i64>)> = audit
                    .query_row([v.audit_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(sql(&self.path, super::Operation::Log))?;
                match row {
                    None => {
                        return Ok(Err(format!(
                            "audit row {} (decided {}) is in the log but not in the audit table: it was deleted",
                            v.audit_id,
                            to_rfc3339(v.decided_at)
                        )));
                    }
                    Some((json, at)) if json != v.verdict || at != Some(n) => {
                        return Ok(Err(format!(
                            "audit row {} differs from its leaf {n}: it was edited",
                            v.audit_id
                        )));
                    }
                    Some(_) => {}
                }
            } else if let Ok(c) = ConsumptionRecord::from_leaf(&leaf) {
                consumptions += 1;
                let row: Option<(i64, Vec<u8>, Option<i64>)> = consumed
                    .query_row([&c.license_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
                    .map_err(sql(&self.path, super::Operation::Log))?;
                match row {
                    None => {
                        return Ok(Err(format!(
                            "license {} was consumed by declaration {} at {} (leaf {n}) but the consumed table has no row for it: it was deleted, so the license would clear again",
                            c.license_id,
                            c.declaration_id,
                            to_rfc3339(c.consumed_at)
                        )));
                    }
                    Some((seq, record, at))
                        if seq as u64 != c.seq || record != leaf || at != Some(n) =>
                    {
                        return Ok(Err(format!(
                            "the consumed row of license {} differs from its leaf {n}: it was edited",
                            c.license_id
                        )));
                    }
                    Some(_) => {}
                }
            } else if crate::record::ClockConfirmedLeaf::from_leaf(&leaf).is_none()
                && crate::record::AlertActionLeaf::from_leaf(&leaf).is_none()
            {
                return Ok(Err(format!(
                    "leaf {n} is neither a verdict, a consumption record, a clock confirmation nor an officer's action on an alert"
                )));
            }
            running.push(leaf_hash(&leaf));
            while let Some(&size) = wanted.first() {
                if size != running.count {
                    break;
                }
                roots.push((size, running.root()));
                wanted.remove(0);
            }
        }
        let size = running.count;
        let (audit_rows, consumed_rows): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM audit), (SELECT COUNT(*) FROM consumed)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql(&self.path, super::Operation::Log))?;
        if audit_rows as u64 != verdicts {
            return Ok(Err(format!(
                "the audit table holds {audit_rows} verdicts but the log {verdicts}: rows were added outside the log"
            )));
        }
        if consumed_rows as u64 != consumptions {
            return Ok(Err(format!(
                "the consumed table holds {consumed_rows} licenses but the log {consumptions}: rows were added outside the log"
            )));
        }
        // The stored hashes must give the same roots as the leaves.
        let log = SqlLog::new(&self.conn, LOG);
        if size > 0 && log.root(size).ok() != Some(running.root()) {
            return Ok(Err(
                "the log's stored hashes do not match its leaves: they were edited".into(),
            ));
        }
        let mut checked = Vec::new();
        for (from, h) in &heads {
            if h.size > size {
                return Ok(Err(format!(
                    "{from} (signed {}) commits to {} leaves but the log holds {size}: committed decisions were removed or rolled back",
                    to_rfc3339(h.time),
                    h.size
                )));
            }
            let root = roots.iter().find(|r| r.0 == h.size).map(|r| r.1);
            let root = if h.size == 0 {
                Some(tlog_tiles::EMPTY_HASH)
            } else {
                root
            };
            if root != Some(h.root) {
                return Ok(Err(format!(
                    "the log's first {} leaves are not those {from} (signed {}) commits to: history was rewritten",
                    h.size,
                    to_rfc3339(h.time)
                )));
            }
            checked.push((from.clone(), h.size, to_rfc3339(h.time)));
        }
        if heads.iter().all(|h| h.0 != "its own newest head") && size > 0 {
            return Ok(Err("the log has leaves but no signed head".into()));
        }
        Ok(Ok(CheckReport {
            leaves: size,
            verdicts,
            consumed: consumptions,
            heads: checked,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_roots_match_the_stored_log() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&SqlLog::create_sql("t")).unwrap();
        let log = SqlLog::new(&conn, "t");
        let mut running = RunningRoot {
            stack: Vec::new(),
            count: 0,
        };
        for i in 0..70u64 {
            let h = leaf_hash(format!("l{i}").as_bytes());
            log.append(i, h).unwrap();
            running.push(h);
            assert_eq!(running.root(), log.root(i + 1).unwrap(), "size {}", i + 1);
        }
    }
}
