//! The hot pieces of one declaration, measured one by one:
//! `cargo bench --bench hot`. The end-to-end figure is `permitgate bench`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The setup's policy with `n` invented denied parties (names of two to
/// four invented words and a legal form; ids like a registry's).
fn with_denied_list(s: &Setup, n: usize) -> Policy {
    const SYLLABLES: &[&str] = &[
        "kor", "van", "del", "mar", "tek", "sun", "lin", "dra", "vel", "ost", "hua", "xin", "ron",
        "bel", "tar", "min", "gro", "sel", "par", "dun", "zhi", "qia", "wen", "yao", "fu", "gau",
        "pet", "rov", "ski", "enko", "bak", "hol", "ams", "ter", "dam", "ber", "lux", "omi", "ya",
        "ka", "wa", "shi", "mot", "ors", "ind", "ust", "rie", "gen", "ama", "zon", "tri", "plex",
        "nova", "tec", "sys", "vik", "ing", "oz", "uh", "ej",
    ];
    const FORMS: &[&str] = &["LLC", "Co., Ltd.", "GmbH", "Inc.", "Limited", "JSC", "FZE"];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    let mut text = include_str!("../tests/data/policy.toml").to_owned();
    for i in 0..n {
        let words: Vec<String> = (0..2 + next(3))
            .map(|_| {
                let w: String = (0..2 + next(2))
                    .map(|_| SYLLABLES[next(SYLLABLES.len())])
                    .collect();
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            })
            .collect();
        text.push_str(&format!(
            "\n[[denied_parties]]\nid = \"XX-{i:07}\"\nname = \"{} {}\"\n",
            words.join(" "),
            FORMS[next(FORMS.len())]
        ));
    }
    let path = s._dir.path().join("listed.toml");
    std::fs::write(&path, text).unwrap();
    Policy::load(&path).unwrap()
}

/// Counts heap allocations, so "no allocation storm per declaration" is a
/// figure, not a hope.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations (and bytes) one call of `f` makes, averaged over `calls` calls.
fn allocations<R>(calls: u64, mut f: impl FnMut() -> R) -> (u64, u64) {
    let (n0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..calls {
        black_box(f());
    }
    (
        (ALLOCATIONS.load(Ordering::Relaxed) - n0) / calls,
        (ALLOCATED_BYTES.load(Ordering::Relaxed) - b0) / calls,
    )
}

fn hot(c: &mut Criterion) {
    let s = setup();
    let (n, bytes) = allocations(100, || gate::prepare(&s.payload, &s.policy, 1 << 20));
    println!("allocations: prepare (declaration parse + token open): {n} ({bytes} bytes)");
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
        b.iter(|| msg.verify_strict(black_box(key.verifying_key())))
    });
    c.bench_function("the gate's exact check alone (StrictKey)", |b| {
        b.iter(|| msg.verify(black_box(&key)))
    });
    batch_against_strict(c);
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
    let parties: Vec<String> = ["exporter", "consignee", "end_user"]
        .iter()
        .map(|p| {
            let d: serde_json::Value = serde_json::from_slice(&s.payload).unwrap();
            d[p]["name"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    c.bench_function("screening keys of a declaration's three parties", |b| {
        b.iter(|| {
            parties
                .iter()
                .map(|n| permitgate::screening::name_keys(black_box(n)))
                .collect::<Vec<_>>()
        })
    });
    c.bench_function("the same through the cache (names seen before)", |b| {
        b.iter(|| {
            parties
                .iter()
                .map(|n| permitgate::screening::name_keys_cached(black_box(n)))
                .collect::<Vec<_>>()
        })
    });
    let prepared = gate::prepare(&s.payload, &s.policy, 1 << 20);
    let facts = LedgerFacts::default();
    let ctx = Context {
        checkpoint: "bench",
        now: s.now,
        clock: permitgate::clock_trust::ClockStatus::Unknown,
    };
    c.bench_function("decision (pure)", |b| {
        b.iter(|| gate::decide(black_box(&prepared), &s.policy, &facts, &ctx))
    });
    // The same against a denied-party list of 10,000 entries (every party screened).
    let listed = with_denied_list(&s, 10_000);
    c.bench_function("decision (pure), 10,000 denied parties", |b| {
        b.iter(|| gate::decide(black_box(&prepared), &listed, &facts, &ctx))
    });

    // One transaction of 100 decisions, one fsync, as the daemon commits them.
    let identity = Identity {
        checkpoint: "bench".into(),
        key: permitgate::keys::generate(),
    };
    let record = permitgate::record::ConsumptionRecord {
        kind: permitgate::record::KIND_CONSUMPTION.into(),
        checkpoint: "bench".into(),
        seq: 1,
        license_id: "MOFCOM-2025-RE-000001".into(),
        declaration_id: "B-1".into(),
        consumed_at: s.now,
        token_sha256: [7; 32],
        declaration_sha256: [9; 32],
        exporter: "91320700MA1X0001".into(),
        consignee: "DE-HRB-10001".into(),
        end_user: "DE-HRB-20002".into(),
        destination: "DE".into(),
        goods: vec![permitgate::record::Goods {
            hs_code: "850511".into(),
            elements: vec!["Nd".into(), "Dy".into()],
            net_kg: 480.0,
        }],
    };
    c.bench_function("consumption record: encode the leaf", |b| {
        b.iter(|| black_box(&record).to_leaf())
    });
    let (n, bytes) = allocations(100, || record.to_leaf());
    println!("allocations: encode a consumption leaf: {n} ({bytes} bytes)");
    // Design: one head is signed per commit batch, not one signature per record.
    let head = permitgate::merkle::head::Head {
        origin: permitgate::merkle::head::checkpoint_origin("bench"),
        size: 1_000_000,
        root: permitgate::merkle::leaf_hash(b"root"),
        time: s.now,
    };
    c.bench_function("signed tree head: sign (once per commit batch)", |b| {
        b.iter(|| black_box(&head).sign(&identity.key))
    });
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), "bench").unwrap();
    let mut n = 0u64;
    let mut unlicensed = |count: usize| {
        (0..count)
            .map(|_| {
                n += 1;
                let mut d: serde_json::Value =
                    serde_json::from_str(include_str!("../tests/data/declaration.json")).unwrap();
                d["declaration_id"] = format!("B-{n}").into();
                if let Some(m) = d.as_object_mut() {
                    m.remove("license");
                }
                gate::prepare(d.to_string().as_bytes(), &s.policy, 1 << 20)
            })
            .collect::<Vec<_>>()
    };
    let mut commit = |batch: &[gate::Prepared]| {
        let mut tx = ledger.begin(&identity).unwrap();
        for p in batch {
            gate::decide_and_record(&mut tx, p, &s.policy, &identity, s.now).unwrap();
        }
        tx.commit().unwrap();
    };
    // Warm: the statement cache is filled on the first transaction.
    commit(&unlicensed(100));
    let batch = unlicensed(100);
    let (total, bytes) = allocations(1, || commit(&batch));
    println!(
        "allocations: decide and record one declaration (no license), in a batch of 100: {} ({} bytes)",
        total / 100,
        bytes / 100
    );
    c.bench_function("ledger: decide and commit a batch of 100", |b| {
        b.iter_batched(
            || unlicensed(100),
            |batch| commit(&batch),
            BatchSize::SmallInput,
        )
    });
    // A quiet gate commits each declaration alone: the fixed cost of a
    // transaction, a signed head and an fsync, for one decision.
    c.bench_function("ledger: decide and commit one alone", |b| {
        b.iter_batched(
            || unlicensed(1),
            |batch| commit(&batch),
            BatchSize::SmallInput,
        )
    });
}

/// What an exact batch check would cost: `verify_batch` of 64 (per call),
/// and the torsion check of one R that would make it accept exactly what
/// `verify_strict` accepts (the README's "No batch verification").
fn batch_against_strict(c: &mut Criterion) {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use ed25519_dalek::Signature;

    let issuer = permitgate::keys::generate();
    let messages: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("Signature1 sig_structure stand-in {i:>300}").into_bytes())
        .collect();
    let signatures: Vec<Signature> = messages
        .iter()
        .map(|m| ed25519_dalek::Signer::sign(&issuer, m))
        .collect();
    let keys = vec![issuer.verifying_key(); 64];
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    c.bench_function("verify_batch of 64 (whole batch)", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &signatures, &keys))
    });
    let r = CompressedEdwardsY(*signatures[0].r_bytes())
        .decompress()
        .unwrap();
    let l_minus_one = Scalar::ZERO - Scalar::ONE;
    c.bench_function("torsion check of one R ([L]R, variable time)", |b| {
        b.iter(|| {
            let r = black_box(r);
            (EdwardsPoint::vartime_multiscalar_mul([l_minus_one], [r]) + r).is_identity()
        })
    });
}

criterion_group!(benches, hot);
criterion_main!(benches);
