//! The queue of verdicts and alerts waiting for the broker's PUBACK.

use super::*;

impl Ledger {
    /// Up to `limit` queued publications with `after < id <= upto`, oldest
    /// first.
    pub fn pending_publications(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<Publication>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, payload FROM publish_queue WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
            )
            .map_err(sql(&self.path, Operation::Publish))?;
        stmt.query_map((after, upto, limit as i64), |r| {
            Ok(Publication {
                id: r.get(0)?,
                kind: PublicationKind::from_stored(&r.get::<_, String>(1)?),
                payload: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(sql(&self.path, Operation::Publish))
    }

    /// The newest queued publication's id (0 when the queue is empty).
    pub fn last_publication_id(&self) -> Result<i64, LedgerError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM publish_queue", [], |r| {
                r.get(0)
            })
            .map_err(sql(&self.path, Operation::Publish))
    }

    /// Removes publications the broker has acknowledged.
    pub fn delete_publications(&mut self, ids: &[i64]) -> Result<(), LedgerError> {
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&self.path, Operation::Publish))?;
        delete_queued(&tx, ids).map_err(sql(&self.path, Operation::Publish))?;
        tx.commit().map_err(sql(&self.path, Operation::Publish))
    }
}
