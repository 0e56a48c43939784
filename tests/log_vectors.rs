//! Golden vectors for the verifiable logs (`tests/data/log-vectors.json`),
//! and an independent check of the formats `docs/verifiable-logs.md`
//! specifies: the leaf hash, the tree root, the signed note's key id and
//! signature, computed here from the specification with `sha2` and
//! `ed25519-dalek` alone, not with permitgate's code.
//!
//! `PG_WRITE_VECTORS=1 cargo test --test log_vectors` rewrites the file
//! (the outputs are deterministic: Ed25519 signatures are).

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use permitgate::merkle::head::{Head, checkpoint_origin};
use permitgate::merkle::{SqlLog, leaf_hash};
use permitgate::record::{ConsumptionRecord, Goods, KIND_CONSUMPTION, KIND_VERDICT, VerdictLeaf};
use sha2::{Digest, Sha256};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/log-vectors.json");
const TIME: i64 = 1_796_000_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn leaves() -> Vec<Vec<u8>> {
    let verdict = |id: i64, json: &str| {
        VerdictLeaf {
            kind: KIND_VERDICT.into(),
            audit_id: id,
            decided_at: TIME - 60 + id,
            content_hash: Some("11".repeat(32)),
            verdict: json.into(),
        }
        .to_leaf()
    };
    let consumption = ConsumptionRecord {
        kind: KIND_CONSUMPTION.into(),
        checkpoint: "lyg-port-01".into(),
        seq: 1,
        license_id: "LIC-2025-000123".into(),
        declaration_id: "CN-LYG-2025-000123".into(),
        consumed_at: TIME - 59,
        token_sha256: [0x22; 32],
        declaration_sha256: [0x11; 32],
        exporter: "91320700MA1X0001".into(),
        consignee: "DE-HRB-10001".into(),
        end_user: "DE-HRB-20002".into(),
        destination: "DE".into(),
        goods: vec![Goods {
            hs_code: "850511".into(),
            elements: vec!["Nd".into(), "Dy".into()],
            net_kg: 480.0,
        }],
    }
    .to_leaf();
    vec![
        verdict(
            1,
            r#"{"declaration_id":"CN-LYG-2025-000123","verdict":"cleared"}"#,
        ),
        consumption,
        verdict(
            2,
            r#"{"declaration_id":"CN-LYG-2025-000124","verdict":"rejected"}"#,
        ),
    ]
}

/// What the library makes of the fixed inputs.
fn produce() -> serde_json::Value {
    let leaves = leaves();
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch(&SqlLog::create_sql("t")).unwrap();
    let log = SqlLog::new(&conn, "t");
    for (i, l) in leaves.iter().enumerate() {
        log.append(i as u64, leaf_hash(l)).unwrap();
    }
    let head = |size: u64| {
        Head {
            origin: checkpoint_origin("lyg-port-01"),
            size,
            root: log.root(size).unwrap(),
            time: TIME,
        }
        .sign(&key())
    };
    let hex_proof =
        |p: Vec<tlog_tiles::Hash>| p.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>();
    serde_json::json!({
        "public_key": hex::encode(key().verifying_key().to_bytes()),
        "leaves": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
        "leaf_hashes": leaves.iter().map(|l| hex::encode(leaf_hash(l).0)).collect::<Vec<_>>(),
        "roots": (1..=3).map(|n| hex::encode(log.root(n).unwrap().0)).collect::<Vec<_>>(),
        "head_2": head(2),
        "head_3": head(3),
        "inclusion_1_in_3": hex_proof(log.prove_inclusion(1, 3).unwrap()),
        "consistency_2_to_3": hex_proof(log.prove_consistency(2, 3).unwrap()),
    })
}

#[test]
fn the_library_reproduces_the_golden_vectors() {
    let made = produce();
    if std::env::var("PG_WRITE_VECTORS").is_ok() {
        std::fs::write(FILE, serde_json::to_string_pretty(&made).unwrap() + "\n").unwrap();
    }
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    assert_eq!(
        made, golden,
        "the formats changed: update docs/verifiable-logs.md and the vectors"
    );
}

fn h(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// RFC 9162 §2.1.1, from its definition.
fn mth(leaves: &[Vec<u8>]) -> [u8; 32] {
    match leaves.len() {
        0 => h(b""),
        1 => h(&[&[0u8][..], &leaves[0]].concat()),
        n => {
            let k = n.next_power_of_two() / 2;
            h(&[&[1u8][..], &mth(&leaves[..k]), &mth(&leaves[k..])].concat())
        }
    }
}

fn unhex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn the_vectors_check_out_by_the_specification_alone() {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let leaves: Vec<Vec<u8>> = v["leaves"].as_array().unwrap().iter().map(unhex).collect();
    for (l, lh) in leaves.iter().zip(v["leaf_hashes"].as_array().unwrap()) {
        assert_eq!(h(&[&[0u8][..], l].concat()).to_vec(), unhex(lh));
    }
    for (n, r) in v["roots"].as_array().unwrap().iter().enumerate() {
        assert_eq!(mth(&leaves[..=n]).to_vec(), unhex(r));
    }
    // The signed note: text, a blank line, "— NAME BASE64(keyid ‖ signature)".
    let key = VerifyingKey::from_bytes(&unhex(&v["public_key"]).try_into().unwrap()).unwrap();
    let note = v["head_3"].as_str().unwrap();
    let (text, sigs) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "permitgate/checkpoint/lyg-port-01");
    assert_eq!(lines[1], "3");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(b64.decode(lines[2]).unwrap(), mth(&leaves).to_vec());
    assert!(lines[3].starts_with("time 2026-"), "{}", lines[3]);
    let sig_line = sigs.lines().next().unwrap();
    let rest = sig_line
        .strip_prefix("\u{2014} permitgate/checkpoint/lyg-port-01 ")
        .unwrap();
    let raw = b64.decode(rest).unwrap();
    let key_id = h(&[
        b"permitgate/checkpoint/lyg-port-01\n".as_slice(),
        &[1u8],
        key.as_bytes(),
    ]
    .concat());
    assert_eq!(
        &raw[..4],
        &key_id[..4],
        "key id = SHA-256(name ‖ LF ‖ 0x01 ‖ key)[..4]"
    );
    let sig = Signature::from_slice(&raw[4..]).unwrap();
    key.verify_strict(text.as_bytes(), &sig).unwrap();
    // The inclusion proof of leaf 1 in the tree of 3: [hash(leaf 0), hash(leaf 2)], bottom up.
    let proof: Vec<Vec<u8>> = v["inclusion_1_in_3"]
        .as_array()
        .unwrap()
        .iter()
        .map(unhex)
        .collect();
    let mut acc = h(&[&[0u8][..], &leaves[1]].concat());
    acc = h(&[&[1u8][..], &proof[0], &acc].concat());
    acc = h(&[&[1u8][..], &acc, &proof[1]].concat());
    assert_eq!(acc, mth(&leaves));
    // And the library agrees the head verifies.
    let head = Head::open(note.as_bytes(), &checkpoint_origin("lyg-port-01"), &[key]).unwrap();
    assert_eq!(head.size, 3);
}
