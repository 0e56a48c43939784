//! Policy files (TOML), as a signed bundle carries them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = permitgate::policy::Policy::from_toml(text, std::path::Path::new("<fuzz>"));
    }
});
