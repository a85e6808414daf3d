//! Every error answer of the ingest endpoints, and the edge cases that must
//! not be errors. A bad request gets a clear JSON `detail` and costs nothing
//! else: the next good request still works.

use std::io::Write;

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::harness::{send_raw, Picket};

fn post(p: &Picket, path_and_query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut req = Client::new().post(format!("{}{}", p.base_url(), path_and_query)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn envelope_url(p: &Picket) -> String {
    format!("/api/{}/envelope/?sentry_key={}", p.project_id, p.public_key)
}

fn store_url(p: &Picket) -> String {
    format!("/api/{}/store/?sentry_key={}", p.project_id, p.public_key)
}

fn detail(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap_or(Value::Null);
    (status, body["detail"].as_str().unwrap_or_default().to_string())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn event_envelope(event: &Value) -> Vec<u8> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes()
}

/// After any bad request, a good one still works.
fn assert_still_works(p: &Picket) {
    let r = post(p, &store_url(p), &[], json!({"message": "still alive"}).to_string().into_bytes());
    assert_eq!(r.status(), 200);
}

#[test]
fn authentication_errors() {
    let p = Picket::start("auth-errors");
    let ev = json!({"message": "x"}).to_string().into_bytes();
    let path = format!("/api/{}/store/", p.project_id);
    // No key anywhere.
    let (s, d) = detail(post(&p, &path, &[], ev.clone()));
    assert_eq!(s, 401);
    assert!(d.contains("missing authorization"), "{d}");
    // Unknown key.
    let (s, d) = detail(post(&p, &format!("{path}?sentry_key=00000000000000000000000000000000"), &[], ev.clone()));
    assert_eq!(s, 403);
    assert!(d.contains("key incorrect"), "{d}");
    // Key of another project.
    p.cli_ok(&["project", "create", "acme/other"]);
    let (s, _) = detail(post(&p, &format!("/api/999/store/?sentry_key={}", p.public_key), &[], ev.clone()));
    assert_eq!(s, 403);
    // Malformed header.
    let (s, _) = detail(post(&p, &path, &[("X-Sentry-Auth", "Sentry sentry_version=7")], ev.clone()));
    assert_eq!(s, 401);
    let (s, d) = detail(post(&p, &path, &[("X-Sentry-Auth", "garbage")], ev.clone()));
    assert_eq!(s, 401);
    assert!(d.contains("invalid X-Sentry-Auth header"), "{d}");
    // Two different keys.
    let (s, d) = detail(post(&p, &format!("{path}?sentry_key={}", p.public_key), &[("X-Sentry-Auth", "Sentry sentry_key=abcdef")], ev.clone()));
    assert_eq!(s, 401);
    assert!(d.contains("multiple"), "{d}");
    // Protocol version from the future.
    let (s, d) = detail(post(&p, &path, &[("X-Sentry-Auth", &format!("Sentry sentry_key={}, sentry_version=8", p.public_key))], ev.clone()));
    assert_eq!(s, 400);
    assert!(d.contains("version"), "{d}");
    // Bad project id in the URL.
    let (s, _) = detail(post(&p, &format!("/api/abc/store/?sentry_key={}", p.public_key), &[], ev.clone()));
    assert_eq!(s, 400);
    // All auth forms work, the secret is ignored, and the envelope dsn header alone authenticates.
    for (h, v) in [
        ("X-Sentry-Auth", format!("Sentry sentry_key={}, sentry_secret=whatever, sentry_version=7", p.public_key)),
        ("Authorization", format!("Sentry sentry_key={}", p.public_key)),
    ] {
        assert_eq!(post(&p, &path, &[(h, &v)], ev.clone()).status(), 200, "{h}");
    }
    let with_dsn = format!("{{\"dsn\":\"{}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"via dsn\"}}\n", p.dsn);
    assert_eq!(post(&p, &format!("/api/{}/envelope/", p.project_id), &[], with_dsn.into_bytes()).status(), 200);
    assert_still_works(&p);
}

#[test]
fn malformed_bodies() {
    let p = Picket::start("bad-bodies");
    let cases: Vec<(&str, String, Vec<u8>, &[(&str, &str)], &str)> = vec![
        ("bad JSON", store_url(&p), b"{\"message\": ".to_vec(), &[], "invalid JSON"),
        ("JSON array", store_url(&p), b"[1,2]".to_vec(), &[], "object"),
        ("empty body", store_url(&p), Vec::new(), &[], "empty"),
        ("deep nesting", store_url(&p), format!("{{\"extra\":{}1{}}}", "[".repeat(5000), "]".repeat(5000)).into_bytes(), &[], "nested"),
        ("bad envelope header", envelope_url(&p), b"not json\n".to_vec(), &[], "envelope header"),
        ("truncated item", envelope_url(&p), b"{}\n{\"type\":\"event\",\"length\":100}\n{}".to_vec(), &[], "length"),
        ("bad event item", envelope_url(&p), b"{}\n{\"type\":\"event\"}\n{nope\n".to_vec(), &[], "item 'event'"),
        ("corrupt gzip", store_url(&p), b"definitely not gzip".to_vec(), &[("Content-Encoding", "gzip")], "corrupt gzip"),
        ("unknown encoding", store_url(&p), b"{}".to_vec(), &[("Content-Encoding", "lzma")], "unsupported Content-Encoding"),
    ];
    for (name, url, body, headers, expect) in cases {
        let (s, d) = detail(post(&p, &url, headers, body));
        assert_eq!(s, 400, "{name}: {d}");
        assert!(d.contains(expect), "{name}: detail '{d}' should mention '{expect}'");
    }
    assert_still_works(&p);
}

#[test]
fn size_limits_and_bombs() {
    let p = Picket::start("limits");
    // An event over 1 MiB after decompression.
    let big = json!({"message": "x", "extra": {"blob": "a".repeat(1_100_000)}}).to_string();
    let (s, d) = detail(post(&p, &store_url(&p), &[], big.clone().into_bytes()));
    assert_eq!(s, 413);
    assert!(d.contains("over the limit of 1048576 bytes") && !d.contains("decompression"), "{d}");
    let (s, d) = detail(post(&p, &envelope_url(&p), &[], event_envelope(&serde_json::from_str(&big).unwrap())));
    assert_eq!(s, 413, "{d}");
    assert!(d.contains("'event'"), "{d}");
    // A decompression bomb: 256 MiB of zeros in about 250 KiB of gzip; refused at the 100 MiB limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let started = std::time::Instant::now();
    let (s, d) = detail(post(&p, &envelope_url(&p), &[("Content-Encoding", "gzip")], bomb.clone()));
    assert_eq!(s, 413, "{d}");
    assert!(started.elapsed().as_secs() < 20, "bomb took {:?}", started.elapsed());
    // Without a valid key, a bomb is refused before it is decompressed:
    // for its header line, or for the key.
    let keyless = format!("/api/{}/envelope/", p.project_id);
    let (s, d) = detail(post(&p, &keyless, &[("Content-Encoding", "gzip")], bomb.clone()));
    assert_eq!(s, 400, "{d}");
    assert!(d.contains("header line at byte 0 is longer"), "{d}");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"{}\n").unwrap();
    for _ in 0..128 {
        enc.write_all(&zeros).unwrap();
    }
    let (s, d) = detail(post(&p, &keyless, &[("Content-Encoding", "gzip")], enc.finish().unwrap()));
    assert_eq!(s, 401, "{d}");
    assert!(d.contains("missing authorization"), "{d}");
    let (s, d) = detail(post(&p, &format!("{keyless}?sentry_key=00000000000000000000000000000000"), &[("Content-Encoding", "gzip")], bomb));
    assert_eq!(s, 403, "{d}");
    // With the key only in the envelope header (a tunnel), the header line is read first.
    let dsn_header = format!("{{\"dsn\":\"{}\"}}\n", p.dsn).into_bytes();
    let (s, d) = detail(post(&p, &keyless, &[("Content-Encoding", "gzip")], gzip(&[&dsn_header[..], &vec![b'x'; 1 << 20]].concat())));
    assert_eq!(s, 400, "the key is fine, the item is not: {d}");
    let bad_dsn = b"{\"dsn\":\"https://00000000000000000000000000000000@example.com/1\"}\n".to_vec();
    let (s, d) = detail(post(&p, &keyless, &[("Content-Encoding", "gzip")], gzip(&[&bad_dsn[..], &vec![b'x'; 1 << 20]].concat())));
    assert_eq!(s, 403, "{d}");
    let tunnelled = format!("{{\"dsn\":\"{}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"tunnelled\"}}\n", p.dsn);
    assert_eq!(post(&p, &keyless, &[("Content-Encoding", "gzip")], gzip(tunnelled.as_bytes())).status(), 200);
    // A body over 20 MiB as sent.
    let huge = vec![b' '; 21 << 20];
    assert_eq!(post(&p, &envelope_url(&p), &[], huge).status(), 413);
    assert_still_works(&p);
}

#[test]
fn encodings_and_framing_are_accepted() {
    let p = Picket::start("encodings");
    let ev = |m: &str| json!({"message": m}).to_string().into_bytes();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&ev("zlib")).unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(&ev("raw deflate")).unwrap();
    let mut br = Vec::new();
    brotli::CompressorWriter::new(&mut br, 4096, 5, 22).write_all(&ev("brotli")).unwrap();
    let zst = zstd::encode_all(&ev("zstd")[..], 3).unwrap();
    let b64 = {
        use std::io::Write as _;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&ev("base64 zlib")).unwrap();
        base64_encode(&z.finish().unwrap())
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("gzip", gzip(&ev("gzip"))),
        ("deflate", zlib.finish().unwrap()),
        ("deflate", raw.finish().unwrap()),
        ("br", br),
        ("zstd", zst),
        ("", ev("no encoding")),
        ("UTF-8", ev("bogus UTF-8 encoding value")),
        ("identity", ev("identity")),
    ];
    let n = cases.len();
    for (enc, body) in cases {
        let headers: Vec<(&str, &str)> = if enc.is_empty() { vec![] } else { vec![("Content-Encoding", enc)] };
        let r = post(&p, &store_url(&p), &headers, body);
        assert_eq!(r.status(), 200, "encoding {enc}: {}", r.text().unwrap());
    }
    assert_eq!(post(&p, &store_url(&p), &[], b64.into_bytes()).status(), 200, "base64+zlib body");
    // Chunked transfer, no Content-Type, as @sentry/node sends.
    let head = format!("POST {} HTTP/1.1\r\nHost: x", envelope_url(&p));
    let r = send_raw(p.port, &head, &event_envelope(&json!({"message": "chunked"})), true);
    assert_eq!(r.status, 200, "{}", r.body);
    // Python's NaN and Infinity, numeric level, timestamp without zone, tags as pairs, user id as number.
    let lenient = br#"{"message": "lenient", "level": 30, "timestamp": "2026-01-01T00:00:00", "extra": {"a": NaN, "b": -Infinity},
        "tags": [["k", "v"]], "user": {"id": 42}, "request": {"headers": {"Accept": ["a", "b"]}}}"#;
    assert_eq!(post(&p, &store_url(&p), &[], lenient.to_vec()).status(), 200);
    // GET /store/ with ?sentry_data= answers an image.
    let data = crate::harness::urlencode(&json!({"message": "via GET"}).to_string());
    let r = Client::new().get(format!("{}{}&sentry_data={data}", p.base_url(), store_url(&p))).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    // Legacy /api/store/ without a project id; trailing slash optional.
    assert_eq!(post(&p, &format!("/api/store/?sentry_key={}", p.public_key), &[], ev("legacy")).status(), 200);
    assert_eq!(post(&p, &format!("/api/{}/store?sentry_key={}", p.project_id, p.public_key), &[], ev("no slash")).status(), 200);
    p.wait_for_events(n as i64 + 6);
    let lenient_issue = p.issues(Some("lenient")).pop().expect("lenient event stored");
    assert_eq!(lenient_issue["level"], "warning");
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn unknown_items_and_empty_envelopes_are_fine() {
    let p = Picket::start("unknown-items");
    let body = b"{}\n{\"type\":\"something_from_the_future\",\"length\":3}\nabc\n{\"type\":\"replay_event\"}\n{}\n".to_vec();
    let r = post(&p, &envelope_url(&p), &[], body);
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!({}));
    let r = post(&p, &envelope_url(&p), &[], b"{}".to_vec());
    assert_eq!(r.status(), 200);
    p.wait_for("unknown item counted", || {
        p.api("/api/0/projects/acme/web/stats/")["items"].as_array().unwrap().iter().any(|i| i["itemType"] == "something_from_the_future" && i["outcome"] == "skipped")
    });
}

#[test]
fn rate_limits_answer_429_with_headers() {
    let p = Picket::start("rate-limit");
    p.cli_ok(&["project", "rate-limit", "acme/web", "--count", "2", "--window", "60"]);
    let ev = || json!({"message": "limited"}).to_string().into_bytes();
    assert_eq!(post(&p, &store_url(&p), &[], ev()).status(), 200);
    assert_eq!(post(&p, &store_url(&p), &[], ev()).status(), 200);
    let r = post(&p, &store_url(&p), &[], ev());
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let limits = r.headers()["x-sentry-rate-limits"].to_str().unwrap().to_string();
    assert_eq!(limits, format!("{retry}::key:key_quota"), "integer seconds, all categories");
    // Client reports are never limited.
    let report = b"{}\n{\"type\":\"client_report\"}\n{\"discarded_events\":[{\"reason\":\"ratelimit_backoff\",\"category\":\"error\",\"quantity\":1}]}\n".to_vec();
    assert_eq!(post(&p, &envelope_url(&p), &[], report).status(), 200);
}

#[test]
fn full_queue_sheds_load_with_429() {
    let mut p = Picket::start_with("queue-full", &[("PICKET_MAX_QUEUE", "0")]);
    assert!(p.log().contains("every event is refused"), "0 closes ingest, with a warning");
    let r = post(&p, &store_url(&p), &[], json!({"message": "x"}).to_string().into_bytes());
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.headers()["x-sentry-rate-limits"].to_str().unwrap().ends_with(":organization:queue_full"));
    // Refusals are in the project's stats and summed up in the log (both
    // written every few seconds, and when the server stops). A request
    // without a valid key counts in the log only.
    assert_eq!(post(&p, &envelope_url(&p), &[], b"not an envelope".to_vec()).status(), 400);
    assert_eq!(post(&p, &format!("/api/{}/store/", p.project_id), &[], b"{}".to_vec()).status(), 401);
    p.terminate();
    let log = p.log();
    assert!(log.contains("ingest refused requests") && log.contains("rate_limited 1") && log.contains("invalid 1") && log.contains("filtered 1"), "{log}");
    p.spawn();
    let items = p.api("/api/0/projects/acme/web/stats/")["items"].clone();
    let count = |outcome: &str| items.as_array().unwrap().iter().find(|i| i["itemType"] == "request" && i["outcome"] == outcome).map(|i| i["count"].clone());
    assert_eq!((count("rate_limited"), count("invalid"), count("filtered")), (Some(json!(1)), Some(json!(1)), None), "{items}");
}

#[test]
fn cors_for_browsers() {
    let p = Picket::start("cors");
    let r = Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/api/{}/envelope/", p.base_url(), p.project_id))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-sentry-auth")
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["access-control-max-age"], "3600");
    // Errors carry CORS headers too, so the browser SDK can read 429s and 4xxs.
    let r = post(&p, &format!("/api/{}/store/?sentry_key=00000000000000000000000000000000", p.project_id), &[("Origin", "https://app.example.com")], b"{}".to_vec());
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let expose = r.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(expose.contains("x-sentry-rate-limits") && expose.contains("retry-after"), "{expose}");
}

#[test]
fn allowed_origins_per_project() {
    let p = Picket::start("origins");
    p.cli_ok(&["project", "allowed-origins", "acme/web", "https://app.example.com", "https://admin.example.com"]);
    let send = |origin: &str| post(&p, &store_url(&p), &[("Origin", origin)], json!({"message": "from a browser"}).to_string().into_bytes());
    assert_eq!(send("https://app.example.com").status(), 200);
    assert_eq!(send("https://admin.example.com").status(), 200);
    let (s, d) = detail(send("https://evil.example.net"));
    assert_eq!(s, 403);
    assert!(d.contains("not allowed"), "{d}");
    // Servers send no Origin and are not affected.
    assert_still_works(&p);
    assert!(!p.cli(&["project", "allowed-origins", "acme/web", "app.example.com"]).status.success());
}

#[test]
fn csp_reports() {
    let p = Picket::start("csp");
    let url = format!("/api/{}/security/?sentry_key={}", p.project_id, p.public_key);
    let legacy = json!({"csp-report": {"document-uri": "https://example.com/page", "blocked-uri": "https://evil.example.net/x.js", "violated-directive": "script-src 'self'", "effective-directive": "script-src"}});
    let r = post(&p, &url, &[("Content-Type", "application/csp-report")], legacy.to_string().into_bytes());
    assert_eq!(r.status(), 200);
    let api = json!([{"type": "csp-violation", "age": 1, "url": "https://example.com/", "body": {"documentURL": "https://example.com/", "blockedURL": "https://evil.example.net/y.js", "effectiveDirective": "script-src-elem"}}]);
    let r = post(&p, &url, &[("Content-Type", "application/reports+json")], api.to_string().into_bytes());
    assert_eq!(r.status(), 200);
    p.wait_for_events(2);
    let issues = p.issues(None);
    assert!(issues.iter().any(|i| i["title"] == "Blocked 'script' from 'evil.example.net'"), "{issues:?}");
    assert!(issues.iter().all(|i| i["type"] == "csp"));
    let (s, _) = detail(post(&p, &url, &[], b"{\"nope\": 1}".to_vec()));
    assert_eq!(s, 400);
}

#[test]
fn hostile_data_is_stored_verbatim_and_served_as_json() {
    let p = Picket::start("hostile");
    let evil = "<script>alert(document.cookie)</script>\u{0}\u{202e}";
    let r = post(&p, &store_url(&p), &[], json!({"message": evil, "tags": {"x": "<img src=x onerror=alert(1)>"}}).to_string().into_bytes());
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string();
    p.wait_for_events(1);
    let resp = Client::new().get(format!("{}/api/0/projects/acme/web/events/{id}/", p.base_url())).bearer_auth(&p.token).send().unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let ev: Value = resp.json().unwrap();
    assert_eq!(ev["message"], evil);
}

/// What ingest accepts, the digest stores: a lone UTF-16 surrogate escape
/// (Python writes one for a `surrogateescape` string) is kept as U+FFFD, as
/// invalid UTF-8 is; a number out of range is refused at once, not
/// answered `200` and dropped later.
#[test]
fn ingest_accepts_exactly_what_the_digest_stores() {
    let p = Picket::start("surrogates");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let body = format!("{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\"}}\n{{\"message\": \"file \\udcff.txt\", \"extra\": {{\"pair\": \"\\ud83d\\ude00\"}}}}\n");
    let r = post(&p, &envelope_url(&p), &[], body.into_bytes());
    assert_eq!(r.status(), 200);
    p.wait_for_events(1);
    let ev: Value = Client::new().get(format!("{}/api/0/projects/acme/web/events/{id}/", p.base_url())).bearer_auth(&p.token).send().unwrap().json().unwrap();
    assert_eq!(ev["message"], "file \u{fffd}.txt", "{ev}");
    assert_eq!(ev["context"]["pair"], "\u{1F600}", "the API serves `extra` as `context`: {ev}");

    let body = format!("{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\"}}\n{{\"message\": \"big\", \"extra\": {{\"n\": 1e400}}}}\n", uuid::Uuid::new_v4().simple());
    let (s, d) = detail(post(&p, &envelope_url(&p), &[], body.into_bytes()));
    assert_eq!(s, 400, "{d}");
    assert!(d.contains("number out of range"), "{d}");
    assert_still_works(&p);
}
