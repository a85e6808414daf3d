//! Lenient JSON against serde_json: Picket parses the common case itself
//! (`crates/protocol/src/json/fast.rs`) and must agree with serde_json on
//! every text serde_json accepts, and refuse what it refuses (apart from
//! the `NaN`/`Infinity` that lenient parsing turns into `null`, and the lone
//! surrogate escapes it turns into U+FFFD). Ingest's check, the same parser
//! building nothing, takes exactly the texts that parse into an object.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lenient = picket_protocol::json::parse_lenient(data);
    // Ingest's check takes an object exactly when the parse gives one.
    let object = lenient.as_ref().is_ok_and(serde_json::Value::is_object);
    assert_eq!(picket_protocol::json::validate_object(data).is_ok(), object, "the check and the parse differ on {text:?}");
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(strict) => assert_eq!(lenient.ok(), Some(strict), "differs from serde_json on {text:?}"),
        Err(_) if !text.contains("NaN") && !text.contains("Infinity") && !text.contains("\\u") => assert!(lenient.is_err(), "accepted what serde_json refuses: {text:?}"),
        Err(_) => {}
    }
});
