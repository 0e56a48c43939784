use super::*;

fn h(b: u8) -> Hash {
    Hash([b; 32])
}

#[test]
fn messages_round_trip() {
    let r = Records {
        head: "head".into(),
        consistency: Some(Consistency {
            from: 3,
            root: Some(h(9)),
            proof: vec![h(1), h(2)],
        }),
        records: vec![(4, vec![1, 2], vec![h(3)]), (5, vec![3], vec![])],
    };
    assert_eq!(Records::decode(&r.encode()).unwrap(), r);
    let r2 = Records {
        consistency: None,
        ..r
    };
    assert_eq!(Records::decode(&r2.encode()).unwrap(), r2);
    let a = Ack {
        checkpoint: "p1".into(),
        contiguous: 42,
        post_head: Some("note".into()),
        resend: true,
        issued_at: 1_800_000_000,
    };
    assert_eq!(Ack::decode(&a.encode()).unwrap(), a);
    let f = Feed {
        hub_head: "hub".into(),
        post_heads: vec!["p".into()],
        entries: vec![FeedEntry {
            g: 7,
            post_head: 0,
            post_index: 9,
            leaf: vec![9; 40],
            post_proof: vec![h(4)],
            hub_proof: vec![h(5), h(6)],
        }],
        time: Some(vec![1, 2, 3]),
    };
    assert_eq!(Feed::decode(&f.encode()).unwrap(), f);
    let b = Backfill {
        checkpoint: "p1".into(),
        after: 3,
        limit: 100,
        issued_at: -5,
        nonce: 3,
    };
    assert_eq!(Backfill::decode(&b.encode()).unwrap(), b);
}

fn registry(hub: &SigningKey, post: &SigningKey, hub_until: i64) -> Registry {
    use crate::registry::KeyEntry;
    Registry::new(
        vec![KeyEntry {
            id: "p1".into(),
            key: post.verifying_key(),
            valid_from: None,
            valid_until: None,
        }],
        vec![KeyEntry {
            id: "hub-1".into(),
            key: hub.verifying_key(),
            valid_from: None,
            valid_until: Some(hub_until),
        }],
        0,
    )
}

#[test]
fn sealed_messages_open_only_with_a_key_the_registry_trusts_now() {
    let hub = crate::keys::generate();
    let post = crate::keys::generate();
    let forger = crate::keys::generate();
    let reg = registry(&hub, &post, 2000);
    let ack = Ack {
        checkpoint: "p1".into(),
        contiguous: 5,
        post_head: None,
        resend: false,
        issued_at: 1000,
    };
    assert_eq!(
        Ack::open(&ack.seal("hub-1", &hub), &reg, 1000).unwrap(),
        ack
    );
    // A forger's seal under the hub's kid, an unknown kid, a retired key, no seal at all.
    let e = Ack::open(&ack.seal("hub-1", &forger), &reg, 1000).unwrap_err();
    assert_eq!(e.code(), "bad_signature");
    let e = Ack::open(&ack.seal("hub-9", &forger), &reg, 1000).unwrap_err();
    assert_eq!(e.code(), "unknown_signer");
    let e = Ack::open(&ack.seal("hub-1", &hub), &reg, 3000).unwrap_err();
    assert_eq!(e.code(), "key_not_valid");
    let e = Ack::open(&ack.encode(), &reg, 1000).unwrap_err();
    assert_eq!(e.code(), "unreadable");
    let sealed = ack.seal("hub-1", &hub);
    for i in 0..sealed.len() {
        let mut b = sealed.clone();
        b[i] ^= 0x01;
        assert!(Ack::open(&b, &reg, 1000).is_err(), "byte {i}");
    }
    // A backfill request is sealed by the checkpoint it speaks for.
    let req = Backfill {
        checkpoint: "p1".into(),
        after: 0,
        limit: 500,
        issued_at: 1000,
        nonce: 1,
    };
    assert_eq!(Backfill::open(&req.seal(&post), &reg, 1000).unwrap(), req);
    assert!(Backfill::open(&req.seal(&forger), &reg, 1000).is_err());
    let other = Backfill {
        checkpoint: "p2".into(),
        ..req
    };
    assert!(Backfill::open(&other.seal(&post), &reg, 1000).is_err());
}

#[test]
fn wrong_shapes_are_refused() {
    assert!(Records::decode(b"\xa0").is_err());
    assert!(
        Ack::decode(&map(vec![
            ("checkpoint", Value::Integer(1)),
            ("contiguous", Value::Integer(1)),
            ("issued_at", Value::Integer(1))
        ]))
        .is_err()
    );
    assert!(
        Ack::decode(&map(vec![
            ("checkpoint", Value::Text("p".into())),
            ("contiguous", Value::Integer(-1)),
            ("issued_at", Value::Integer(1))
        ]))
        .is_err()
    );
    let entry = |head: u64| {
        Value::Array(vec![
            Value::Integer(1),
            Value::Integer(head.into()),
            Value::Integer(0),
            Value::Bytes(vec![]),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ])
    };
    let feed = |e: Value| {
        map(vec![
            ("hub_head", Value::Text("h".into())),
            ("post_heads", Value::Array(vec![Value::Text("p".into())])),
            ("entries", Value::Array(vec![e])),
        ])
    };
    assert!(Feed::decode(&feed(entry(0))).is_ok());
    // An entry naming a head the message does not carry.
    assert!(Feed::decode(&feed(entry(1))).is_err());
    assert!(Feed::decode(&feed(Value::Integer(1))).is_err());
    // A proof hash of the wrong size, or too many of them.
    let short = Value::Array(vec![
        Value::Integer(1),
        Value::Bytes(vec![]),
        Value::Array(vec![Value::Bytes(vec![0; 31])]),
    ]);
    let records = |r: Value| {
        map(vec![
            ("head", Value::Text("h".into())),
            ("records", Value::Array(vec![r])),
        ])
    };
    assert!(Records::decode(&records(short)).is_err());
    let long = Value::Array(vec![
        Value::Integer(1),
        Value::Bytes(vec![]),
        Value::Array(vec![Value::Bytes(vec![0; 32]); merkle::PROOF_MAX + 1]),
    ]);
    assert!(Records::decode(&records(long)).is_err());
    let too_many = Value::Array(vec![Value::Bytes(vec![]); BATCH_MAX + 1]);
    assert!(
        Records::decode(&map(vec![
            ("head", Value::Text("h".into())),
            ("records", too_many)
        ]))
        .is_err()
    );
    assert!(Records::decode(b"\xff\x00garbage").is_err());
}

#[test]
fn records_topics_name_their_checkpoint() {
    let t = SyncTopics::new("permitgate");
    assert_eq!(t.checkpoint_of_records(&t.records("p-1")), Some("p-1"));
    assert_eq!(t.checkpoint_of_records("permitgate/hub/records/"), None);
    assert_eq!(t.checkpoint_of_records("permitgate/hub/records/a/b"), None);
    assert_eq!(t.checkpoint_of_records("other/hub/records/a"), None);
}
