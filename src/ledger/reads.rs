//! What officers and investigators read from a ledger: reports, exports, counts.

use rusqlite::{OptionalExtension, params};

use crate::clock::UnixTime;
use crate::verdict::{Alert, Verdict};

use super::*;

impl Ledger {
    /// Everything the ledger holds about one license.
    pub fn license_report(&self, license_id: &str) -> Result<serde_json::Value, LedgerError> {
        let q = || -> rusqlite::Result<serde_json::Value> {
            let consumed = self
                .conn
                .query_row(
                    "SELECT declaration_id, consumed_at, seq FROM consumed WHERE license_id=?1",
                    [license_id],
                    |r| {
                        Ok(serde_json::json!({
                            "declaration_id": r.get::<_, String>(0)?,
                            "consumed_at": crate::clock::to_rfc3339(r.get(1)?),
                            "seq": r.get::<_, i64>(2)?,
                        }))
                    },
                )
                .optional()?;
            let mut stmt = self.conn.prepare(
                "SELECT checkpoint, seq, declaration_id, consumed_at FROM remote_consumptions WHERE license_id=?1 ORDER BY consumed_at",
            )?;
            let remote = stmt
                .query_map([license_id], |r| {
                    Ok(serde_json::json!({
                        "checkpoint": r.get::<_, String>(0)?,
                        "seq": r.get::<_, i64>(1)?,
                        "declaration_id": r.get::<_, String>(2)?,
                        "consumed_at": crate::clock::to_rfc3339(r.get(3)?),
                    }))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = self
                .conn
                .prepare("SELECT verdict_json FROM audit WHERE license_id=?1 ORDER BY id")?;
            let verdicts = stmt
                .query_map([license_id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter_map(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
                .collect::<Vec<_>>();
            // The declaration that consumed it names the parties it was used for.
            let used_for = verdicts
                .iter()
                .find(|v| v["verdict"] == "cleared")
                .map(|v| serde_json::json!({"exporter": v["exporter"], "end_user": v["end_user"]}));
            let reuse_attempts: Vec<&serde_json::Value> = verdicts
                .iter()
                .filter(|v| {
                    v["reasons"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["code"] == "license_already_used"))
                })
                .collect();
            Ok(serde_json::json!({
                "license_id": license_id,
                "used_for": used_for,
                "consumed_here": consumed,
                "consumed_elsewhere": remote,
                "reuse_attempts": reuse_attempts,
                "verdicts": verdicts,
            }))
        };
        q().map_err(sql(&self.path, Operation::Read))
    }

    /// Calls `f` with each audit row in order: (id, verdict JSON).
    pub fn for_each_verdict(
        &self,
        f: impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        self.for_each_verdict_where(None, (i64::MIN, i64::MAX), f)
    }

    /// Verdicts decided in `[since, until)`, oldest first, optionally only
    /// those whose declared exporter or end user is `party` (normalised id).
    pub fn for_each_verdict_where(
        &self,
        party: Option<&str>,
        (since, until): (UnixTime, UnixTime),
        mut f: impl FnMut(i64, &str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        let party = party.map(crate::policy::normalize_id);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, verdict_json FROM audit WHERE decided_at >= ?1 AND decided_at < ?2 \
                 AND (?3 IS NULL OR json_extract(verdict_json, '$.exporter') = ?3 \
                      OR json_extract(verdict_json, '$.end_user') = ?3) ORDER BY id",
            )
            .map_err(sql(&self.path, Operation::Read))?;
        let mut rows = stmt
            .query(params![since, until, party])
            .map_err(sql(&self.path, Operation::Read))?;
        while let Some(r) = rows.next().map_err(sql(&self.path, Operation::Read))? {
            let id: i64 = r.get(0).map_err(sql(&self.path, Operation::Read))?;
            let json: String = r.get(1).map_err(sql(&self.path, Operation::Read))?;
            f(id, &json).map_err(|e| self.export_error(e))?;
        }
        Ok(())
    }

    /// Alerts raised in `[since, until)`, oldest first, as stored (JSON).
    pub fn for_each_alert(
        &self,
        (since, until): (UnixTime, UnixTime),
        mut f: impl FnMut(&str) -> std::io::Result<()>,
    ) -> Result<(), LedgerError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT alert_json FROM alerts WHERE raised_at >= ?1 AND raised_at < ?2 ORDER BY id",
            )
            .map_err(sql(&self.path, Operation::Read))?;
        let mut rows = stmt
            .query(params![since, until])
            .map_err(sql(&self.path, Operation::Read))?;
        while let Some(r) = rows.next().map_err(sql(&self.path, Operation::Read))? {
            let json: String = r.get(0).map_err(sql(&self.path, Operation::Read))?;
            f(&json).map_err(|e| self.export_error(e))?;
        }
        Ok(())
    }

    fn export_error(&self, e: std::io::Error) -> LedgerError {
        LedgerError::new(&self.path, Operation::Read, Failure::Output(e))
    }

    /// Counts for status displays: (verdicts, consumed licenses, outbox depth).
    pub fn counts(&self) -> Result<LedgerCounts, LedgerError> {
        // Audit ids and consumption numbers run from 1 without gaps (the
        // chain check proves it for the audit), so the largest is the count:
        // read from the end of an index, not by walking ten million rows.
        self.conn
            .query_row(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM audit), (SELECT COALESCE(MAX(seq), 0) FROM consumed), (SELECT COUNT(*) FROM outbox)",
                [],
                |r| {
                    Ok(LedgerCounts {
                        verdicts: r.get::<_, i64>(0)? as u64,
                        consumed: r.get::<_, i64>(1)? as u64,
                        outbox: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
            .map_err(sql(&self.path, Operation::Read))
    }

    /// Unreadable payloads received in all (kept and dropped), and how many were dropped under the cap.
    pub fn unreadable_counts(&self) -> Result<(u64, u64), LedgerError> {
        self.conn
            .query_row(
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM unreadable), (SELECT COALESCE(CAST(value AS INTEGER), 0) FROM meta WHERE key = 'unreadable_dropped')",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64)),
            )
            .map_err(sql(&self.path, Operation::Read))
    }

    /// The newest `n` verdicts, newest first (for the gate console).
    pub fn recent_verdicts(&self, n: usize) -> Result<Vec<Verdict>, LedgerError> {
        self.newest_json(
            "SELECT verdict_json FROM audit ORDER BY id DESC LIMIT ?1",
            n,
        )
    }

    /// The newest `n` alerts, newest first (for the gate console).
    pub fn recent_alerts(&self, n: usize) -> Result<Vec<Alert>, LedgerError> {
        self.newest_json("SELECT alert_json FROM alerts ORDER BY id DESC LIMIT ?1", n)
    }

    fn newest_json<T: serde::de::DeserializeOwned>(
        &self,
        sql_text: &str,
        n: usize,
    ) -> Result<Vec<T>, LedgerError> {
        let mut st = self
            .conn
            .prepare(sql_text)
            .map_err(sql(&self.path, Operation::Read))?;
        let rows = st
            .query_map([n as i64], |r| r.get::<_, String>(0))
            .map_err(sql(&self.path, Operation::Read))?;
        let mut out = Vec::new();
        for json in rows {
            // A row this build cannot read is skipped, not fatal: the console is a view.
            if let Ok(v) = serde_json::from_str(&json.map_err(sql(&self.path, Operation::Read))?) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// When the oldest consumption the hub has not acknowledged was made.
    pub fn oldest_unsynced(&self) -> Result<Option<UnixTime>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT consumed_at FROM consumed WHERE seq = (SELECT MIN(seq) FROM outbox)",
            )
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(sql(&self.path, Operation::Read))
    }
}
