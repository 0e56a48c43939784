//! The checkpoint's side of sync in the ledger: the outbox of its own
//! records, its replica of the hub's national log, and alerts learned
//! from the hub.

use rusqlite::{OptionalExtension, params};

use super::batch::LOG;
use super::{Cached, Ledger, LedgerError, Publication, insert_alert, sql};
use crate::clock::UnixTime;
use crate::merkle::head::Head;
use crate::merkle::{Hash, SqlLog, leaf_hash};
use crate::record::{ConsumptionRecord, ProvenRecord, double_use_alert};
use crate::verdict::Alert;

/// The table of this checkpoint's replica of the hub's log.
const HUB_LOG: &str = "hub_log_hashes";

/// A feed entry whose hub inclusion and checkpoint origin were verified.
#[derive(Debug, Clone)]
pub struct VerifiedEntry {
    /// Global number.
    pub g: u64,
    /// The record.
    pub record: ConsumptionRecord,
    /// The record with the proof of its origin.
    pub proven: ProvenRecord,
}

/// What storing feed entries changed.
#[derive(Debug, Default)]
pub struct FeedOutcome {
    /// Entries stored now for the first time.
    pub stored: usize,
    /// Every feed entry up to this global number is held here.
    pub high_water: u64,
    /// Own records now seen in the hub's log, and so out of the outbox.
    pub included: usize,
    /// Alerts raised (double use of a license consumed here), queued for publication.
    pub publications: Vec<Publication>,
    /// Entries refused because they contradict what is held; none of them stored.
    pub conflicts: Vec<FeedConflict>,
}

/// A feed entry, or a hub head, that contradicts what the ledger already
/// holds, or shows that a checkpoint's key signed two histories.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedConflict {
    /// The hub gave this global number to another record before.
    GlobalNumber {
        /// The global number.
        g: u64,
        /// The record held under it, as (checkpoint, seq).
        held: (String, u64),
        /// The record now offered, as (checkpoint, seq).
        offered: (String, u64),
    },
    /// The checkpoint's key signed two different records under one number.
    /// Both are kept and count; `own` if the checkpoint is this one.
    Equivocation {
        /// The checkpoint.
        checkpoint: String,
        /// The number.
        seq: u64,
        /// The record held before, and the one now learned, each proven.
        pair: Box<(ProvenRecord, ProvenRecord)>,
        /// The checkpoint is this one.
        own: bool,
    },
    /// A record under this checkpoint's key, proven by a head of a log this
    /// ledger does not hold: signed elsewhere with its key (or this ledger
    /// was restored from an older copy). Kept: the license counts as used.
    ForeignOwn {
        /// The record's number.
        seq: u64,
        /// Its license.
        license_id: String,
        /// The head that proves it (signed note).
        head: String,
    },
    /// The national log holds a record of this checkpoint, proven by a head
    /// of this very log, that its ledger no longer holds: the ledger's tables
    /// lost committed decisions their log still has.
    LostOwn {
        /// The record's number.
        seq: u64,
        /// Its license, consumed again by it.
        license_id: String,
        /// This checkpoint's own signed head that proves the record.
        head: String,
    },
    /// A head the hub signed is not the log this checkpoint holds from it:
    /// the hub forked or rewrote its history.
    HubLog {
        /// The hub head that does not match (signed note).
        head: String,
        /// A hub head of the same log that the replica matched (signed note), if any.
        earlier: Option<String>,
        /// The replica's root at the offending head's size.
        replica_root: Hash,
    },
}

impl std::fmt::Display for FeedConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedConflict::GlobalNumber { g, held, offered } => write!(
                f,
                "the hub numbered {}#{} as entry {g}, which it gave to {}#{} before",
                offered.0, offered.1, held.0, held.1
            ),
            FeedConflict::Equivocation {
                checkpoint,
                seq,
                own: false,
                ..
            } => write!(
                f,
                "the key of checkpoint {checkpoint} signed two different records under number {seq}; both count as uses of their licenses"
            ),
            FeedConflict::Equivocation { seq, .. } => write!(
                f,
                "this checkpoint's key signed a record under number {seq} that is not the one this ledger holds: the key is being used elsewhere (or this ledger was restored from an older copy); both records count as uses of their licenses"
            ),
            FeedConflict::ForeignOwn {
                seq, license_id, ..
            } => write!(
                f,
                "a record under this checkpoint's key (number {seq}, license {license_id}) that this checkpoint never signed: the key is being used elsewhere (or this ledger was restored from an older copy); the license counts as used"
            ),
            FeedConflict::LostOwn {
                seq, license_id, ..
            } => write!(
                f,
                "the national log holds this checkpoint's record {seq} (license {license_id}), proven by its own signed log, but its ledger does not: committed decisions were lost or erased; the license stays consumed"
            ),
            FeedConflict::HubLog { head, .. } => {
                let size = Head::peek(head.as_bytes()).map(|h| h.size).unwrap_or(0);
                write!(
                    f,
                    "the hub signed a head of {size} entries that is not the log it showed this checkpoint: its history forked or was rewritten"
                )
            }
        }
    }
}

impl Ledger {
    /// Remembers that own records up to `seq` went to the hub at least once.
    pub fn note_sent(&mut self, seq: u64) -> Result<(), LedgerError> {
        self.conn
            .exec_cached(
                "INSERT INTO meta(key, value) VALUES ('sent_high', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE CAST(meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                [seq.to_string()],
            )
            .map(|_| ())
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// The highest own record ever sent to the hub (0: none).
    pub fn sent_high(&self) -> Result<u64, LedgerError> {
        self.meta_int("sent_high").map(|v| v.max(0) as u64)
    }

    /// The newest of this checkpoint's heads the hub holds, as its sealed
    /// acknowledgement said (kept so consistency proofs start from it).
    pub fn hub_holds_head(&self) -> Result<Option<String>, LedgerError> {
        self.conn
            .row_cached(
                "SELECT value FROM meta WHERE key = 'hub_holds_head'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// Keeps the head the hub's acknowledgement says it holds.
    pub fn set_hub_holds_head(&mut self, note: &str) -> Result<(), LedgerError> {
        self.conn
            .exec_cached(
                "INSERT INTO meta(key, value) VALUES ('hub_holds_head', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [note],
            )
            .map(|_| ())
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    fn meta_int(&self, key: &str) -> Result<i64, LedgerError> {
        self.conn
            .row_cached(
                "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1",
                [key],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// Records waiting for the hub's log.
    pub fn outbox_depth(&self) -> Result<u64, LedgerError> {
        self.conn
            .row_cached("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// Every feed entry up to this global number is held here.
    pub fn feed_high_water(&self) -> Result<u64, LedgerError> {
        high_water(&self.conn).map_err(sql(&self.path, super::Operation::Sync))
    }

    /// The newest hub head the replica matched, if any (signed note).
    pub fn newest_hub_head(&self) -> Result<Option<String>, LedgerError> {
        self.conn
            .row_cached(
                "SELECT note FROM hub_heads WHERE checked = 1 ORDER BY size DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// Stores verified feed entries and the verified hub head they came
    /// with, in one transaction: other checkpoints' records become remote
    /// consumptions, one for a license consumed here raises `double_use`,
    /// own records seen in the hub's log leave the outbox; the replica of
    /// the hub's log grows to the high-water mark and every hub head held is
    /// checked against it. Idempotent. What contradicts what is held is not
    /// stored but returned as a conflict.
    ///
    /// Design: the caller has verified the hub head's signature, every
    /// entry's inclusion in it, and every record's origin.
    pub fn store_feed(
        &mut self,
        entries: &[VerifiedEntry],
        hub_head: Option<(&Head, &str)>,
        now: UnixTime,
    ) -> Result<FeedOutcome, LedgerError> {
        let here = self.checkpoint.clone();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&path, super::Operation::Sync))?;
        let mut out = FeedOutcome::default();
        for e in entries {
            let rec = &e.record;
            let leaf = &e.proven.leaf;
            let held_at_g: Option<(String, i64, Option<Vec<u8>>)> = tx
                .row_cached(
                    "SELECT checkpoint, seq, leaf FROM hub_feed WHERE g = ?1",
                    [e.g as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql(&path, super::Operation::Sync))?;
            if let Some((cp, seq, held_leaf)) = held_at_g
                && (cp != rec.checkpoint
                    || seq as u64 != rec.seq
                    || held_leaf.is_some_and(|l| l != *leaf))
            {
                out.conflicts.push(FeedConflict::GlobalNumber {
                    g: e.g,
                    held: (cp, seq as u64),
                    offered: (rec.checkpoint.clone(), rec.seq),
                });
                continue;
            }
            let new = tx
                .exec_cached(
                    "INSERT OR IGNORE INTO hub_feed(g, checkpoint, seq, leaf) VALUES (?1, ?2, ?3, ?4)",
                    params![e.g as i64, rec.checkpoint, rec.seq as i64, leaf],
                )
                .map_err(sql(&path, super::Operation::Sync))?;
            out.stored += new;
            if rec.checkpoint == here {
                let held: Option<Vec<u8>> = tx
                    .row_cached(
                        "SELECT record FROM consumed WHERE seq = ?1",
                        [rec.seq as i64],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql(&path, super::Operation::Sync))?;
                match held {
                    Some(h) if h == *leaf => {
                        // Verified in the hub's log: it may leave the outbox.
                        out.included += tx
                            .exec_cached("DELETE FROM outbox WHERE seq = ?1", [rec.seq as i64])
                            .map_err(sql(&path, super::Operation::Sync))?;
                        // A record under this number signed elsewhere, learned
                        // before this one: now both are in the national log.
                        let foreign = other_at_number(&tx, &here, rec.seq, leaf)
                            .map_err(sql(&path, super::Operation::Sync))?;
                        if new > 0
                            && let Some(other) = foreign
                        {
                            out.conflicts.push(FeedConflict::Equivocation {
                                checkpoint: here.clone(),
                                seq: rec.seq,
                                pair: Box::new((other, e.proven.clone())),
                                own: true,
                            });
                        }
                        continue;
                    }
                    Some(_) => {
                        let kept =
                            keep_remote(&tx, e, now).map_err(sql(&path, super::Operation::Sync))?;
                        if kept
                            && let Some(p) = double_use_here(&tx, &here, &rec.license_id, now)
                                .map_err(|e| e.into_ledger(&path))?
                        {
                            out.publications.push(p);
                        }
                        let own = own_proven_by(&tx, OwnKey::Seq(rec.seq))
                            .map_err(|e| e.into_ledger(&path))?;
                        if kept && let Some((_, own)) = own {
                            out.conflicts.push(FeedConflict::Equivocation {
                                checkpoint: here.clone(),
                                seq: rec.seq,
                                pair: Box::new((own, e.proven.clone())),
                                own: true,
                            });
                        }
                    }
                    None => {
                        let other = other_at_number(&tx, &here, rec.seq, leaf)
                            .map_err(sql(&path, super::Operation::Sync))?;
                        if keep_remote(&tx, e, now).map_err(sql(&path, super::Operation::Sync))? {
                            if let Some(p) = double_use_here(&tx, &here, &rec.license_id, now)
                                .map_err(|e| e.into_ledger(&path))?
                            {
                                out.publications.push(p);
                            }
                            if let Some(other) = other {
                                out.conflicts.push(FeedConflict::Equivocation {
                                    checkpoint: here.clone(),
                                    seq: rec.seq,
                                    pair: Box::new((other, e.proven.clone())),
                                    own: true,
                                });
                            }
                            // Design: a head of this very log proves it (the
                            // tables lost what the log kept), or a head of
                            // another log under this key: signed elsewhere.
                            let ours = match Head::peek(e.proven.head.as_bytes()) {
                                Ok(h) => {
                                    super::log::holds(&tx, &h).map_err(|e| e.into_ledger(&path))?
                                }
                                Err(_) => false,
                            };
                            let c = if ours {
                                FeedConflict::LostOwn {
                                    seq: rec.seq,
                                    license_id: rec.license_id.clone(),
                                    head: e.proven.head.clone(),
                                }
                            } else {
                                FeedConflict::ForeignOwn {
                                    seq: rec.seq,
                                    license_id: rec.license_id.clone(),
                                    head: e.proven.head.clone(),
                                }
                            };
                            out.conflicts.push(c);
                        }
                    }
                }
                continue;
            }
            // Another checkpoint's record: a different one held under its
            // number is equivocation; both are kept and count.
            let other = other_at_number(&tx, &rec.checkpoint, rec.seq, leaf)
                .map_err(sql(&path, super::Operation::Sync))?;
            if !keep_remote(&tx, e, now).map_err(sql(&path, super::Operation::Sync))? {
                continue;
            }
            if let Some(held) = other {
                out.conflicts.push(FeedConflict::Equivocation {
                    checkpoint: rec.checkpoint.clone(),
                    seq: rec.seq,
                    pair: Box::new((held, e.proven.clone())),
                    own: false,
                });
            }
            if let Some(p) = double_use_here(&tx, &here, &rec.license_id, now)
                .map_err(|e| e.into_ledger(&path))?
            {
                out.publications.push(p);
            }
        }
        out.high_water = advance_high_water(&tx).map_err(sql(&path, super::Operation::Sync))?;
        let replica = grow_replica(&tx, out.high_water).map_err(|e| e.into_ledger(&path))?;
        if let Some((head, note)) = hub_head {
            tx.exec_cached(
                "INSERT OR IGNORE INTO hub_heads(size, root, note, received_at) VALUES (?1, ?2, ?3, ?4)",
                params![head.size as i64, &head.root.0[..], note, now],
            )
            .map_err(sql(&path, super::Operation::Sync))?;
        }
        out.conflicts
            .extend(check_hub_heads(&tx, replica).map_err(|e| e.into_ledger(&path))?);
        tx.commit().map_err(sql(&path, super::Operation::Sync))?;
        Ok(out)
    }

    /// Keeps a hub head another checkpoint witnessed (signature already
    /// verified) and checks it against the replica; returns a conflict if
    /// the hub showed that checkpoint another history.
    pub fn witness_hub_head(
        &mut self,
        head: &Head,
        note: &str,
        now: UnixTime,
    ) -> Result<Vec<FeedConflict>, LedgerError> {
        self.store_feed(&[], Some((head, note)), now)
            .map(|o| o.conflicts)
    }

    /// Stores an alert raised by sync (a double use proven by the hub's
    /// evidence, a refused message) and queues it for publication here;
    /// `None` if the same alert is already held.
    pub fn queue_sync_alert(
        &mut self,
        alert: &Alert,
        now: UnixTime,
    ) -> Result<Option<Publication>, LedgerError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&path, super::Operation::Sync))?;
        let p = queue_alert(&tx, alert, now).map_err(sql(&path, super::Operation::Sync))?;
        tx.commit().map_err(sql(&path, super::Operation::Sync))?;
        Ok(p)
    }

    /// This checkpoint's own record of license `license_id`, proven against its newest head.
    pub fn own_proven(
        &self,
        license_id: &str,
    ) -> Result<Option<(ConsumptionRecord, ProvenRecord)>, LedgerError> {
        own_proven(&self.conn, license_id).map_err(|e| e.into_ledger(&self.path))
    }
}

impl Ledger {
    /// Every record of `license` this ledger holds (its own and other
    /// checkpoints'), each proven in its checkpoint's log and, where this
    /// replica of the national log reaches it, in the hub's.
    pub fn evidence_records(
        &self,
        license: &str,
    ) -> Result<Vec<(ProvenRecord, Option<crate::evidence::HubInclusion>)>, LedgerError> {
        let path = self.path.clone();
        let merr = |e: crate::merkle::MerkleError| e.into_ledger(&path);
        let mut out = Vec::new();
        let mut provens = Vec::new();
        if let Some((_, p)) = own_proven(&self.conn, license).map_err(merr)? {
            provens.push(p);
        }
        let remote: Vec<String> = self
            .conn
            .prepare("SELECT proven FROM remote_consumptions WHERE license_id = ?1 AND proven IS NOT NULL ORDER BY consumed_at")
            .and_then(|mut st| st.query_map([license], |r| r.get(0))?.collect())
            .map_err(sql(&path, super::Operation::Sync))?;
        provens.extend(remote.iter().filter_map(|j| serde_json::from_str(j).ok()));
        let hub_head: Option<(i64, String)> = self
            .conn
            .row_cached(
                "SELECT size, note FROM hub_heads WHERE checked = 1 ORDER BY size DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql(&path, super::Operation::Sync))?;
        for p in provens {
            let mut hub = None;
            if let (Some((size, note)), Ok(rec)) =
                (&hub_head, ConsumptionRecord::from_leaf(&p.leaf))
            {
                let g: Option<i64> = self
                    .conn
                    .row_cached(
                        "SELECT g FROM hub_feed WHERE checkpoint = ?1 AND seq = ?2",
                        params![rec.checkpoint, rec.seq as i64],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql(&path, super::Operation::Sync))?;
                if let Some(g) = g.filter(|g| *g >= 1 && *g <= *size) {
                    let proof = SqlLog::new(&self.conn, HUB_LOG)
                        .prove_inclusion(g as u64 - 1, *size as u64)
                        .map_err(merr)?;
                    hub = Some(crate::evidence::HubInclusion {
                        g: g as u64,
                        head: note.clone(),
                        proof,
                    });
                }
            }
            out.push((p, hub));
        }
        Ok(out)
    }
}

/// The double use of `license` consumed here and learned from the feed, as an alert queued for publication.
fn double_use_here(
    conn: &rusqlite::Connection,
    here: &str,
    license: &str,
    now: UnixTime,
) -> Result<Option<Publication>, crate::merkle::MerkleError> {
    let Some(own) = own_proven(conn, license)? else {
        return Ok(None);
    };
    // The same set of records the hub sees, so the same alert id.
    let mut evidence = vec![own];
    let mut stmt = conn.prepare_cached(
        "SELECT proven FROM remote_consumptions WHERE license_id = ?1 AND proven IS NOT NULL",
    )?;
    let remote: Vec<String> = stmt
        .query_map([license], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for json in remote {
        if let Ok(p) = serde_json::from_str::<ProvenRecord>(&json)
            && let Ok(r) = ConsumptionRecord::from_leaf(&p.leaf)
        {
            evidence.push((r, p));
        }
    }
    // Design: two records under one number are equivocation, not two uses.
    let mut uses: Vec<(&str, u64)> = evidence
        .iter()
        .map(|(r, _)| (r.checkpoint.as_str(), r.seq))
        .collect();
    uses.sort_unstable();
    uses.dedup();
    if uses.len() < 2 {
        return Ok(None);
    }
    let alert = double_use_alert(&evidence, here, now);
    Ok(queue_alert(conn, &alert, now)?)
}

/// Which own record.
enum OwnKey<'a> {
    /// By its license.
    License(&'a str),
    /// By its number.
    Seq(u64),
}

/// A record consumed here with its proof against the newest own head.
fn own_proven(
    conn: &rusqlite::Connection,
    license: &str,
) -> Result<Option<(ConsumptionRecord, ProvenRecord)>, crate::merkle::MerkleError> {
    own_proven_by(conn, OwnKey::License(license))
}

/// A record consumed here (by license or number) with its proof against the newest own head.
fn own_proven_by(
    conn: &rusqlite::Connection,
    key: OwnKey<'_>,
) -> Result<Option<(ConsumptionRecord, ProvenRecord)>, crate::merkle::MerkleError> {
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?));
    let own: Option<(Vec<u8>, Option<i64>)> = match key {
        OwnKey::License(l) => conn
            .row_cached(
                "SELECT record, leaf FROM consumed WHERE license_id = ?1",
                [l],
                row,
            )
            .optional()?,
        OwnKey::Seq(n) => conn
            .row_cached(
                "SELECT record, leaf FROM consumed WHERE seq = ?1",
                [n as i64],
                row,
            )
            .optional()?,
    };
    let Some((leaf, Some(n))) = own else {
        return Ok(None);
    };
    let head: Option<String> = conn
        .row_cached(
            "SELECT note FROM log_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let Some(note) = head else { return Ok(None) };
    let Ok(h) = Head::peek(note.as_bytes()) else {
        return Ok(None);
    };
    if n as u64 >= h.size {
        return Ok(None);
    }
    let proof = SqlLog::new(conn, LOG).prove_inclusion(n as u64, h.size)?;
    let Ok(rec) = ConsumptionRecord::from_leaf(&leaf) else {
        return Ok(None);
    };
    Ok(Some((
        rec,
        ProvenRecord {
            leaf,
            index: n as u64,
            head: note,
            proof,
        },
    )))
}

/// Another record held under `checkpoint`'s number `seq` than `leaf`, with its proof.
fn other_at_number(
    conn: &rusqlite::Connection,
    checkpoint: &str,
    seq: u64,
    leaf: &[u8],
) -> rusqlite::Result<Option<ProvenRecord>> {
    let proven: Option<String> = conn
        .row_cached(
            "SELECT proven FROM remote_consumptions WHERE checkpoint = ?1 AND seq = ?2 AND record != ?3 AND proven IS NOT NULL",
            params![checkpoint, seq as i64, leaf],
            |r| r.get(0),
        )
        .optional()?;
    Ok(proven.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Keeps a verified record of another log (or of this checkpoint's key,
/// signed elsewhere) as a remote consumption; false if it was held.
fn keep_remote(
    conn: &rusqlite::Connection,
    e: &VerifiedEntry,
    now: UnixTime,
) -> rusqlite::Result<bool> {
    let rec = &e.record;
    let proven = serde_json::to_string(&e.proven).unwrap_or_default();
    conn.prepare_cached(
        "INSERT OR IGNORE INTO remote_consumptions(checkpoint, seq, license_id, declaration_id, consumed_at, record, received_at, proven) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![rec.checkpoint, rec.seq as i64, rec.license_id, rec.declaration_id, rec.consumed_at, e.proven.leaf, now, proven])
    .map(|n| n > 0)
}

/// Appends the hub log's entries from the replica's size up to `high_water`; returns its size.
fn grow_replica(
    conn: &rusqlite::Connection,
    high_water: u64,
) -> Result<u64, crate::merkle::MerkleError> {
    let log = SqlLog::new(conn, HUB_LOG);
    let mut size = log.size()?;
    if size >= high_water {
        return Ok(size);
    }
    let mut stmt =
        conn.prepare_cached("SELECT g, leaf FROM hub_feed WHERE g > ?1 AND g <= ?2 ORDER BY g")?;
    let rows: Vec<(i64, Option<Vec<u8>>)> = stmt
        .query_map(params![size as i64, high_water as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (g, leaf) in rows {
        let Some(leaf) = leaf else { break };
        if g as u64 != size + 1 {
            break;
        }
        log.append(size, leaf_hash(&leaf))?;
        size += 1;
    }
    Ok(size)
}

/// Checks every hub head not yet checked whose size the replica reaches.
fn check_hub_heads(
    conn: &rusqlite::Connection,
    replica: u64,
) -> Result<Vec<FeedConflict>, crate::merkle::MerkleError> {
    let log = SqlLog::new(conn, HUB_LOG);
    let mut stmt = conn.prepare_cached(
        "SELECT size, root, note FROM hub_heads WHERE checked = 0 AND size <= ?1 ORDER BY size",
    )?;
    let pending: Vec<(i64, Vec<u8>, String)> = stmt
        .query_map([replica as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (size, root, note) in pending {
        let ours = log.root(size as u64)?;
        if root.as_slice() == ours.0.as_slice() {
            conn.exec_cached(
                "UPDATE hub_heads SET checked = 1 WHERE size = ?1 AND root = ?2",
                params![size, root],
            )?;
        } else {
            let earlier: Option<String> = conn
                .row_cached(
                    "SELECT note FROM hub_heads WHERE checked = 1 ORDER BY size DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            // Kept unchecked, marked so it is raised once.
            conn.exec_cached(
                "UPDATE hub_heads SET checked = 2 WHERE size = ?1 AND root = ?2",
                params![size, root],
            )?;
            out.push(FeedConflict::HubLog {
                head: note,
                earlier,
                replica_root: ours,
            });
        }
    }
    Ok(out)
}

impl Ledger {
    /// Keeps a signed policy bundle so it survives a restart offline.
    pub fn store_policy_bundle(
        &mut self,
        version: u64,
        bundle: &[u8],
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        self.conn
            .exec_cached(
                "INSERT OR IGNORE INTO policy_bundles(version, bundle, received_at) VALUES (?1, ?2, ?3)",
                params![version as i64, bundle, now],
            )
            .map(|_| ())
            .map_err(sql(&self.path, super::Operation::Sync))
    }

    /// The newest stored policy bundle.
    pub fn newest_policy_bundle(&self) -> Result<Option<Vec<u8>>, LedgerError> {
        self.conn
            .row_cached(
                "SELECT bundle FROM policy_bundles ORDER BY version DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(&self.path, super::Operation::Sync))
    }
}

/// Stores the alert once and queues it for publication.
fn queue_alert(
    conn: &rusqlite::Connection,
    alert: &Alert,
    now: UnixTime,
) -> rusqlite::Result<Option<Publication>> {
    if !insert_alert(conn, alert, now)? {
        return Ok(None);
    }
    let json = serde_json::to_string(alert).unwrap_or_default();
    conn.exec_cached(
        "INSERT INTO publish_queue(kind, payload) VALUES ('alert', ?1)",
        [&json],
    )?;
    Ok(Some(Publication {
        id: conn.last_insert_rowid(),
        kind: super::PublicationKind::Alert,
        payload: json,
    }))
}

fn high_water(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    conn.row_cached(
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'feed_high_water'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|v| v.unwrap_or(0) as u64)
}

fn advance_high_water(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let mut hw = high_water(conn)?;
    let mut next = conn.prepare_cached("SELECT 1 FROM hub_feed WHERE g = ?1")?;
    while next.exists([(hw + 1) as i64])? {
        hw += 1;
    }
    conn.exec_cached(
        "INSERT INTO meta(key, value) VALUES ('feed_high_water', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [hw.to_string()],
    )?;
    Ok(hw)
}
