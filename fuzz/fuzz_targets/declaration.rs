//! Declarations, JSON or CBOR, as the daemon reads them from the network.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = permitgate::declaration::parse(data, 1 << 20);
});
