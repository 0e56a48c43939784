//! The ledger's own tests: batches, the log, its checks, the upgrade.

use super::*;
use crate::gate;
use crate::merkle::head::Head;
use crate::policy::Policy;
use crate::record::ProvenRecord;
use crate::registry::{KeyEntry, Registry};
use crate::token;
use crate::verdict::VerdictKind;

/// A policy trusting a fresh issuer, a token it issued, and a checkpoint identity.
fn setup() -> (tempfile::TempDir, Policy, String, Identity) {
    let dir = tempfile::tempdir().unwrap();
    let key = crate::keys::generate();
    crate::keys::write_keypair(dir.path(), "issuer", &key).unwrap();
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, include_str!("../../tests/data/policy.toml")).unwrap();
    let policy = Policy::load(&p).unwrap();
    let lic = crate::token::License::from_claims_json(include_str!("../../tests/data/claims.json"))
        .unwrap();
    let tok = token::text::encode(&token::issue(&lic, "mofcom-2025-1", &key));
    (dir, policy, tok, identity("p1"))
}

fn identity(cp: &str) -> Identity {
    Identity {
        checkpoint: cp.into(),
        key: crate::keys::generate(),
    }
}

fn payload(id: &str, tok: &str) -> Vec<u8> {
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/data/declaration.json")).unwrap();
    d["declaration_id"] = id.into();
    d["license"] = tok.into();
    d.to_string().into_bytes()
}

fn now() -> UnixTime {
    crate::clock::parse_rfc3339("2026-03-01T00:00:00Z").unwrap()
}

/// Decides `ids` (all carrying `tok`) in one batch.
fn decide(ledger: &mut Ledger, policy: &Policy, identity: &Identity, tok: &str, ids: &[&str]) {
    let mut batch = ledger.begin(identity).unwrap();
    for id in ids {
        let prepared = gate::prepare(&payload(id, tok), policy, 1 << 20);
        gate::decide_and_record(&mut batch, &prepared, policy, identity, now()).unwrap();
    }
    batch.commit().unwrap();
}

fn registry_of(ids: &[&Identity]) -> Registry {
    Registry::new(
        ids.iter()
            .map(|i| KeyEntry {
                id: i.checkpoint.clone(),
                key: i.key.verifying_key(),
                valid_from: None,
                valid_until: None,
            })
            .collect(),
        vec![],
        300,
    )
}

#[test]
fn one_batch_sees_its_own_decisions_signs_one_head_and_proves_its_records() {
    let (dir, policy, tok, identity) = setup();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    let mut batch = ledger.begin(&identity).unwrap();
    let mut kinds = Vec::new();
    for id in ["A", "B", "A"] {
        let prepared = gate::prepare(&payload(id, &tok), &policy, 1 << 20);
        let out =
            gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now()).unwrap();
        kinds.push((out.verdict.verdict, out.repeated, out.recorded.consumed_seq));
    }
    batch.commit().unwrap();
    assert_eq!(
        kinds,
        [
            (VerdictKind::Cleared, false, Some(1)),
            (VerdictKind::Rejected, false, None),
            (VerdictKind::Cleared, true, None)
        ]
    );
    assert_eq!(
        ledger.counts().unwrap(),
        crate::ledger::LedgerCounts {
            verdicts: 2,
            consumed: 1,
            outbox: 1
        }
    );
    // Three leaves (two verdicts, one consumption), one head over them.
    let (head, _) = ledger.log_head().unwrap().unwrap();
    assert_eq!((head.size, head.time), (3, now()));
    let heads: i64 = ledger
        .conn
        .query_row("SELECT COUNT(*) FROM log_heads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(heads, 1);
    // The consumption record is proven by the head the checkpoint's key signed.
    let (rec, proven) = ledger.own_proven("LIC-2025-000123").unwrap().unwrap();
    assert_eq!((rec.declaration_id.as_str(), rec.seq), ("A", 1));
    assert_eq!(rec.destination, "DE");
    assert!(!rec.goods.is_empty() && !rec.consignee.is_empty());
    let (back, _) = proven.verify(&registry_of(&[&identity])).unwrap();
    assert_eq!(back, rec);
    assert!(
        proven
            .verify(&registry_of(&[&self::identity("p1")]))
            .is_err()
    );
    let out = ledger.outbox_proofs(0, 10).unwrap().unwrap();
    assert_eq!(out.records.len(), 1);
    ledger
        .check_own_head(&[identity.key.verifying_key()])
        .unwrap();
}

#[test]
fn batches_continue_numbering_and_lookups_are_prepared_once() {
    let (dir, policy, tok, identity) = setup();
    let other = {
        let issuer = crate::keys::load_signing_key(&dir.path().join("issuer.key.pem")).unwrap();
        let mut lic = token::tests::sample_license();
        lic.license_id = "LIC-2025-000124".into();
        token::text::encode(&token::issue(&lic, "mofcom-2025-1", &issuer))
    };
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    let mut seqs = Vec::new();
    for (id, t) in [("A", &tok), ("A", &tok), ("B", &other), ("C", &tok)] {
        let mut batch = ledger.begin(&identity).unwrap();
        let prepared = gate::prepare(&payload(id, t), &policy, 1 << 20);
        let out =
            gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now()).unwrap();
        batch.commit().unwrap();
        seqs.push((out.recorded.audit_id, out.recorded.consumed_seq));
    }
    // C reuses A's license: a verdict, no consumption.
    assert_eq!(
        seqs,
        [
            (Some(1), Some(1)),
            (None, None),
            (Some(2), Some(2)),
            (Some(3), None)
        ]
    );
    let report = ledger
        .check_log(&[identity.key.verifying_key()], &[])
        .unwrap()
        .unwrap();
    assert_eq!((report.leaves, report.verdicts, report.consumed), (5, 3, 2));
    for sql_text in [PRIOR_SQL, AUDIT_VERDICT_SQL, CONSUMED_SQL, REMOTE_SQL] {
        let st = ledger.conn.prepare_cached(sql_text).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{sql_text} was prepared again on a new binding"
        );
    }
}

#[test]
fn an_uncommitted_batch_leaves_nothing_behind() {
    let (dir, policy, tok, identity) = setup();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    {
        let mut batch = ledger.begin(&identity).unwrap();
        let prepared = gate::prepare(&payload("A", &tok), &policy, 1 << 20);
        gate::decide_and_record(&mut batch, &prepared, &policy, &identity, now()).unwrap();
        // Dropped without commit, as in a crash.
    }
    assert_eq!(
        ledger.counts().unwrap(),
        crate::ledger::LedgerCounts {
            verdicts: 0,
            consumed: 0,
            outbox: 0
        }
    );
    let report = ledger
        .check_log(&[identity.key.verifying_key()], &[])
        .unwrap()
        .unwrap();
    assert_eq!(report.leaves, 0);
    assert!(ledger.log_head().unwrap().is_none());
}

#[test]
fn foreign_and_corrupt_files_are_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    drop(Ledger::open(&path, "p1").unwrap());
    let e = Ledger::open(&path, "p2").err().unwrap().to_string();
    assert!(e.contains("belongs to checkpoint `p1`"), "{e}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = Ledger::open_checking_later(&junk, "p1")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a readable SQLite database"), "{e}");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = Ledger::open(&junk, "p1").err().unwrap().to_string();
    assert!(e.contains("junk.db"), "{e}");
    assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5a; 8192]);
}

#[test]
fn a_remote_record_for_a_license_consumed_here_raises_double_use_once() {
    let (dir, policy, tok, identity) = setup();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A"]);
    // Another checkpoint consumed the same license.
    let p2 = self::identity("p2");
    let mut other = Ledger::open(&dir.path().join("p2.db"), "p2").unwrap();
    decide(&mut other, &policy, &p2, &tok, &["Z"]);
    let (record, proven) = other.own_proven("LIC-2025-000123").unwrap().unwrap();
    let entry = [VerifiedEntry {
        g: 1,
        record,
        proven,
    }];
    let out = ledger.store_feed(&entry, None, now()).unwrap();
    assert_eq!((out.stored, out.high_water), (1, 1));
    assert_eq!(
        out.publications.len(),
        1,
        "one alert, queued for publication"
    );
    let alert: Alert = serde_json::from_str(&out.publications[0].payload).unwrap();
    assert_eq!(alert.kind, crate::verdict::AlertKind::DoubleUse);
    let reg = registry_of(&[&identity, &p2]);
    let mut who: Vec<_> = alert
        .records
        .iter()
        .map(|r| {
            // Each record in the evidence is proven by its own checkpoint's head.
            r.proven.verify(&reg).unwrap();
            r.checkpoint.as_str()
        })
        .collect();
    who.sort();
    assert_eq!(who, ["p1", "p2"]);
    // The same entry again (redelivery, backfill) changes nothing.
    let again = ledger.store_feed(&entry, None, now()).unwrap();
    assert_eq!((again.stored, again.publications.len()), (0, 0));
}

/// The three tamperings of the issue, each against the check.
#[test]
fn tampering_is_caught_once_a_head_it_contradicts_exists_outside_the_file() {
    let (dir, policy, tok, identity) = setup();
    let keys = [identity.key.verifying_key()];
    let path = dir.path().join("l.db");
    let mut ledger = Ledger::open(&path, "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A", "B"]);
    // A head that left the machine (exported, or held by the hub).
    let (_, exported) = ledger.log_head().unwrap().unwrap();
    let external = [("the exported head".to_owned(), exported.clone())];
    assert!(ledger.check_log(&keys, &external).unwrap().is_ok());

    // 1. The consumed row deleted: the license would clear again.
    ledger
        .conn
        .execute(
            "DELETE FROM consumed WHERE license_id = 'LIC-2025-000123'",
            [],
        )
        .unwrap();
    let why = ledger.check_log(&keys, &[]).unwrap().unwrap_err();
    assert!(
        why.contains("LIC-2025-000123") && why.contains("deleted"),
        "{why}"
    );
    drop(ledger);

    // 2. The last decisions erased, the log rolled back and its head re-signed
    //    with the key (a stolen gateway has it): only the exported head tells.
    let mut ledger = Ledger::open(&dir.path().join("l2.db"), "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A"]);
    let (_, before) = ledger.log_head().unwrap().unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["B"]);
    let (_, after) = ledger.log_head().unwrap().unwrap();
    let size_before = Head::peek(before.as_bytes()).unwrap().size as i64;
    for sql_text in [
        "DELETE FROM audit WHERE declaration_id = 'B'",
        "DELETE FROM declarations WHERE declaration_id = 'B'",
    ] {
        ledger.conn.execute(sql_text, []).unwrap();
    }
    ledger
        .conn
        .execute("DELETE FROM log_leaves WHERE n >= ?1", [size_before])
        .unwrap();
    ledger
        .conn
        .execute(
            "DELETE FROM log_hashes WHERE idx >= ?1",
            [tlog_tiles::stored_hash_count(size_before as u64) as i64],
        )
        .unwrap();
    ledger
        .conn
        .execute("DELETE FROM log_heads WHERE size > ?1", [size_before])
        .unwrap();
    // Locally it all agrees now…
    assert!(ledger.check_log(&keys, &[]).unwrap().is_ok());
    ledger.check_own_head(&keys).unwrap();
    // …but not with the head that left.
    let why = ledger
        .check_log(&keys, &[("the hub's head".into(), after)])
        .unwrap()
        .unwrap_err();
    assert!(why.contains("removed or rolled back"), "{why}");
}

#[test]
fn a_truncated_wal_rolls_back_commits_and_the_head_that_left_says_so() {
    let (dir, policy, tok, identity) = setup();
    let keys = [identity.key.verifying_key()];
    let path = dir.path().join("l.db");
    let mut ledger = Ledger::open(&path, "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A"]);
    ledger
        .conn
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    // Keep SQLite from checkpointing the next commit into the main file.
    ledger
        .conn
        .pragma_update(None, "wal_autocheckpoint", 0)
        .unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["B"]);
    let (_, left) = ledger.log_head().unwrap().unwrap();
    // The file copied as it is, with the WAL cut off (a crash of the disk, or an insider).
    std::fs::copy(&path, dir.path().join("copy.db")).unwrap();
    drop(ledger);
    let copy = Ledger::open(&dir.path().join("copy.db"), "p1").unwrap();
    assert_eq!(
        copy.counts().unwrap().verdicts,
        1,
        "the second commit rolled back"
    );
    assert!(
        copy.check_log(&keys, &[]).unwrap().is_ok(),
        "locally consistent"
    );
    let why = copy
        .check_log(&keys, &[("the hub's head".into(), left)])
        .unwrap()
        .unwrap_err();
    assert!(why.contains("rolled back"), "{why}");
}

#[test]
fn a_ledger_written_before_the_log_is_upgraded_in_place() {
    let (dir, _policy, _tok, identity) = setup();
    let path = dir.path().join("old.db");
    {
        // A ledger as the previous build left it: schema 4, two verdicts, one consumption.
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 4).unwrap();
        conn.execute_batch(
            "INSERT INTO meta(key, value) VALUES ('checkpoint', 'p1');
             INSERT INTO audit(id, declaration_id, license_id, verdict, decided_at, content_hash, verdict_json, prev_hash, row_hash)
               VALUES (1, 'A', 'LIC-OLD', 'cleared', 1760000000, x'0101', '{\"declaration_id\":\"A\",\"verdict\":\"cleared\",\"exporter\":\"EXP-1\"}', x'00', x'01'),
                      (2, 'B', NULL, 'rejected', 1760000100, NULL, '{\"declaration_id\":\"B\",\"verdict\":\"rejected\"}', x'01', x'02');
             INSERT INTO consumed(license_id, declaration_id, consumed_at, seq, audit_id, record)
               VALUES ('LIC-OLD', 'A', 1760000000, 1, 1, x'00');",
        )
        .unwrap();
    }
    let mut ledger = Ledger::open(&path, "p1").unwrap();
    let added = ledger.upgrade_log(&identity.key, now()).unwrap();
    assert_eq!(added, 3, "two verdicts and one consumption become leaves");
    assert_eq!(ledger.upgrade_log(&identity.key, now()).unwrap(), 0, "once");
    let report = ledger
        .check_log(&[identity.key.verifying_key()], &[])
        .unwrap()
        .unwrap();
    assert_eq!((report.leaves, report.verdicts, report.consumed), (3, 2, 1));
    // Its consumption goes to the hub again, as a leaf.
    let out = ledger.outbox_proofs(0, 10).unwrap().unwrap();
    assert_eq!(out.records.len(), 1);
    let (rec, proven) = ledger.own_proven("LIC-OLD").unwrap().unwrap();
    assert_eq!(rec.exporter, "EXP-1");
    proven.verify(&registry_of(&[&identity])).unwrap();
    // New decisions continue the log.
    let (policy_dir, policy, tok, _) = setup();
    decide(&mut ledger, &policy, &identity, &tok, &["C"]);
    drop(policy_dir);
    assert_eq!(ledger.log_head().unwrap().unwrap().0.size, 5);
    let _: Option<ProvenRecord> = None;
}

/// A ledger restored from before a clearance learns the record back from
/// the national log: the license stays consumed, and it is raised as a
/// record under this checkpoint's key that its ledger did not sign (its key
/// used elsewhere, or the ledger restored from an older copy).
#[test]
fn an_own_record_the_ledger_lost_comes_back_from_the_national_log() {
    let (dir, policy, tok, identity) = setup();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A"]);
    let (record, proven) = ledger.own_proven("LIC-2025-000123").unwrap().unwrap();
    drop(ledger);
    // The same checkpoint, its ledger restored from an empty copy.
    let mut restored = Ledger::open(&dir.path().join("restored.db"), "p1").unwrap();
    let entry = [VerifiedEntry {
        g: 1,
        record,
        proven,
    }];
    let out = restored.store_feed(&entry, None, now()).unwrap();
    assert!(
        matches!(
            &out.conflicts[..],
            [FeedConflict::ForeignOwn { seq: 1, .. }]
        ),
        "{:?}",
        out.conflicts
    );
    let facts = restored.facts("B", Some("LIC-2025-000123")).unwrap();
    assert_eq!(facts.uses.len(), 1, "the license stays consumed");
    assert_eq!(facts.uses[0].checkpoint, "p1");
    let again = restored.store_feed(&entry, None, now()).unwrap();
    assert!(again.conflicts.is_empty(), "raised once");
}

/// A record this ledger's own log holds but its tables lost: the loss is said as such.
#[test]
fn a_record_the_tables_lost_but_the_log_holds_is_a_loss() {
    let (dir, policy, tok, identity) = setup();
    let mut ledger = Ledger::open(&dir.path().join("l.db"), "p1").unwrap();
    decide(&mut ledger, &policy, &identity, &tok, &["A"]);
    let (record, proven) = ledger.own_proven("LIC-2025-000123").unwrap().unwrap();
    ledger.conn.execute("DELETE FROM consumed", []).unwrap();
    let entry = [VerifiedEntry {
        g: 1,
        record,
        proven,
    }];
    let out = ledger.store_feed(&entry, None, now()).unwrap();
    assert!(
        matches!(&out.conflicts[..], [FeedConflict::LostOwn { seq: 1, .. }]),
        "{:?}",
        out.conflicts
    );
}

/// This checkpoint's key, in someone else's hands, signs another record
/// under a number this ledger used: both count, and it is raised once,
/// with both records as evidence, as the key being used elsewhere.
#[test]
fn a_record_signed_elsewhere_under_this_key_counts_and_is_raised() {
    let (dir, policy, tok, identity) = setup();
    let mut here = Ledger::open(&dir.path().join("here.db"), "p1").unwrap();
    decide(&mut here, &policy, &identity, &tok, &["A"]);
    // The thief's copy of the key, its own ledger: number 1 again.
    let mut elsewhere = Ledger::open(&dir.path().join("elsewhere.db"), "p1").unwrap();
    decide(&mut elsewhere, &policy, &identity, &tok, &["Z"]);
    let (record, proven) = elsewhere.own_proven("LIC-2025-000123").unwrap().unwrap();
    let (own_record, own_proven) = here.own_proven("LIC-2025-000123").unwrap().unwrap();
    assert_ne!(proven.leaf, own_proven.leaf);
    let foreign = [VerifiedEntry {
        g: 1,
        record,
        proven: proven.clone(),
    }];
    let out = here.store_feed(&foreign, None, now()).unwrap();
    match &out.conflicts[..] {
        [
            FeedConflict::Equivocation {
                checkpoint,
                seq: 1,
                pair,
                own: true,
            },
        ] => {
            assert_eq!(checkpoint, "p1");
            assert_eq!(pair.1, proven);
            // The evidence holds for anyone with the registry.
            let alert = crate::sync::equivocation::alert(
                "p1",
                &crate::sync::equivocation::Evidenced::Records(pair.clone()),
                "p1",
                now(),
            );
            crate::sync::equivocation::verify(&alert, &registry_of(&[&identity]), "p2", now())
                .unwrap();
        }
        other => panic!("{other:?}"),
    }
    let facts = here.facts("B", Some("LIC-2025-000123")).unwrap();
    assert_eq!(facts.uses.len(), 2, "both claims count: {:?}", facts.uses);
    // Its own record then comes through the national log as well.
    let own = [VerifiedEntry {
        g: 2,
        record: own_record,
        proven: own_proven,
    }];
    let out = here.store_feed(&own, None, now()).unwrap();
    assert_eq!(out.included, 1, "its own record leaves the outbox");
    assert_eq!(here.outbox_depth().unwrap(), 0);
}

/// Another checkpoint's key signs two records under one number: both are
/// kept (each license counts as used) and the equivocation raised once.
#[test]
fn two_records_of_another_checkpoint_under_one_number_are_both_kept() {
    let (dir, policy, tok, _) = setup();
    let p2 = identity("p2");
    let mut one = Ledger::open(&dir.path().join("one.db"), "p2").unwrap();
    decide(&mut one, &policy, &p2, &tok, &["A"]);
    let mut two = Ledger::open(&dir.path().join("two.db"), "p2").unwrap();
    decide(&mut two, &policy, &p2, &tok, &["B"]);
    let entries: Vec<VerifiedEntry> = [&one, &two]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (record, proven) = l.own_proven("LIC-2025-000123").unwrap().unwrap();
            VerifiedEntry {
                g: i as u64 + 1,
                record,
                proven,
            }
        })
        .collect();
    let mut here = Ledger::open(&dir.path().join("here.db"), "p1").unwrap();
    let out = here.store_feed(&entries, None, now()).unwrap();
    assert_eq!(out.stored, 2);
    assert_eq!(out.high_water, 2, "no entry is held back");
    assert!(
        matches!(
            &out.conflicts[..],
            [FeedConflict::Equivocation {
                seq: 1,
                own: false,
                ..
            }]
        ),
        "{:?}",
        out.conflicts
    );
    let facts = here.facts("C", Some("LIC-2025-000123")).unwrap();
    assert_eq!(facts.uses.len(), 2);
    let again = here.store_feed(&entries, None, now()).unwrap();
    assert!(again.conflicts.is_empty(), "raised once");
}
