//! Held declarations kept for an officer's resolution, and publications
//! written outside the daemon for it to pick up.

use rusqlite::{OptionalExtension, params};

use super::*;
use crate::declaration::ParsedDeclaration;
use crate::verdict::Verdict;

/// A held declaration as kept: JSON without its license, and the license's COSE bytes.
pub struct Held {
    /// The declaration's JSON, license removed.
    pub declaration: String,
    /// The license token's COSE bytes, when it carried one.
    pub token: Option<Vec<u8>>,
}

impl Batch<'_> {
    /// Keeps a held declaration for the officer who resolves it.
    pub fn keep_hold(
        &mut self,
        parsed: &ParsedDeclaration,
        audit_id: i64,
        now: UnixTime,
    ) -> Result<(), LedgerError> {
        let (json, token) = parsed.to_stored();
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO holds(declaration_id, audit_id, declaration, token, held_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    parsed.declaration.declaration_id,
                    audit_id,
                    json,
                    token,
                    now
                ])
            })
            .map(|_| ())
            .map_err(sql(&self.path, Operation::Decide))
    }

    /// The standing verdict of a declaration and its content hash.
    pub fn standing(
        &self,
        declaration_id: &str,
    ) -> Result<Option<(Verdict, [u8; 32])>, LedgerError> {
        let facts = self.facts(declaration_id, None)?;
        Ok(facts.prior.map(|p| (p.verdict, p.content_hash)))
    }

    /// The kept declaration of a hold, if it was kept.
    pub fn held(&self, declaration_id: &str) -> Result<Option<Held>, LedgerError> {
        self.tx
            .prepare_cached("SELECT declaration, token FROM holds WHERE declaration_id = ?1")
            .and_then(|mut st| {
                st.query_row([declaration_id], |r| {
                    Ok(Held {
                        declaration: r.get(0)?,
                        token: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(sql(&self.path, Operation::Decide))
    }

    /// Records the verdict that resolves a hold: it becomes the
    /// declaration's standing verdict (a redelivery is answered with it),
    /// and its license, when released, is consumed as by a clearance.
    pub fn record_resolution(
        &mut self,
        decision: &crate::decision::Decision,
        content_hash: [u8; 32],
        identity: &Identity,
        now: UnixTime,
    ) -> Result<Recorded, LedgerError> {
        let recorded = self.record(decision, Some(content_hash), identity, now)?;
        let (Some(audit_id), Some(id)) = (
            recorded.audit_id,
            decision.verdict().declaration_id.as_deref(),
        ) else {
            return Ok(recorded);
        };
        let path = self.path.clone();
        self.tx
            .prepare_cached("UPDATE declarations SET audit_id = ?1 WHERE declaration_id = ?2")
            .and_then(|mut st| st.execute(params![audit_id, id]))
            .and_then(|_| {
                self.tx
                    .prepare_cached(
                        "UPDATE holds SET resolved_audit_id = ?1 WHERE declaration_id = ?2",
                    )?
                    .execute(params![audit_id, id])
            })
            .map_err(sql(&path, Operation::Decide))?;
        Ok(recorded)
    }

    /// Queues a publication for the daemon to pick up (written outside it).
    pub fn enqueue_for_daemon(
        &mut self,
        kind: PublicationKind,
        payload: &str,
    ) -> Result<(), LedgerError> {
        self.tx
            .prepare_cached(
                "INSERT INTO publish_queue(kind, payload, announced) VALUES (?1, ?2, 0)",
            )
            .and_then(|mut st| st.execute(params![kind.as_str(), payload]))
            .map(|_| ())
            .map_err(sql(&self.path, Operation::Decide))
    }

    /// Publications written outside the daemon since it last looked, marked as seen.
    pub fn take_unannounced(&mut self) -> Result<Vec<Publication>, LedgerError> {
        take_unannounced(&self.tx).map_err(sql(&self.path, Operation::Publish))
    }
}

impl Ledger {
    /// Shipments on hold and not yet resolved, oldest first (their hold verdicts).
    pub fn open_holds(&self, limit: usize) -> Result<Vec<Verdict>, LedgerError> {
        let q = || -> rusqlite::Result<Vec<String>> {
            self.conn
                .prepare_cached(
                    "SELECT a.verdict_json FROM holds h JOIN audit a ON a.id = h.audit_id
                     WHERE h.resolved_audit_id IS NULL ORDER BY h.held_at LIMIT ?1",
                )?
                .query_map([limit as i64], |r| r.get(0))?
                .collect()
        };
        Ok(q()
            .map_err(sql(&self.path, Operation::Read))?
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect())
    }

    /// Publications written outside the daemon since it last looked, marked as seen.
    pub fn take_unannounced(&mut self) -> Result<Vec<Publication>, LedgerError> {
        let any: bool = self
            .conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM publish_queue WHERE announced = 0)")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(sql(&self.path, Operation::Publish))?;
        if !any {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql(&self.path, Operation::Publish))?;
        let taken = take_unannounced(&tx).map_err(sql(&self.path, Operation::Publish))?;
        tx.commit().map_err(sql(&self.path, Operation::Publish))?;
        Ok(taken)
    }
}

fn take_unannounced(conn: &Connection) -> rusqlite::Result<Vec<Publication>> {
    let taken = conn
        .prepare_cached(
            "SELECT id, kind, payload FROM publish_queue WHERE announced = 0 ORDER BY id",
        )?
        .query_map([], |r| {
            Ok(Publication {
                id: r.get(0)?,
                kind: PublicationKind::from_stored(&r.get::<_, String>(1)?),
                payload: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if !taken.is_empty() {
        conn.prepare_cached("UPDATE publish_queue SET announced = 1 WHERE announced = 0")?
            .execute([])?;
    }
    Ok(taken)
}
