//! Sync messages, consumption records and policy bundles off the uplink.
#![no_main]
use libfuzzer_sys::fuzz_target;
use permitgate::registry::{KeyEntry, Registry};
use permitgate::sync::protocol::{Ack, Backfill, Feed, Records};

/// The key the seed corpus is signed with (seed bytes 7 × 32), so inputs
/// near the seeds pass the signature and reach the parsers behind it.
fn fixed() -> ed25519_dalek::VerifyingKey {
    static KEY: std::sync::OnceLock<ed25519_dalek::VerifyingKey> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
}

/// A registry trusting the fixed key as checkpoint `post-a` and hub key `hub-1`.
fn registry() -> &'static Registry {
    static REG: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REG.get_or_init(|| {
        let entry = |id: &str| KeyEntry {
            id: id.into(),
            key: fixed(),
            valid_from: None,
            valid_until: None,
        };
        Registry::new(vec![entry("post-a")], vec![entry("hub-1")], 0)
    })
}

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    let _ = Records::decode(data);
    let _ = Ack::open(data, registry(), now);
    if let Ok(feed) = Feed::decode(data) {
        let _ = permitgate::sync::verify::check_feed(&feed, registry());
    }
    let _ = Backfill::open(data, registry(), now);
    let _ = permitgate::record::ConsumptionRecord::from_leaf(data);
    let _ = permitgate::merkle::head::Head::peek(data);
    let _ = permitgate::record::ConsumptionRecord::parse_unverified(data);
    let _ = permitgate::bundle::open(data, &fixed());
});
