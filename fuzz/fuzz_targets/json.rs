//! Lenient JSON against serde_json: Picket parses the common case itself
//! (`crates/protocol/src/json/fast.rs`) and must agree with serde_json on
//! every text serde_json accepts, and refuse what it refuses (apart from
//! the `NaN`/`Infinity` that lenient parsing turns into `null`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lenient = picket_protocol::json::parse_lenient(data);
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(strict) => assert_eq!(lenient.ok(), Some(strict), "differs from serde_json on {text:?}"),
        Err(_) if !text.contains("NaN") && !text.contains("Infinity") => assert!(lenient.is_err(), "accepted what serde_json refuses: {text:?}"),
        Err(_) => {}
    }
});
