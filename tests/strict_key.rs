//! The gate's Ed25519 check (`StrictKey::verify`) against ed25519-dalek's
//! `verify_strict`: they must accept exactly the same signatures.
//!
//! On the C2SP CCTV edge-case vectors, the ed25519-speccheck cases ("Taming
//! the many EdDSAs"), and random and mutated signatures: 100,000 by default,
//! a million in CI (`STRICT_KEY_CASES=1000000`). The signature arithmetic
//! (curve25519-dalek, ed25519-dalek, sha2) is compiled optimised even in the
//! dev profile, so the million runs in about a minute and a half on two
//! cores without a release build of everything else.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use permitgate::strict_key::StrictKey;
use rayon::prelude::*;
use sha2::{Digest, Sha512};

/// `verify_strict`'s answer and ours for one (key, message, signature).
fn both(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> (bool, bool) {
    let sig = Signature::from_bytes(sig);
    match VerifyingKey::from_bytes(key) {
        // A key that does not decompress cannot be loaded into a policy.
        Err(_) => (false, false),
        Ok(vk) => (
            vk.verify_strict(msg, &sig).is_ok(),
            StrictKey::from(vk).verify(msg, &sig).is_ok(),
        ),
    }
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s).expect("hex in a vendored vector");
    v.try_into().expect("length of a vendored vector")
}

#[test]
fn cctv_edge_case_vectors() {
    let text = include_str!("data/ed25519/cctv-ed25519vectors.json");
    let vectors: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    assert_eq!(vectors.len(), 914);
    let mut accepted = 0;
    for v in &vectors {
        let key: [u8; 32] = unhex(v["key"].as_str().unwrap());
        let sig: [u8; 64] = unhex(v["sig"].as_str().unwrap());
        let msg = v["msg"].as_str().unwrap().as_bytes();
        let (strict, ours) = both(&key, msg, &sig);
        assert_eq!(strict, ours, "vector {}", v["number"]);
        // A strict verifier accepts a vector only if it has no small-order
        // point, no non-canonical encoding and no low-order residue (a
        // low-order *component* of A or R may cancel out).
        let flags: Vec<&str> = v["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let refusable = [
            "low_order_A",
            "low_order_R",
            "non_canonical_A",
            "non_canonical_R",
            "low_order_residue",
        ];
        let expected = !flags.iter().any(|f| refusable.contains(f));
        assert_eq!(ours, expected, "vector {} {flags:?}", v["number"]);
        accepted += usize::from(ours);
    }
    assert_eq!(accepted, 43);
}

#[test]
fn speccheck_cases() {
    let text = include_str!("data/ed25519/speccheck-cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    assert_eq!(cases.len(), 12);
    let mut verdicts = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let key: [u8; 32] = unhex(c["pub_key"].as_str().unwrap());
        let sig: [u8; 64] = unhex(c["signature"].as_str().unwrap());
        let msg = hex::decode(c["message"].as_str().unwrap()).unwrap();
        let (strict, ours) = both(&key, &msg, &sig);
        assert_eq!(strict, ours, "case {i}");
        verdicts.push(ours);
    }
    // speccheck's results table, row "Dalek strict": only case 3 (a
    // mixed-order A whose components cancel) is accepted.
    let accepted: Vec<usize> = (0..12).filter(|&i| verdicts[i]).collect();
    assert_eq!(accepted, vec![3]);
}

/// A deterministic stream of bytes for case `case` under `seed`.
struct Stream {
    seed: u64,
    case: u64,
    block: u64,
    buf: Vec<u8>,
}

impl Stream {
    fn new(seed: u64, case: u64) -> Self {
        Stream {
            seed,
            case,
            block: 0,
            buf: Vec::new(),
        }
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            if self.buf.is_empty() {
                let mut h = Sha512::new();
                h.update(self.seed.to_le_bytes());
                h.update(self.case.to_le_bytes());
                h.update(self.block.to_le_bytes());
                self.block += 1;
                self.buf = h.finalize().to_vec();
            }
            *b = self.buf.pop().unwrap_or(0);
        }
        out
    }
    fn below(&mut self, n: u64) -> u64 {
        u64::from_le_bytes(self.bytes::<8>()) % n
    }
    fn scalar(&mut self) -> Scalar {
        Scalar::from_bytes_mod_order_wide(&self.bytes::<64>())
    }
}

/// [k]T for a point T of order dividing 8: only k mod 8 counts.
fn times(t: EdwardsPoint, k: &Scalar) -> EdwardsPoint {
    let mut out = EdwardsPoint::default();
    for _ in 0..(k.as_bytes()[0] & 7) {
        out += t;
    }
    out
}

fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Every encoding of a small-order point, canonical or not (CCTV's list).
const SMALL_ORDER_ENCODINGS: [&str; 14] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000080",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
];

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn add_l(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

/// How many kinds of case [`case`] draws from.
const KINDS: u64 = 11;

/// One case: a textbook signature, then one kind of damage. Returns the
/// key, message and signature to check, and the kind's number.
fn case(seed: u64, n: u64) -> ([u8; 32], Vec<u8>, [u8; 64], u64) {
    let mut rng = Stream::new(seed, n);
    let kind = rng.below(KINDS);
    let len = rng.below(320) as usize;
    let mut msg: Vec<u8> = (0..len).map(|_| rng.bytes::<1>()[0]).collect();
    let a = rng.scalar();
    let torsion = EIGHT_TORSION[rng.below(8) as usize];
    let mut a_point = EdwardsPoint::mul_base(&a);
    if kind == 7 {
        // A key with a small-order component.
        a_point += torsion;
    }
    let key = a_point.compress().to_bytes();
    let r = rng.scalar();
    let mut r_point = EdwardsPoint::mul_base(&r);
    if kind == 8 {
        // R with a small-order component.
        r_point += torsion;
    }
    let r_bytes = r_point.compress().to_bytes();
    let s = r + challenge(&r_bytes, &key, &msg) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    let mut key = key;
    match kind {
        1 => {
            let bit = rng.below(512) as usize;
            sig[bit / 8] ^= 1 << (bit % 8);
        }
        2 if !msg.is_empty() => {
            let bit = rng.below(msg.len() as u64 * 8) as usize;
            msg[bit / 8] ^= 1 << (bit % 8);
        }
        3 => {
            let bit = rng.below(256) as usize;
            key[bit / 8] ^= 1 << (bit % 8);
        }
        4 => {
            let e = SMALL_ORDER_ENCODINGS[rng.below(14) as usize];
            sig[..32].copy_from_slice(&unhex::<32>(e));
        }
        5 => {
            let s_plus_l = add_l(&sig[32..]);
            sig[32..].copy_from_slice(&s_plus_l);
        }
        6 => sig[..32].copy_from_slice(&rng.bytes::<32>()),
        9 => {
            // A small-order key T and a signature for which the equation
            // holds: R = [r]B + T' with T' = -[k]T and S = r; look for the
            // T' that the k of R gives back.
            key = torsion.compress().to_bytes();
            'search: for t in EIGHT_TORSION {
                let r_bytes = (EdwardsPoint::mul_base(&r) + t).compress().to_bytes();
                let k = challenge(&r_bytes, &key, &msg);
                if -times(torsion, &k) == t {
                    sig[..32].copy_from_slice(&r_bytes);
                    sig[32..].copy_from_slice(r.as_bytes());
                    break 'search;
                }
            }
        }
        10 => {
            // A key with a small-order component T and a small-order R for
            // which the equation holds: S = k·a makes [S]B - [k]A = -[k]T,
            // so look for a message whose k makes that R.
            let mixed = EdwardsPoint::mul_base(&a) + torsion;
            key = mixed.compress().to_bytes();
            'search: for attempt in 0u8..=255 {
                msg.push(attempt);
                for t in EIGHT_TORSION {
                    let r_bytes = t.compress().to_bytes();
                    let k = challenge(&r_bytes, &key, &msg);
                    if -times(torsion, &k) == t {
                        sig[..32].copy_from_slice(&r_bytes);
                        sig[32..].copy_from_slice((k * a).as_bytes());
                        break 'search;
                    }
                }
                msg.pop();
            }
        }
        _ => {}
    }
    (key, msg, sig, kind)
}

#[test]
fn random_and_mutated_signatures_agree() {
    let cases: u64 = match std::env::var("STRICT_KEY_CASES") {
        Ok(s) => s.parse().expect("STRICT_KEY_CASES is a number"),
        Err(_) => 100_000,
    };
    let seed: u64 = match std::env::var("STRICT_KEY_SEED") {
        Ok(s) => s.parse().expect("STRICT_KEY_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let counts = (0..cases)
        .into_par_iter()
        .map(|n| {
            let (key, msg, sig, kind) = case(seed, n);
            let (strict, ours) = both(&key, &msg, &sig);
            assert_eq!(
                strict, ours,
                "case {n} (kind {kind}) under STRICT_KEY_SEED={seed}: verify_strict says {strict}"
            );
            let mut c = [[0u64; 2]; KINDS as usize];
            c[kind as usize][usize::from(ours)] += 1;
            c
        })
        .reduce(
            || [[0u64; 2]; KINDS as usize],
            |mut a, b| {
                for k in 0..KINDS as usize {
                    a[k][0] += b[k][0];
                    a[k][1] += b[k][1];
                }
                a
            },
        );
    println!(
        "{cases} cases under STRICT_KEY_SEED={seed}; per kind [refused, accepted]: {counts:?}"
    );
    // Each kind of case was drawn, and the genuine ones were accepted.
    assert!(counts.iter().all(|c| c[0] + c[1] > 0));
    assert!(counts[0][0] == 0 && counts[0][1] > 0);
    // Some keys and R with a small-order component are still accepted:
    // the drawn torsion point was the identity, or k cancelled it.
    assert!(counts[7][1] > 0 && counts[7][0] > 0);
    // A small-order key or R, or an unreduced S, is never accepted, even
    // where the equation holds.
    assert_eq!(
        counts[4][1] + counts[5][1] + counts[9][1] + counts[10][1],
        0
    );
}
