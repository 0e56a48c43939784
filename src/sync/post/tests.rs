use super::*;
use crate::sim::fixtures::{self, key};
use crate::sync::protocol::Ack;

const T: crate::clock::UnixTime = fixtures::EPOCH;

struct Fixture {
    machine: PostSync,
    ledger: Ledger,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.db"), "post-a").unwrap();
    let machine = PostSync::new(
        PostSyncConfig {
            checkpoint: "post-a".into(),
            key: key("post-a"),
            prefix: "permitgate".into(),
            interval_ms: 1_000,
            resend_after_ms: 5_000,
            policy_root: None,
            in_force: PolicyInForce::new(fixtures::policy()),
            telemetry: crate::telemetry::Telemetry::new(dir.path(), true, T),
        },
        now(0),
    );
    Fixture {
        machine,
        ledger,
        _dir: dir,
    }
}

fn now(mono: Millis) -> Now {
    Now { mono, unix: T }
}

impl Fixture {
    /// Clears `id` under license `l` at the gate: one commit, one new head.
    fn clear(&mut self, id: &str, l: usize) -> String {
        let identity = crate::ledger::Identity {
            checkpoint: "post-a".into(),
            key: key("post-a"),
        };
        let policy = fixtures::policy();
        let mut batch = self.ledger.begin(&identity).unwrap();
        crate::gate::decide_and_record(
            &mut batch,
            &fixtures::prepared(id, l),
            &policy,
            &identity,
            T,
        )
        .unwrap();
        batch.commit().unwrap();
        self.ledger.log_head().unwrap().unwrap().1
    }

    fn ack(&mut self, head: &str) -> Vec<Output> {
        let payload = Ack {
            checkpoint: "post-a".into(),
            contiguous: 0,
            post_head: Some(head.to_owned()),
            resend: false,
            issued_at: T,
        }
        .seal("hub-1", &key("hub-1"));
        let mut out = Vec::new();
        let input = Input::Message {
            topic: "permitgate/post-a/sync/ack",
            payload: &payload,
        };
        self.machine
            .handle(input, &mut self.ledger, now(10), &mut out);
        out
    }

    fn held(&self) -> Option<String> {
        self.ledger.hub_holds_head().unwrap()
    }
}

#[test]
fn acknowledgements_only_move_forward_to_heads_of_this_log() {
    let mut f = fixture();
    let first = f.clear("D-1", 0);
    let second = f.clear("D-2", 1);
    assert!(f.ack(&first).is_empty());
    assert_eq!(f.held(), Some(first.clone()));
    assert!(f.ack(&second).is_empty());
    assert_eq!(f.held(), Some(second.clone()));
    // The first acknowledgement again (a replay, one the network delayed):
    // nothing moves back.
    for _ in 0..3 {
        assert!(f.ack(&first).is_empty());
        assert_eq!(f.held(), Some(second.clone()));
    }
}

#[test]
fn a_head_under_this_key_that_this_log_does_not_hold_says_the_key_is_used_elsewhere() {
    let mut f = fixture();
    let mine = f.clear("D-1", 0);
    f.ack(&mine);
    // Someone with this checkpoint's key signed another log.
    let other = crate::merkle::test_log::TestLog::of(
        "post-a",
        vec![crate::merkle::test_log::record("post-a", 1, "LIC-U", T)],
    );
    let out = f.ack(&other.head(1, &key("post-a"), T));
    assert_eq!(f.held(), Some(mine), "nothing moves");
    let alerts: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Alert(p) => Some(p.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 1, "{out:?}");
    assert!(alerts[0].contains("log_equivocation"), "{}", alerts[0]);
    assert!(
        alerts[0].contains("is being used elsewhere"),
        "{}",
        alerts[0]
    );
    assert!(!alerts[0].contains("lost or erased"), "{}", alerts[0]);
    // Said once for that head, not on every replay.
    assert!(f.ack(&other.head(1, &key("post-a"), T)).is_empty());
}
