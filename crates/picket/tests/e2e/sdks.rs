//! The real, unmodified SDKs from PyPI and npm against a real server:
//! Python `sentry-sdk` (gzip, and brotli when importable), `raven` 6.10.0
//! and `@sentry/node` 11. `scripts/install-test-deps.sh` installs them; each
//! script under `tests/sdk/` sends a known set of events and prints the ids.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{deps_dir, repo_root, run_sdk as run, Picket};

fn python_script(name: &str) -> PathBuf {
    repo_root().join("tests/sdk/python").join(name)
}

struct Checked<'a> {
    p: &'a Picket,
    ids: HashMap<String, String>,
}

impl Checked<'_> {
    /// Waits until every event the SDK acknowledged is stored and retrievable.
    fn new(p: &Picket, ids: HashMap<String, String>) -> Checked<'_> {
        // `check_in` is a check-in id, and `_*` keys are facts about the run, not events.
        let events: Vec<&String> = ids.iter().filter(|(k, _)| *k != "check_in" && !k.starts_with('_')).map(|(_, v)| v).collect();
        p.wait_for(&format!("{} events", events.len()), || events.iter().all(|id| p.api_request("GET", &format!("/api/0/projects/acme/web/events/{id}/"), None).0 == 200));
        Checked { p, ids }
    }

    fn event(&self, name: &str) -> Value {
        self.p.event(&self.ids[name])
    }

    fn group(&self, name: &str) -> String {
        self.event(name)["groupID"].as_str().unwrap().to_string()
    }

    fn issue(&self, name: &str) -> Value {
        self.p.api(&format!("/api/0/issues/{}/", self.group(name)))
    }

    fn exceptions(&self, name: &str) -> Vec<Value> {
        let e = self.event(name);
        let exc = e["entries"].as_array().unwrap().iter().find(|x| x["type"] == "exception").cloned().unwrap_or_else(|| panic!("{name}: no exception entry: {e}"));
        exc["data"]["values"].as_array().unwrap().clone()
    }

    /// User, tags, contexts and breadcrumbs set on the scope reached the event.
    fn scope_data(&self, name: &str, email: &str, context: bool) {
        let e = self.event(name);
        assert_eq!(e["user"]["email"], email, "{name}: {}", e["user"]);
        assert!(e["tags"].as_array().unwrap().iter().any(|t| t["key"] == "tenant" && t["value"] == "acme"), "{name}: tags {}", e["tags"]);
        if context {
            assert_eq!(e["contexts"]["order"]["id"], 1234, "{name}: contexts {}", e["contexts"]);
        }
        let crumbs = e["entries"].as_array().unwrap().iter().find(|x| x["type"] == "breadcrumbs").cloned().unwrap_or_else(|| panic!("{name}: no breadcrumbs"));
        assert!(crumbs["data"]["values"].as_array().unwrap().iter().any(|b| b["message"] == "clicked pay"), "{name}: {crumbs}");
    }

    fn attachment(&self, name: &str, file: &str, size: usize) {
        let list = self.p.api(&format!("/api/0/projects/acme/web/events/{}/attachments/", self.ids[name]));
        assert!(list.as_array().unwrap().iter().any(|a| a["name"] == file && a["size"] == size), "attachments: {list}");
    }

    fn transaction(&self, name: &str) {
        self.p.wait_for(&format!("transaction {name}"), || self.p.api("/api/0/projects/acme/web/transactions/").as_array().unwrap().iter().any(|t| t["transaction"] == name));
    }

    fn check_in(&self, slug: &str) {
        self.p.wait_for(&format!("check-in {slug}"), || {
            self.p.api(&format!("/api/0/projects/acme/web/monitors/{slug}/checkins/")).as_array().unwrap().iter().any(|c| c["status"] == "ok")
        });
    }

    fn session(&self) {
        self.p.wait_for("a session", || {
            self.p.api("/api/0/projects/acme/web/sessions/").as_array().unwrap().iter().any(|s| s["release"] == "app@1.0.0" && s["environment"] == "e2e" && s["total"].as_i64() > Some(0))
        });
    }

    /// The grouping every script exercises.
    fn grouping(&self) {
        assert_eq!(self.group("same_a"), self.group("same_b"), "same error, same place, different message: one issue");
        if self.ids.contains_key("other_place") {
            assert_ne!(self.group("same_a"), self.group("other_place"), "same type from another function: another issue");
        }
        if self.ids.contains_key("fingerprint_salted") {
            assert_ne!(self.group("fingerprint_salted"), self.group("same_a"), "{{ default }} + salt splits");
            assert_eq!(self.group("fingerprint_fixed_a"), self.group("fingerprint_fixed_b"), "a fixed fingerprint merges");
        }
        let issue = self.p.api(&format!("/api/0/issues/{}/", self.group("same_a")));
        assert_eq!(issue["count"], "2", "{issue}");
    }
}

fn python_sdk(venv: &str) -> (Picket, HashMap<String, String>) {
    let deps = deps_dir();
    let p = Picket::start(venv);
    let ids = run(deps.join(venv).join("bin/python"), python_script("python_sdk.py"), &p);
    (p, ids)
}

/// How many envelopes the SDK compressed with brotli (the script counts them).
fn br_bodies(ids: &HashMap<String, String>) -> u32 {
    ids.get("_br_bodies").and_then(|n| n.parse().ok()).expect("the script reports _br_bodies")
}

fn check_python(p: &Picket, ids: HashMap<String, String>) {
    let c = Checked::new(p, ids);
    c.grouping();
    let chain = c.exceptions("chained");
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!((chain[0]["type"].as_str(), chain[1]["type"].as_str()), (Some("KeyError"), Some("RuntimeError")));
    assert_eq!(c.event("chained")["title"], "RuntimeError: config unavailable");
    assert_eq!(c.group("log_a"), c.group("log_b"), "logger.error(\"User %s failed to pay\", name): one issue");
    assert_eq!(c.issue("log_a")["count"], "2");
    assert_eq!(c.event("log_a")["message"], "User alice failed to pay");
    c.scope_data("same_a", "py@example.com", true);
    assert_eq!(c.event("same_a")["user"]["id"], "42", "a numeric user id becomes a string");
    c.attachment("attachment", "python.txt", "hello from python".len());
    c.transaction("nightly-report");
    c.check_in("python-nightly");
    c.session();
}

#[test]
fn python_sentry_sdk() {
    let (p, ids) = python_sdk("py-sdk");
    assert_eq!(br_bodies(&ids), 0, "no brotli in this venv: the SDK sends gzip");
    check_python(&p, ids);
}

#[test]
fn python_sentry_sdk_brotli() {
    // With brotli importable the SDK compresses with br instead of gzip.
    let deps = deps_dir();
    let probe = Command::new(deps.join("py-sdk-brotli/bin/python")).args(["-c", "import brotli"]).status().unwrap();
    assert!(probe.success(), "brotli is not importable in the py-sdk-brotli venv");
    let (p, ids) = python_sdk("py-sdk-brotli");
    // Every event, the transaction, session and check-in went out as br bodies.
    assert!(br_bodies(&ids) >= 10, "the SDK did not send br: {ids:?}");
    check_python(&p, ids);
}

#[test]
fn raven_6_10() {
    let deps = deps_dir();
    let p = Picket::start("raven");
    let ids = run(deps.join("py-raven/bin/python"), python_script("raven_client.py"), &p);
    let c = Checked::new(&p, ids);
    c.grouping();
    assert_eq!(c.group("message_a"), c.group("message_b"), "captureMessage with params: one issue per template");
    // raven sends its params repr()-quoted, and Sentry formats them so too.
    assert_eq!(c.event("message_a")["message"], "User 'alice' failed to pay");
    assert_eq!(c.event("logging")["message"], "Disk /var is full");
    assert_eq!(c.issue("message_a")["count"], "2");
    let e = c.event("same_a");
    assert_eq!(e["user"]["email"], "raven@example.com");
    assert_eq!(e["user"]["id"], "7");
    assert!(e["tags"].as_array().unwrap().iter().any(|t| t["key"] == "tenant" && t["value"] == "acme"));
    assert_eq!(e["context"]["order"], "1234", "raven's extra (raven sends its values as strings)");
    assert_eq!(e["level"], "error", "raven sends level 40");
    assert_eq!(e["sdk"]["name"], "raven-python");
    let crumbs = e["entries"].as_array().unwrap().iter().find(|x| x["type"] == "breadcrumbs").cloned().expect("breadcrumbs");
    assert!(crumbs["data"]["values"].as_array().unwrap().iter().any(|b| b["message"] == "clicked pay"));
}

#[test]
fn node_sentry_11() {
    let deps = deps_dir();
    // ES modules resolve packages next to the script: run a copy inside the installed project.
    let script = deps.join("node/send.mjs");
    std::fs::copy(repo_root().join("tests/sdk/node/send.mjs"), &script).unwrap();
    let p = Picket::start("node");
    let ids = run(PathBuf::from("node"), script, &p);
    let c = Checked::new(&p, ids);
    c.grouping();
    let chain = c.exceptions("chained");
    assert_eq!(chain.len(), 2, "error with a cause: {chain:?}");
    assert_eq!(chain[0]["type"], "RangeError");
    assert_eq!(chain[1]["type"], "Error");
    assert_eq!(c.group("message_a"), c.group("message_b"), "messages from one place differing in a number: one issue");
    assert_eq!(c.event("message_a")["title"], "User 17 failed to log in");
    // Sentry.parameterize sends only logentry {message: template, params}: the
    // server formats it, and the template groups.
    assert_eq!(c.group("param_a"), c.group("param_b"), "parameterize`User ${{user}} failed to pay`: one issue");
    assert_ne!(c.group("param_a"), c.group("message_a"));
    assert_eq!(c.event("param_a")["message"], "User alice failed to pay");
    assert_eq!(c.event("param_b")["title"], "User bob failed to pay");
    assert_eq!(c.issue("param_a")["count"], "2");
    c.scope_data("same_a", "node@example.com", true);
    c.attachment("attachment", "node.txt", "hello from node".len());
    c.transaction("checkout");
    c.check_in("node-nightly");
    c.session();
}
