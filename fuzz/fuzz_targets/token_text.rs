//! The `PG1:` text form (base45 + zlib) and everything after it.
#![no_main]
use libfuzzer_sys::fuzz_target;

/// The key the seed corpus is signed with (seed bytes 7 × 32), so inputs
/// near the seeds pass the signature and reach the parsers behind it.
fn fixed() -> ed25519_dalek::VerifyingKey {
    static KEY: std::sync::OnceLock<ed25519_dalek::VerifyingKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
}

fuzz_target!(|data: &[u8]| {
    let key = Some(fixed());
    let _ = permitgate::token::text::to_cose_bytes(data);
    let _ = permitgate::token::open(data, |_| key);
});
