//! `/store/` bodies: any Content-Encoding, base64 and zlib layers, lenient
//! JSON, then normalization and grouping. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = picket_protocol::limits::MAX_EVENT_SIZE;
    let (encoding, body) = match data.first() {
        Some(b) => (["", "gzip", "deflate", "br", "zstd"][(*b as usize) % 5], &data[1..]),
        None => ("", data),
    };
    let Ok(decoded) = picket_protocol::decompress::decode(encoding, body, limit) else { return };
    let Ok(json) = picket_protocol::store::decode_store_body(&decoded, limit) else { return };
    if let Ok(value) = picket_protocol::json::parse_lenient(&json) {
        let _ = picket_core::normalize::normalize(value, &picket_core::normalize::Context::at(1_700_000_000.0));
    }
});
