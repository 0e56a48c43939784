//! Payloads with no readable declaration id: kept under a cap, alerted at a bounded rate.

use rusqlite::{OptionalExtension, params};

use super::{Batch, Recorded, UNREADABLE_ALERT_EVERY, UNREADABLE_KEPT, insert_alert};
use crate::clock::UnixTime;
use crate::verdict::{Alert, Verdict};

impl Batch<'_> {
    /// A payload with no readable declaration id: nothing to answer to and
    /// nothing to consume, so it is kept in the capped `unreadable` table,
    /// and alerted at most once every [`UNREADABLE_ALERT_EVERY`] seconds.
    ///
    /// Design: a flood of garbage must not grow the ledger without bound
    /// (a full disk stops the gate); the count of what was dropped is kept.
    pub(super) fn record_unreadable(
        &mut self,
        verdict: &Verdict,
        alert: Option<&Alert>,
        now: UnixTime,
    ) -> rusqlite::Result<Recorded> {
        let verdict_json = serde_json::to_string(verdict).unwrap_or_default();
        let detail = verdict
            .reasons
            .first()
            .map(|r| r.detail.as_str())
            .unwrap_or("");
        let sha = alert.and_then(|a| a.payload_sha256.clone());
        self.tx
            .prepare_cached(
                "INSERT INTO unreadable(received_at, payload_sha256, detail) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![now, sha, detail])?;
        let id = self.tx.last_insert_rowid();
        let dropped = self
            .tx
            .prepare_cached("DELETE FROM unreadable WHERE id <= ?1")?
            .execute([id - UNREADABLE_KEPT])? as u64;
        let meta = |key: &str| -> rusqlite::Result<i64> {
            self.tx
                .prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()
                .map(|v| v.unwrap_or(0))
        };
        let set = |key: &str, value: i64| -> rusqlite::Result<()> {
            self.tx
                .prepare_cached("INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
                .execute(params![key, value.to_string()])
                .map(|_| ())
        };
        if dropped > 0 {
            set(
                "unreadable_dropped",
                meta("unreadable_dropped")? + dropped as i64,
            )?;
        }
        let last = meta("unreadable_alert_at")?;
        let held_back = meta("unreadable_held_back")?;
        let mut kept = None;
        if let Some(a) = alert {
            if now.saturating_sub(last) >= UNREADABLE_ALERT_EVERY {
                let mut a = a.clone();
                if held_back > 0 {
                    a.detail = Some(format!(
                        "{held_back} more unreadable payloads since the last alert"
                    ));
                }
                insert_alert(&self.tx, &a, now)?;
                set("unreadable_alert_at", now)?;
                set("unreadable_held_back", 0)?;
                kept = Some(a);
            } else {
                set("unreadable_held_back", held_back + 1)?;
            }
        }
        Ok(Recorded {
            audit_id: None,
            consumed_seq: None,
            verdict_json: Some(verdict_json),
            alert: kept,
            unreadable_dropped: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Context, Decision};

    #[test]
    fn unreadable_payloads_are_capped_counted_and_alerted_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = crate::ledger::Ledger::open(&dir.path().join("l.db"), "cp").unwrap();
        let identity = crate::ledger::Identity {
            checkpoint: "cp".into(),
            key: crate::keys::generate(),
        };
        let (_pdir, policy) = {
            let d = tempfile::tempdir().unwrap();
            let (p, _) = crate::policy::tests::sample(d.path());
            let pol = crate::policy::Policy::load(&p).unwrap();
            (d, pol)
        };
        let garbage = |n: usize| -> Decision {
            let prepared =
                crate::gate::prepare(format!("garbage {n}").as_bytes(), &policy, 1 << 16);
            let ctx = Context {
                checkpoint: "cp",
                now: 1_800_000_000,
                clock: crate::clock_trust::ClockStatus::Unknown,
            };
            crate::gate::decide(&prepared, &policy, &Default::default(), &ctx).0
        };
        let n = UNREADABLE_KEPT as usize + 50;
        let mut alerts = 0;
        let mut dropped = 0;
        let mut batch = ledger.begin(&identity).unwrap();
        for i in 0..n {
            // Ten seconds apart: one alert each minute.
            let now = 1_800_000_000 + i as i64 * 10;
            let r = batch.record(&garbage(i), None, &identity, now).unwrap();
            assert!(r.audit_id.is_none() && r.verdict_json.is_some());
            alerts += usize::from(r.alert.is_some());
            dropped += r.unreadable_dropped;
        }
        batch.commit().unwrap();
        assert_eq!(dropped, 50);
        assert_eq!(ledger.unreadable_counts().unwrap(), (n as u64, 50));
        assert_eq!(
            ledger.counts().unwrap().verdicts,
            0,
            "nothing in the audit log"
        );
        // One alert every six payloads (a minute), the later ones saying how many were held back.
        assert_eq!(alerts, n.div_ceil(6));
        let newest = ledger.recent_alerts(1).unwrap();
        assert!(
            newest[0].detail.as_deref().unwrap_or("").contains("5 more"),
            "{:?}",
            newest[0]
        );
    }
}
