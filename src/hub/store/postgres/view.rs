//! The national view's queries on PostgreSQL: a license's records,
//! checkpoints, alerts and flows.

use super::PgStore;
use crate::clock::UnixTime;
use crate::hub::store::StoreError;
use crate::hub::store::view::{CheckpointView, FlowBy, FlowRow, RECORD_COLUMNS, RecordView};
use crate::verdict::Alert;

impl PgStore {
    /// Every record of a license, in the national log's order.
    pub async fn license(&self, license_id: &str) -> Result<Vec<RecordView>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let sql = format!(
            "SELECT {} FROM records WHERE license_id = $1 ORDER BY g",
            RECORD_COLUMNS
        );
        let rows = c.query(&sql, &[&license_id]).await.map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| {
                crate::hub::store::view::record_view((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                    r.get(10),
                    r.get(11),
                    r.get(12),
                ))
            })
            .collect())
    }

    /// Every checkpoint heard of, and its state.
    pub async fn checkpoints(&self, now: UnixTime) -> Result<Vec<CheckpointView>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let rows = c
            .query(
                &c.prepare_cached("SELECT c.checkpoint, c.contiguous, c.last_seen, (SELECT MAX(size) FROM post_heads h WHERE h.checkpoint = c.checkpoint) FROM checkpoints c ORDER BY c.checkpoint").await.map_err(self.err())?,
                &[],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| {
                crate::hub::store::view::checkpoint_view(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    now,
                )
            })
            .collect())
    }

    /// Alerts raised in `[since, until)`, newest first.
    pub async fn alerts(
        &self,
        kind: Option<&str>,
        since: UnixTime,
        until: UnixTime,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let rows = c
            .query(
                &c.prepare_cached("SELECT alert_json FROM alerts WHERE raised_at >= $1 AND raised_at < $2 AND ($3::TEXT IS NULL OR kind = $3) ORDER BY id DESC LIMIT $4").await.map_err(self.err())?,
                &[&since, &until, &kind, &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .collect())
    }

    /// Consumed licenses per day and `by`, in `[since, until)`.
    pub async fn flows(
        &self,
        by: FlowBy,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<FlowRow>, StoreError> {
        let c = self.pool.get().await.map_err(self.pool_err())?;
        let sql = format!(
            "SELECT to_char(to_timestamp(consumed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, {col} AS k, COUNT(*), SUM(net_kg) FROM records WHERE consumed_at >= $1 AND consumed_at < $2 GROUP BY day, k ORDER BY day, k",
            col = by.column()
        );
        let rows = c.query(&sql, &[&since, &until]).await.map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| FlowRow {
                day: r.get(0),
                key: r.get(1),
                records: r.get::<_, i64>(2) as u64,
                net_kg: r.get(3),
            })
            .collect())
    }
}
