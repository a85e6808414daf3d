//! Realistic events for Picket's benchmarks, shared by `picket-load` (over
//! HTTP) and `picket-pipeline` (in process).
//!
//! Events are Python-, JavaScript- and Java-shaped exceptions with 10–40
//! frames, breadcrumbs, tags, user, request and contexts, padded to a target
//! size. An issue's exception type and frames depend only on its number, so
//! grouping puts every event of one issue in one group.

use std::io::Write;

use rand::Rng;
use serde_json::{json, Value};

/// The platforms events are shaped after, by issue number.
pub const PLATFORMS: [&str; 3] = ["python", "javascript", "java"];

/// One event payload for an issue: its exception type and frames depend only
/// on the issue, so that grouping puts it in the issue's group.
pub fn event_payload(issue: usize, size_kb: usize, rng: &mut impl Rng) -> Value {
    let platform = PLATFORMS[issue % 3];
    // 10–40 frames, fewer for small events so that the frames fit the size.
    let frames_n = (10 + (issue * 7) % 31).min((size_kb * 1024 * 6 / 10 / 300).max(10));
    let frames: Vec<Value> = (0..frames_n)
        .map(|i| match platform {
            "python" => json!({"module": format!("app.module{issue}.part{i}"), "filename": format!("app/module{issue}/part{i}.py"), "abs_path": format!("/srv/app/app/module{issue}/part{i}.py"),
                "function": format!("handle_{issue}_{i}"), "lineno": 10 + i, "in_app": i % 3 != 0, "context_line": format!("    result = step_{i}(request, data)"),
                "pre_context": ["def f():", "    x = 1"], "post_context": ["    return result", ""], "vars": {"request": "<Request>", "i": i.to_string()}}),
            "javascript" => json!({"filename": format!("/static/js/chunk{issue}.js"), "abs_path": format!("https://app.example.com/static/js/chunk{issue}.js"),
                "function": format!("Component{issue}.render{i}"), "lineno": 1, "colno": 100 + i, "in_app": true, "context_line": format!("const v{i} = props.items.map(render);")}),
            _ => json!({"module": format!("com.example.service{issue}.Handler{i}"), "filename": format!("Handler{i}.java"), "function": format!("process{i}"), "lineno": 40 + i, "in_app": i % 2 == 0}),
        })
        .collect();
    let ty = match platform {
        "python" => format!("ValueError{issue}"),
        "javascript" => format!("TypeError{issue}"),
        _ => format!("java.lang.IllegalStateException{issue}"),
    };
    let mut ev = json!({
        "platform": platform,
        "level": "error",
        "logger": "bench",
        "server_name": format!("web-{}", rng.random_range(1..=8)),
        "release": format!("app@1.{}.0", rng.random_range(0..3)),
        "environment": "production",
        "exception": {"values": [{"type": ty, "value": format!("invalid value {} for field", rng.random_range(0..100_000)), "mechanism": {"type": "generic", "handled": false}, "stacktrace": {"frames": frames}}]},
        "tags": {"customer": format!("c{}", rng.random_range(0..50)), "region": (["eu", "us", "ap"][rng.random_range(0..3)])},
        "user": {"id": rng.random_range(0..10_000).to_string(), "email": format!("user{}@example.com", rng.random_range(0..10_000)), "ip_address": "10.1.2.3"},
        "request": {"url": format!("https://app.example.com/api/items/{}", rng.random_range(0..1000)), "method": "POST", "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Accept": "application/json"}},
        "contexts": {"os": {"name": "Linux", "version": "6.1"}, "runtime": {"name": "CPython", "version": "3.11.7"}, "browser": {"name": "Firefox", "version": "128.0"}},
        "sdk": {"name": "sentry.python", "version": "2.75.0"},
    });
    // Pad with breadcrumbs up to the target size, or up to the SDKs' default
    // limit of 100 (which is also what Picket keeps, as Sentry does: more
    // would be parsed and then dropped, flattering the figures) ...
    let mut crumbs = Vec::new();
    let mut size = ev.to_string().len();
    let mut i = 0;
    while size < size_kb * 1024 && crumbs.len() < MAX_BREADCRUMBS {
        let c = json!({"timestamp": 1_700_000_000.0 + i as f64, "category": "http", "type": "http", "level": "info",
            "message": format!("GET https://api.example.com/v1/resource/{i}?page={}", rng.random_range(0..100)), "data": {"status_code": 200, "duration_ms": rng.random_range(1..500)}});
        size += c.to_string().len() + 1;
        crumbs.push(c);
        i += 1;
    }
    ev["breadcrumbs"] = json!({"values": crumbs});
    // ... and then with data the application attached (`extra`, kept whole):
    // the order being handled, as large events mostly are.
    let mut items = Vec::new();
    while size < size_kb * 1024 {
        let item = json!({"sku": format!("SKU-{issue}-{}", items.len()), "name": format!("Item {} of the order, size {}", items.len(), ["S", "M", "L"][rng.random_range(0..3)]),
            "quantity": rng.random_range(1..5), "unit_price": f64::from(rng.random_range(100..10_000)) / 100.0, "in_stock": rng.random_bool(0.9)});
        size += item.to_string().len() + 1;
        items.push(item);
    }
    if !items.is_empty() {
        ev["extra"] = json!({"order": {"id": format!("o-{}", rng.random_range(0..1_000_000)), "items": items}});
    }
    ev
}

/// Breadcrumbs per event at most: the SDKs' default `max_breadcrumbs`.
pub const MAX_BREADCRUMBS: usize = 100;

/// Gzip at `level` (1–9).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Payload variants per issue, so that events of one issue differ.
pub const VARIANTS: usize = 4;

/// The JSON payloads of `VARIANTS` events per issue; payload `n` belongs to
/// issue `n % issues`.
pub fn payloads(issues: usize, size_kb: usize, rng: &mut impl Rng) -> Vec<String> {
    (0..issues * VARIANTS).map(|n| event_payload(n % issues, size_kb, rng).to_string()).collect()
}

/// Gzip-compressed item members, `VARIANTS` per issue, and the average size
/// of an event's JSON.
pub fn build_templates(issues: usize, size_kb: usize) -> (Vec<Vec<u8>>, usize) {
    let payloads = payloads(issues, size_kb, &mut rand::rng());
    let average = payloads.iter().map(String::len).sum::<usize>() / payloads.len();
    let templates = payloads
        .iter()
        .map(|payload| gzip(format!("{{\"type\":\"event\",\"length\":{}}}\n{payload}\n", payload.len()).as_bytes(), 6))
        .collect();
    (templates, average)
}

/// A request body: a gzip member with the envelope header, then the item's
/// pre-compressed member.
pub fn body_for(template: &[u8], event_id: &str) -> Vec<u8> {
    let header = format!("{{\"event_id\":\"{event_id}\"}}\n");
    let mut body = Vec::with_capacity(header.len() + 32 + template.len());
    stored_gzip_member(header.as_bytes(), &mut body);
    body.extend_from_slice(template);
    body
}

/// Appends `data` (at most 65,535 bytes) as one gzip member whose deflate
/// stream is a single stored block: valid gzip (RFC 1951 section 3.2.4,
/// RFC 1952) that costs the generator no compressor per request. A new
/// deflate compressor zeroes some 300 KB of tables, which was the largest
/// part of the generator's CPU, for 49 bytes of header that compression
/// would not have made smaller.
pub fn stored_gzip_member(data: &[u8], out: &mut Vec<u8>) {
    let len = u16::try_from(data.len()).expect("a stored block holds at most 65,535 bytes");
    // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    // BFINAL = 1, BTYPE = 00 (stored), then LEN and its complement.
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// One uncompressed envelope for `payload` (the bytes the digest reads).
pub fn envelope(event_id: &str, payload: &str) -> Vec<u8> {
    format!("{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n", payload.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn events_have_the_size_asked_for_and_at_most_100_breadcrumbs() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for size_kb in [5, 20, 50] {
            let ev = super::event_payload(7, size_kb, &mut rng);
            let len = ev.to_string().len();
            assert!((size_kb * 1024..size_kb * 1024 + 1024).contains(&len), "{size_kb} KB: {len} bytes");
            assert!(ev["breadcrumbs"]["values"].as_array().unwrap().len() <= super::MAX_BREADCRUMBS);
        }
    }

    #[test]
    fn a_stored_member_decompresses_to_its_data() {
        for data in [&b""[..], b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n"] {
            let mut member = Vec::new();
            super::stored_gzip_member(data, &mut member);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&member[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    #[test]
    fn a_body_is_the_header_then_the_item() {
        let item = super::gzip(b"{\"type\":\"event\",\"length\":2}\n{}\n", 6);
        let body = super::body_for(&item, "9ec79c33ec9942ab8353589fcb2e04dc");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"event\",\"length\":2}\n{}\n");
    }
}
