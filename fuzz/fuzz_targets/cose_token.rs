//! COSE_Sign1 / CBOR token bytes and the CWT claims inside.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = permitgate::token::cose::parse(data) {
        let _ = permitgate::token::License::from_payload(&msg.payload);
    }
    let _ = permitgate::token::License::from_payload(data);
    let _ = permitgate::codec::decode_value(data);
});
