//! The hot pieces of one declaration, measured one by one:
//! `cargo bench --bench hot`. The end-to-end figure is `permitgate bench`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use permitgate::decision::{Context, LedgerFacts};
use permitgate::gate;
use permitgate::ledger::{Identity, Ledger};
use permitgate::policy::Policy;
use permitgate::token::{self, License};

struct Setup {
    _dir: tempfile::TempDir,
    policy: Policy,
    token_text: String,
    payload: Vec<u8>,
    now: i64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let issuer = permitgate::keys::generate();
    permitgate::keys::write_keypair(dir.path(), "issuer", &issuer).unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, include_str!("../tests/data/policy.toml")).unwrap();
    let policy = Policy::load(&path).unwrap();
    let now = 1_790_000_000;
    let mut lic = License::from_claims_json(include_str!("../tests/data/claims.json")).unwrap();
    lic.issued_at = now - 3600;
    lic.not_before = None;
    lic.expires = now + 86_400;
    let token_text = token::text::encode(&token::issue(&lic, "mofcom-2025-1", &issuer));
    let mut d: serde_json::Value =
        serde_json::from_str(include_str!("../tests/data/declaration.json")).unwrap();
    d["license"] = token_text.clone().into();
    Setup {
        _dir: dir,
        policy,
        token_text,
        payload: d.to_string().into_bytes(),
        now,
    }
}

fn hot(c: &mut Criterion) {
    let s = setup();
    let cose = token::text::to_cose_bytes(s.token_text.as_bytes()).unwrap();
    c.bench_function("token text to COSE bytes (base45 + inflate)", |b| {
        b.iter(|| token::text::to_cose_bytes(black_box(s.token_text.as_bytes())))
    });
    c.bench_function("COSE_Sign1 parse", |b| {
        b.iter(|| token::cose::parse(black_box(&cose)))
    });
    let msg = token::cose::parse(&cose).unwrap();
    let key = s.policy.issuer_key(&msg.kid).unwrap();
    c.bench_function("verify_strict alone", |b| {
        b.iter(|| msg.verify(black_box(&key)))
    });
    c.bench_function("token open (decode + verify + claims)", |b| {
        b.iter(|| {
            token::open(black_box(s.token_text.as_bytes()), |k| {
                s.policy.issuer_key(k)
            })
        })
    });
    c.bench_function("prepare: declaration parse + token open", |b| {
        b.iter(|| gate::prepare(black_box(&s.payload), &s.policy, 1 << 20))
    });
    let prepared = gate::prepare(&s.payload, &s.policy, 1 << 20);
    let facts = LedgerFacts::default();
    let ctx = Context {
        checkpoint: "bench",
        now: s.now,
    };
    c.bench_function("decision (pure)", |b| {
        b.iter(|| gate::decide(black_box(&prepared), &s.policy, &facts, &ctx))
    });

    // One transaction of 100 decisions, one fsync, as the daemon commits them.
    let identity = Identity {
        checkpoint: "bench".into(),
        key: permitgate::keys::generate(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), "bench").unwrap();
    let mut n = 0u64;
    c.bench_function("ledger: decide and commit a batch of 100", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        n += 1;
                        let mut d: serde_json::Value =
                            serde_json::from_str(include_str!("../tests/data/declaration.json"))
                                .unwrap();
                        d["declaration_id"] = format!("B-{n}").into();
                        if let Some(m) = d.as_object_mut() {
                            m.remove("license");
                        }
                        gate::prepare(d.to_string().as_bytes(), &s.policy, 1 << 20)
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                let mut tx = ledger.begin().unwrap();
                for p in &batch {
                    gate::decide_and_record(&mut tx, p, &s.policy, &identity, s.now).unwrap();
                }
                tx.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, hot);
criterion_main!(benches);
