//! Sync messages, consumption records and policy bundles off the uplink.
#![no_main]
use libfuzzer_sys::fuzz_target;
use permitgate::sync::protocol::{Ack, Backfill, Feed, Records};

/// The key the seed corpus is signed with (seed bytes 7 × 32), so inputs
/// near the seeds pass the signature and reach the parsers behind it.
fn fixed() -> ed25519_dalek::VerifyingKey {
    static KEY: std::sync::OnceLock<ed25519_dalek::VerifyingKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
}

fuzz_target!(|data: &[u8]| {
    let _ = Records::decode(data);
    let _ = Ack::decode(data);
    let _ = Feed::decode(data);
    let _ = Backfill::decode(data);
    let _ = permitgate::record::ConsumptionRecord::parse_unverified(data);
    let _ = permitgate::bundle::open(data, &fixed());
});
