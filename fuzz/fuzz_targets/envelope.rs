//! Envelope bytes as they arrive (after decompression): split into items, then
//! every event-like item processed as the digest would. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_core::process::{process_envelope, Origin};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = picket_protocol::envelope::Envelope::parse(data) {
        for item in &env.items {
            let _ = item.item_type();
        }
    }
    let _ = process_envelope(&Origin { received: 1_700_000_000.0, project_id: 1, ..Origin::default() }, data);
});
