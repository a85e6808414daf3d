//! Every raw request captured from a real SDK (`shared/fixtures/sdk-captures`)
//! is replayed byte for byte, with the project id in the URL rewritten; each
//! must be accepted, and what it carried must be visible through the API.

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{repo_root, send_raw, Picket};

/// The key the captures were made with.
const CAPTURE_KEY: &str = "e3b0c44298fc1c149afbf4c8996fb924";

struct Capture {
    name: String,
    head: String,
    body: Vec<u8>,
    chunked: bool,
    /// Item types, from the human rendition beside the capture.
    item_types: Vec<String>,
    is_store: bool,
}

fn captures_dir() -> PathBuf {
    let dir = repo_root().parent().unwrap().join("shared/fixtures/sdk-captures");
    assert!(dir.is_dir(), "SDK captures not found at {}: the tests expect ../shared beside the repository", dir.display());
    dir
}

fn load_captures() -> Vec<Capture> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(captures_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "http")).collect();
        files.sort();
        for f in files {
            let raw = std::fs::read(&f).unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("blank line after headers");
            let head = String::from_utf8(raw[..split].to_vec()).unwrap();
            let body = raw[split + 4..].to_vec();
            let meta: Value = serde_json::from_slice(&std::fs::read(f.with_extension("meta.json")).unwrap()).unwrap();
            let decoded = std::fs::read_to_string(f.with_extension("decoded.txt")).unwrap_or_default();
            let item_types = decoded
                .lines()
                .filter_map(|l| l.strip_prefix("{\"type\": \""))
                .filter_map(|l| l.split('"').next())
                .map(str::to_string)
                .collect();
            out.push(Capture {
                name: format!("{}/{}", dir.file_name().unwrap().to_string_lossy(), f.file_name().unwrap().to_string_lossy()),
                is_store: meta["path"].as_str().unwrap_or_default().contains("/store"),
                chunked: meta["body_framing"] == "chunked",
                head,
                body,
                item_types,
            });
        }
    }
    assert!(out.len() > 50, "expected the full capture corpus, found {}", out.len());
    out
}

#[test]
fn every_captured_request_is_accepted_and_stored() {
    let p = Picket::start("replay");
    p.cli_ok(&["project", "add-key", "acme/web", "--public-key", CAPTURE_KEY]);
    let captures = load_captures();
    let mut event_ids = Vec::new();
    let mut transactions = 0;
    for c in &captures {
        let head = c.head.replacen("/api/42/", &format!("/api/{}/", p.project_id), 1);
        let resp = send_raw(p.port, &head, &c.body, c.chunked);
        assert_eq!(resp.status, 200, "{}: {} {}", c.name, resp.status, resp.body);
        let body: Value = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
        assert!(body.is_object(), "{}: body {}", c.name, resp.body);
        if c.is_store || c.item_types.iter().any(|t| t == "event") {
            let id = body["id"].as_str().unwrap_or_else(|| panic!("{}: no id in {}", c.name, resp.body));
            assert_eq!(id.len(), 32, "{}", c.name);
            event_ids.push((c.name.clone(), id.to_string()));
        }
        transactions += c.item_types.iter().filter(|t| *t == "transaction").count();
    }
    p.wait_for_events(event_ids.len() as i64);
    for (name, id) in &event_ids {
        let ev = p.event(id);
        assert_eq!(ev["eventID"], id.as_str(), "{name}");
        assert!(ev["groupID"].is_string(), "{name}: event not grouped");
        assert!(!ev["title"].as_str().unwrap_or_default().is_empty(), "{name}: no title");
    }
    p.wait_for("transactions", || p.api("/api/0/projects/acme/web/transactions/").as_array().unwrap().len() >= transactions);
    assert!(transactions > 0);

    // Sessions, check-ins, feedback and attachments all arrived.
    let sessions = p.api("/api/0/projects/acme/web/sessions/");
    assert!(sessions.as_array().unwrap().iter().any(|s| s["release"] == "app@1.2.3" && s["total"].as_i64().unwrap() > 0), "{sessions}");
    let stats = p.api("/api/0/projects/acme/web/stats/");
    let count = |ty: &str, outcome: &str| stats["items"].as_array().unwrap().iter().filter(|i| i["itemType"] == ty && i["outcome"] == outcome).map(|i| i["count"].as_i64().unwrap()).sum::<i64>();
    assert!(count("check_in", "accepted") > 0, "{stats}");
    assert!(count("feedback", "accepted") > 0, "{stats}");
    assert!(count("attachment", "accepted") > 0, "{stats}");
    // Telemetry Picket does not store is counted, never an error.
    for skipped in ["log", "span", "profile"] {
        assert!(count(skipped, "skipped") > 0, "{skipped} not counted: {stats}");
    }
    assert_eq!(count("event", "invalid"), 0, "{stats}");
    assert!(!p.api("/api/0/projects/acme/web/user-feedback/").as_array().unwrap().is_empty());
}

#[test]
fn raven_legacy_payload_keeps_its_interfaces() {
    let p = Picket::start("replay-raven");
    p.cli_ok(&["project", "add-key", "acme/web", "--public-key", CAPTURE_KEY]);
    let c = load_captures().into_iter().find(|c| c.name.starts_with("python-raven/001-capture_exception")).unwrap();
    let head = c.head.replacen("/api/42/", &format!("/api/{}/", p.project_id), 1);
    let resp = send_raw(p.port, &head, &c.body, c.chunked);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let id = serde_json::from_str::<Value>(&resp.body).unwrap()["id"].as_str().unwrap().to_string();
    p.wait_for_events(1);
    let ev = p.event(&id);
    assert_eq!(ev["level"], "error", "raven's numeric level 40 is error");
    assert_eq!(ev["user"]["email"], "alice@example.com");
    let types: Vec<&str> = ev["entries"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"exception"), "{types:?}");
    assert!(ev["tags"].as_array().unwrap().iter().any(|t| t["key"] == "tenant" && t["value"] == "acme"));
}

#[test]
fn replaying_the_same_event_twice_stores_it_once() {
    let p = Picket::start("replay-dup");
    p.cli_ok(&["project", "add-key", "acme/web", "--public-key", CAPTURE_KEY]);
    let c = load_captures().into_iter().find(|c| c.name.starts_with("python-sentry-sdk/001-")).unwrap();
    let head = c.head.replacen("/api/42/", &format!("/api/{}/", p.project_id), 1);
    let first = send_raw(p.port, &head, &c.body, c.chunked);
    let second = send_raw(p.port, &head, &c.body, c.chunked);
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.body, second.body, "same id both times");
    p.wait_for_events(1);
    // Give the second copy time to be digested, then check it was not counted.
    p.wait_for("queue drained", || {
        let stats = p.api("/api/0/projects/acme/web/stats/");
        stats["items"].as_array().unwrap().iter().any(|i| i["itemType"] == "event" && i["outcome"] == "duplicate")
    });
    assert_eq!(p.event_count(), 1);
    let issues = p.issues(None);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["count"], "1");
}
