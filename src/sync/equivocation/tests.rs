use super::*;
use crate::registry::KeyEntry;

const T: UnixTime = 1_780_000_000;

fn registry(key: &ed25519_dalek::SigningKey) -> Registry {
    Registry::new(
        vec![KeyEntry {
            id: "post-a".into(),
            key: key.verifying_key(),
            valid_from: None,
            valid_until: None,
        }],
        Vec::new(),
        300,
    )
}

fn record(seq: u64, license: &str) -> Vec<u8> {
    crate::merkle::test_log::record("post-a", seq, license, T)
}

/// post-a's log of `leaves`, its heads signed at `T`.
struct Log(crate::merkle::test_log::TestLog);

impl Log {
    fn of(leaves: Vec<Vec<u8>>) -> Log {
        Log(crate::merkle::test_log::TestLog::of("post-a", leaves))
    }

    fn root(&self, size: u64) -> Hash {
        self.0.root(size)
    }

    fn head(&self, size: u64, key: &ed25519_dalek::SigningKey) -> String {
        self.0.head(size, key, T)
    }

    fn proven(&self, n: u64, size: u64, key: &ed25519_dalek::SigningKey) -> ProvenRecord {
        self.0.proven(n, size, key, T)
    }

    fn consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        self.0.consistency(old, new)
    }
}

#[test]
fn two_heads_of_one_size_are_evidence_and_one_head_twice_is_not() {
    let key = crate::keys::generate();
    let reg = registry(&key);
    let a = Log::of(vec![b"v1".to_vec(), record(1, "L1")]);
    let b = Log::of(vec![b"v1".to_vec(), record(1, "L2")]);
    let raised = alert(
        "post-a",
        &Evidenced::Heads(a.head(2, &key), b.head(2, &key)),
        "hub",
        T,
    );
    let rebuilt = verify(&raised, &reg, "post-b", T).unwrap();
    assert_eq!(
        rebuilt.alert_id, raised.alert_id,
        "one alert whoever raises it"
    );
    assert_eq!(rebuilt.signer.as_deref(), Some("post-a"));
    // The same head twice, or heads of different sizes without a fork, prove nothing.
    let same = alert(
        "post-a",
        &Evidenced::Heads(a.head(2, &key), a.head(2, &key)),
        "hub",
        T,
    );
    assert!(verify(&same, &reg, "post-b", T).is_err());
    let sizes = alert(
        "post-a",
        &Evidenced::Heads(a.head(1, &key), b.head(2, &key)),
        "hub",
        T,
    );
    assert!(verify(&sizes, &reg, "post-b", T).is_err());
    // A head another key signed is no evidence against post-a.
    let other = crate::keys::generate();
    let forged = alert(
        "post-a",
        &Evidenced::Heads(a.head(2, &key), b.head(2, &other)),
        "hub",
        T,
    );
    assert!(verify(&forged, &reg, "post-b", T).is_err());
    // Naming another signer does not hold.
    let mut renamed = raised.clone();
    renamed.signer = Some("post-b".into());
    assert!(verify(&renamed, &reg, "post-b", T).is_err());
}

#[test]
fn a_later_head_that_does_not_extend_an_earlier_one_is_evidence_with_its_fork() {
    let key = crate::keys::generate();
    let reg = registry(&key);
    let earlier = Log::of(vec![b"v1".to_vec(), record(1, "L1"), b"v2".to_vec()]);
    let later = Log::of(vec![
        b"v1".to_vec(),
        record(1, "L9"),
        b"v2".to_vec(),
        b"v3".to_vec(),
        b"v4".to_vec(),
    ]);
    let fork = Fork {
        root: later.root(3).0,
        proof: later.consistency(3, 5),
    };
    let ev = Evidenced::Fork {
        earlier: earlier.head(3, &key),
        later: later.head(5, &key),
        fork: fork.clone(),
    };
    let raised = alert("post-a", &ev, "hub", T);
    verify(&raised, &reg, "post-b", T).unwrap();
    // A log that does extend the earlier head is no fork.
    let honest = Log::of(vec![
        b"v1".to_vec(),
        record(1, "L1"),
        b"v2".to_vec(),
        b"v3".to_vec(),
    ]);
    let not_a_fork = alert(
        "post-a",
        &Evidenced::Fork {
            earlier: earlier.head(3, &key),
            later: honest.head(4, &key),
            fork: Fork {
                root: honest.root(3).0,
                proof: honest.consistency(3, 4),
            },
        },
        "hub",
        T,
    );
    assert!(verify(&not_a_fork, &reg, "post-b", T).is_err());
    // From an empty log any root leads anywhere: no fork.
    let empty = Log::of(Vec::new());
    let from_nothing = alert(
        "post-a",
        &Evidenced::Fork {
            earlier: empty.head(0, &key),
            later: later.head(5, &key),
            fork: Fork {
                root: [9; 32],
                proof: Vec::new(),
            },
        },
        "hub",
        T,
    );
    assert!(verify(&from_nothing, &reg, "post-b", T).is_err());
    // A made-up root with a proof that does not lead to the later head.
    let mut bad = raised.clone();
    if let Some(f) = bad.fork.as_mut() {
        f.root = [7; 32];
    }
    assert!(verify(&bad, &reg, "post-b", T).is_err());
}

#[test]
fn two_records_under_one_number_are_evidence_and_one_record_twice_is_not() {
    let key = crate::keys::generate();
    let reg = registry(&key);
    let a = Log::of(vec![b"v1".to_vec(), record(1, "L1")]);
    let b = Log::of(vec![record(1, "LIC-FORGED")]);
    let pa = a.proven(1, 2, &key);
    let pb = b.proven(0, 1, &key);
    let one = alert(
        "post-a",
        &Evidenced::Records(Box::new((pa.clone(), pb.clone()))),
        "hub",
        T,
    );
    let other_order = alert(
        "post-a",
        &Evidenced::Records(Box::new((pb, pa.clone()))),
        "post-a",
        T,
    );
    assert_eq!(one.alert_id, other_order.alert_id);
    let rebuilt = verify(&one, &reg, "post-b", T).unwrap();
    assert_eq!(rebuilt.records.len(), 2);
    let twice = alert(
        "post-a",
        &Evidenced::Records(Box::new((pa.clone(), pa.clone()))),
        "hub",
        T,
    );
    assert!(verify(&twice, &reg, "post-b", T).is_err());
    let c = Log::of(vec![record(2, "L3")]);
    let numbers = alert(
        "post-a",
        &Evidenced::Records(Box::new((pa, c.proven(0, 1, &key)))),
        "hub",
        T,
    );
    assert!(verify(&numbers, &reg, "post-b", T).is_err());
}
