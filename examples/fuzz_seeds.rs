//! Writes the fuzzers' seed corpus (valid inputs of every decoder) into
//! `fuzz/corpus/`: `cargo run --example fuzz_seeds`. Tokens, tree heads,
//! sealed messages and bundles are signed with the fixed key the fuzz
//! targets trust.

use std::path::Path;

use permitgate::merkle::head::{HUB_ORIGIN, Head, checkpoint_origin};
use permitgate::record::ConsumptionRecord;
use permitgate::sync::protocol::{Ack, Backfill, Feed, FeedEntry, Records};
use permitgate::token::{self, License};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let lic = License::from_claims_json(include_str!("../tests/data/claims.json")).expect("claims");
    let cose = token::issue(&lic, "mofcom-2025-1", &key);
    let text = token::text::encode(&cose);
    write("token_text", "pg1.txt", text.as_bytes());
    write("cose_token", "token.cose", &cose);

    let json = include_str!("../tests/data/declaration.json");
    let mut d: serde_json::Value = serde_json::from_str(json).expect("declaration");
    d["license"] = text.clone().into();
    write("declaration", "with-token.json", d.to_string().as_bytes());
    write("declaration", "plain.json", json.as_bytes());
    write(
        "declaration",
        "plain.cbor",
        &permitgate::codec::to_vec(&d).expect("cbor"),
    );

    let pem = permitgate::keys::public_pem(&key.verifying_key());
    let policy = include_str!("../tests/data/policy.toml").replace(
        "public_key_file = \"issuer.pub.pem\"",
        &format!("public_key = \"\"\"\n{pem}\"\"\""),
    );
    write("policy", "policy.toml", policy.as_bytes());

    // A one-leaf log of checkpoint `post-a` and a one-entry national log,
    // both signed with the fixed key: the proofs are empty.
    let leaf = ConsumptionRecord {
        kind: permitgate::record::KIND_CONSUMPTION.into(),
        checkpoint: "post-a".into(),
        seq: 1,
        license_id: "LIC-1".into(),
        declaration_id: "D-1".into(),
        consumed_at: 1_780_000_000,
        token_sha256: [1; 32],
        declaration_sha256: [2; 32],
        exporter: "EXP".into(),
        consignee: "CON".into(),
        end_user: "END".into(),
        destination: "DE".into(),
        goods: vec![],
    }
    .to_leaf();
    let root = permitgate::merkle::leaf_hash(&leaf);
    let head = |origin: String| {
        Head {
            origin,
            size: 1,
            root,
            time: 1_800_000_000,
        }
        .sign(&key)
    };
    let post_head = head(checkpoint_origin("post-a"));
    let hub_head = head(HUB_ORIGIN.into());
    write("sync_messages", "leaf.cbor", &leaf);
    write("sync_messages", "head.note", post_head.as_bytes());
    write(
        "sync_messages",
        "records",
        &Records {
            head: post_head.clone(),
            consistency: None,
            records: vec![(0, leaf.clone(), vec![])],
        }
        .encode(),
    );
    write(
        "sync_messages",
        "ack",
        &Ack {
            checkpoint: "post-a".into(),
            contiguous: 3,
            post_head: Some(post_head.clone()),
            resend: false,
            issued_at: 1_800_000_000,
        }
        .seal("hub-1", &key),
    );
    write(
        "sync_messages",
        "feed",
        &Feed {
            hub_head,
            post_heads: vec![post_head],
            entries: vec![FeedEntry {
                g: 1,
                post_head: 0,
                post_index: 0,
                leaf,
                post_proof: vec![],
                hub_proof: vec![],
            }],
            time: None,
        }
        .encode(),
    );
    write(
        "sync_messages",
        "backfill",
        &Backfill {
            checkpoint: "post-a".into(),
            after: 0,
            limit: 500,
            issued_at: 1_800_000_000,
        }
        .seal(&key),
    );
    let dir = tempfile::tempdir().expect("scratch");
    let p = dir.path().join("policy.toml");
    std::fs::write(&p, &policy).expect("policy");
    let bundle =
        permitgate::bundle::sign(&p, &key, permitgate::bundle::DEFAULT_KID).expect("bundle");
    write("sync_messages", "bundle.cose", &bundle);
}
