//! The real Rust `sentry` crate (`tests/sdk/rust`) against a real server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{repo_root, Picket, BIN};

/// Builds the client (a no-op when up to date) and returns its path, beside `picket`.
fn client_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path", "tests/sdk/rust/Cargo.toml"])
        .current_dir(repo_root())
        .status()
        .expect("run cargo to build the Rust SDK client");
    assert!(status.success(), "building tests/sdk/rust failed");
    let path = PathBuf::from(BIN).with_file_name("rust-sdk-client");
    assert!(path.exists(), "{} not found after building it", path.display());
    path
}

#[test]
fn rust_sentry_crate() {
    let client = client_binary();
    let p = Picket::start("sdk-rust");
    let out = Command::new(client).arg(&p.dsn).output().unwrap();
    assert!(out.status.success(), "rust-sdk-client failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let ids: HashMap<String, String> = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    p.wait_for_events(ids.len() as i64);
    let event = |name: &str| p.event(&ids[name]);
    let group = |name: &str| event(name)["groupID"].as_str().unwrap().to_string();

    // Chained error: both exceptions, the cause first.
    let chained = event("chained");
    let exc = chained["entries"].as_array().unwrap().iter().find(|e| e["type"] == "exception").expect("exception entry");
    let values = exc["data"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "{exc}");
    assert_eq!(values[0]["type"], "PaymentError");
    assert_eq!(values[1]["type"], "CheckoutError");
    assert_eq!(chained["title"], "CheckoutError: checkout failed");
    // Scope data.
    assert_eq!(chained["user"]["id"], "42");
    assert_eq!(chained["user"]["email"], "rust@example.com");
    assert!(chained["tags"].as_array().unwrap().iter().any(|t| t["key"] == "tenant" && t["value"] == "acme"));
    assert_eq!(chained["contexts"]["order"]["id"], 1234);
    let crumbs = chained["entries"].as_array().unwrap().iter().find(|e| e["type"] == "breadcrumbs").expect("breadcrumbs");
    assert!(crumbs["data"]["values"].as_array().unwrap().iter().any(|b| b["message"] == "clicked pay"));
    assert_eq!(chained["sdk"]["name"], "sentry.rust");

    // Grouping: same error, different message → one issue; messages with a
    // variable number → one issue; a different error → another issue.
    assert_eq!(group("same_a"), group("same_b"));
    assert_eq!(group("message_a"), group("message_b"));
    assert_ne!(group("same_a"), group("chained"));
    assert_ne!(group("same_a"), group("message_a"));
    // Fingerprints: salted splits from the default, fixed merges.
    assert_ne!(group("fingerprint_salted"), group("same_a"));
    assert_eq!(group("fingerprint_fixed_a"), group("fingerprint_fixed_b"));
    let issue = p.api(&format!("/api/0/issues/{}/", group("same_a")));
    assert_eq!(issue["count"], "2");

    // Attachment, transaction, session, check-in.
    let atts = p.api(&format!("/api/0/projects/acme/web/events/{}/attachments/", ids["attachment"]));
    assert_eq!(atts[0]["name"], "rust.txt");
    assert_eq!(atts[0]["size"], "hello from rust".len());
    p.wait_for("the transaction", || p.api("/api/0/projects/acme/web/transactions/").as_array().unwrap().iter().any(|t| t["transaction"] == "checkout"));
    p.wait_for("the session", || {
        p.api("/api/0/projects/acme/web/sessions/").as_array().unwrap().iter().any(|s: &Value| s["release"] == "app@1.0.0" && s["total"] == 1)
    });
    p.wait_for("the check-in", || !p.api("/api/0/projects/acme/web/monitors/rust-nightly/checkins/").as_array().unwrap().is_empty());
}
