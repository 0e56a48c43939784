//! What an attacker (or a test playing a hub) can build with the library:
//! consumption records, small logs signed with any key, and the sync
//! messages that carry them.

use ed25519_dalek::SigningKey;
use permitgate::merkle::head::{HUB_ORIGIN, Head, checkpoint_origin};
use permitgate::merkle::{Hash, SqlLog, leaf_hash};
use permitgate::record::{ConsumptionRecord, Goods, KIND_CONSUMPTION, ProvenRecord};
use permitgate::sync::protocol::{Feed, FeedEntry, Records};

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A consumption record of `license` as `checkpoint` number `seq`, made now.
pub fn record(checkpoint: &str, seq: u64, license: &str) -> ConsumptionRecord {
    record_at(checkpoint, seq, license, now())
}

/// The same, made at `at`.
pub fn record_at(checkpoint: &str, seq: u64, license: &str, at: i64) -> ConsumptionRecord {
    ConsumptionRecord {
        kind: KIND_CONSUMPTION.into(),
        checkpoint: checkpoint.into(),
        seq,
        license_id: license.into(),
        declaration_id: format!("D-FORGED-{seq}"),
        consumed_at: at,
        token_sha256: [0; 32],
        declaration_sha256: [0; 32],
        exporter: "EXP".into(),
        consignee: "CON".into(),
        end_user: "END".into(),
        destination: "DE".into(),
        goods: vec![Goods {
            hs_code: "850511".into(),
            elements: vec!["Dy".into()],
            net_kg: 1.0,
        }],
    }
}

/// A log of `leaves` under `origin`, its head signed with `key` at `time`,
/// and each leaf's inclusion proof.
pub fn signed_log(
    origin: &str,
    key: &SigningKey,
    leaves: &[Vec<u8>],
    time: i64,
) -> (String, Vec<Vec<Hash>>) {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(&SqlLog::create_sql("t")).unwrap();
    let log = SqlLog::new(&conn, "t");
    for (i, l) in leaves.iter().enumerate() {
        log.append(i as u64, leaf_hash(l)).unwrap();
    }
    let size = leaves.len() as u64;
    let head = Head {
        origin: origin.into(),
        size,
        root: log.root(size).unwrap(),
        time,
    }
    .sign(key);
    let proofs = (0..size)
        .map(|i| log.prove_inclusion(i, size).unwrap())
        .collect();
    (head, proofs)
}

/// The records of one checkpoint as its own log, signed with `key`.
pub fn proven(
    checkpoint: &str,
    key: &SigningKey,
    records: &[ConsumptionRecord],
) -> Vec<ProvenRecord> {
    let leaves: Vec<Vec<u8>> = records.iter().map(|r| r.to_leaf()).collect();
    let (head, proofs) = signed_log(&checkpoint_origin(checkpoint), key, &leaves, now());
    leaves
        .into_iter()
        .zip(proofs)
        .enumerate()
        .map(|(i, (leaf, proof))| ProvenRecord {
            leaf,
            index: i as u64,
            head: head.clone(),
            proof,
        })
        .collect()
}

/// A records message as `checkpoint` would send it, its log signed with `key`.
pub fn records_message(
    checkpoint: &str,
    key: &SigningKey,
    records: &[ConsumptionRecord],
) -> Vec<u8> {
    let p = proven(checkpoint, key, records);
    Records {
        head: p[0].head.clone(),
        consistency: None,
        records: p.into_iter().map(|r| (r.index, r.leaf, r.proof)).collect(),
    }
    .encode()
}

/// A feed message whose entries `1..=n` are `records` (each proven in
/// its checkpoint's log, signed with `post_key`), in a national log whose
/// head `hub_key` signs.
pub fn feed_message(
    hub_key: &SigningKey,
    post_key: &SigningKey,
    records: &[ConsumptionRecord],
) -> Vec<u8> {
    let mut post_heads: Vec<String> = Vec::new();
    let mut provens = Vec::new();
    for r in records {
        let p = proven(&r.checkpoint, post_key, std::slice::from_ref(r)).remove(0);
        post_heads.push(p.head.clone());
        provens.push(p);
    }
    let leaves: Vec<Vec<u8>> = provens.iter().map(|p| p.leaf.clone()).collect();
    let (hub_head, hub_proofs) = signed_log(HUB_ORIGIN, hub_key, &leaves, now());
    Feed {
        hub_head,
        post_heads,
        entries: provens
            .into_iter()
            .zip(hub_proofs)
            .enumerate()
            .map(|(i, (p, hub_proof))| FeedEntry {
                g: i as u64 + 1,
                post_head: i,
                post_index: 0,
                leaf: p.leaf,
                post_proof: p.proof,
                hub_proof,
            })
            .collect(),
        time: None,
    }
    .encode()
}
