//! The Acme plugins in a real `picket-acme` server, fed by the real Python
//! `sentry-sdk`: every extension point takes effect, seen through the API,
//! and a plugin that fails everywhere breaks nothing.

#[path = "../../../../crates/picket/tests/e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::HashMap;

use harness::{last_line, run_python_sdk, Picket};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn configure_in(p: &Picket, project: &str, slug: &str, body: Value) -> Value {
    let (status, v, _) = p.api_request("PUT", &format!("/api/0/projects/{project}/plugins/{slug}/"), Some(body));
    assert_eq!(status, 200, "configuring {slug}: {v}");
    v
}

fn configure(p: &Picket, slug: &str, body: Value) -> Value {
    let (status, v, _) = p.api_request("PUT", &format!("/api/0/projects/acme/web/plugins/{slug}/"), Some(body));
    assert_eq!(status, 200, "configuring {slug}: {v}");
    v
}

/// The journal path is a site option (superusers): a project admin cannot choose files.
fn set_journal(p: &Picket, path: &std::path::Path) {
    let (status, v, _) = p.api_request("PUT", "/api/0/plugins/acme/site-options/", Some(json!({"journal": path.display().to_string()})));
    assert_eq!(status, 200, "{v}");
}

fn send_jobs(p: &Picket) -> HashMap<String, String> {
    let ids = run_python_sdk("acme_jobs.py", p);
    p.wait_for("the job events", || ids.values().all(|id| p.api_request("GET", &format!("/api/0/projects/acme/web/events/{id}/"), None).0 == 200));
    ids
}

fn group_of(p: &Picket, id: &str) -> String {
    p.event(id)["groupID"].as_str().unwrap().to_string()
}

fn issue_ids(p: &Picket, query: &str) -> Vec<String> {
    // Every status, unless the test asks otherwise.
    let q = if query.starts_with("query=") { query.to_string() } else { format!("query=&{query}") };
    let v = p.api(&format!("/api/0/projects/acme/web/issues/?{q}"));
    let mut ids: Vec<String> = v.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn every_extension_point_takes_effect() {
    let p = Picket::start("acme");
    let journal = p.dir.join("journal.jsonl");
    set_journal(&p, &journal);
    let cfg = configure(&p, "acme", json!({"options": {"team": "<b>payments</b>", "redact_extra": "password"}}));
    assert_eq!(cfg["enabled"], true, "on by default: {cfg}");
    let ids = send_jobs(&p);

    // The interface groups by queue and job name, outranking the exceptions.
    let job_issue = group_of(&p, &ids["job_value_error"]);
    assert_eq!(job_issue, group_of(&p, &ids["job_key_error"]));
    assert_ne!(job_issue, group_of(&p, &ids["plain"]));
    let ev = p.event(&ids["job_value_error"]);
    // A plugin's interface is an entry of the event, like the built-in ones.
    let job = ev["entries"].as_array().unwrap().iter().find(|e| e["type"] == "job").unwrap_or_else(|| panic!("a job entry: {ev}")).clone();
    assert_eq!(job["data"]["queue"], "emails", "normalized by the interface: {ev}");
    assert!(ev["data"].get("job").is_none());
    // A job the interface refuses is dropped with a note; the event is kept.
    let bad = p.event(&ids["bad_job"]);
    assert!(bad["data"].get("job").is_none() && !bad["entries"].as_array().unwrap().iter().any(|e| e["type"] == "job"), "{bad}");
    assert!(bad["errors"].as_array().unwrap().iter().any(|e| e["name"] == "job" && e["reason"].as_str().unwrap().contains("job.queue")), "{bad}");
    // It renders itself, escaped, and is searchable.
    let rendered = p.api(&format!("/api/0/projects/acme/web/events/{}/rendered/", ids["billing"]));
    let job_html = rendered["interfaces"].as_array().unwrap().iter().find(|i| i["key"] == "job").expect("job rendered")["html"].as_str().unwrap().to_string();
    assert!(job_html.contains("&lt;script&gt;alert(") && !job_html.contains("<script>"), "{job_html}");
    assert_eq!(issue_ids(&p, "query=SendWelcome"), vec![job_issue.clone()]);

    // Tags from get_tags, stored and counted like the SDK's.
    let tags = p.api(&format!("/api/0/issues/{job_issue}/tags/"));
    let keys: Vec<&str> = tags.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert!(keys.contains(&"acme_queue") && keys.contains(&"acme_team"), "{keys:?}");
    // The preprocessor dropped the configured extra key before storage.
    let billing = p.event(&ids["billing"]);
    assert!(billing["context"].get("password").is_none(), "{billing}");
    assert_eq!(billing["context"]["order"], 42);

    // The view: a tab with its count, and the stream filtered by it.
    let views = p.api("/api/0/projects/acme/web/views/");
    let jobs = views.as_array().unwrap().iter().find(|v| v["slug"] == "jobs").expect("jobs view");
    assert_eq!(jobs["count"], 2, "{views}");
    let billing_issue = group_of(&p, &ids["billing"]);
    let mut expected = vec![job_issue.clone(), billing_issue.clone()];
    expected.sort();
    assert_eq!(issue_ids(&p, "view=jobs"), expected);
    assert_eq!(p.api_request("GET", "/api/0/projects/acme/web/issues/?view=nope", None).0, 400);

    // The filter: choices with counts, an escaped widget, and the stream filtered by it.
    let filters = p.api("/api/0/projects/acme/web/filters/");
    let queue = filters.as_array().unwrap().iter().find(|f| f["param"] == "acme_queue").expect("queue filter");
    let values: Vec<&str> = queue["choices"].as_array().unwrap().iter().map(|c| c["value"].as_str().unwrap()).collect();
    assert_eq!(values.len(), 2, "{queue}");
    assert!(values.contains(&"emails") && values.contains(&"billing"));
    assert!(queue["widgetHtml"].as_str().unwrap().contains("acme_queue=billing"));
    assert!(filters.as_array().unwrap().iter().any(|f| f["param"] == "level"), "built-in filters too");
    assert_eq!(issue_ids(&p, "acme_queue=billing"), vec![billing_issue.clone()]);

    // The issue page's slots: tag, widget (escaped option), action and panel.
    let slots = p.api(&format!("/api/0/issues/{job_issue}/plugins/"));
    let widget = slots["widgets"].as_array().unwrap().iter().find(|w| w["plugin"] == "acme").expect("widget")["html"].as_str().unwrap().to_string();
    assert!(widget.contains("Owned by &lt;b&gt;payments&lt;&#x2F;b&gt;"), "{widget}");
    assert!(slots["tags"].as_array().unwrap().iter().any(|t| t["html"].as_str().unwrap().starts_with("team:&lt;b&gt;")), "{slots}");
    // The stream: unresolved issues by default (the status filter's default), each with the plugin's tag.
    let stream = p.api("/api/0/projects/acme/web/issues/");
    assert_eq!(stream.as_array().unwrap().len(), 4, "{stream}");
    assert!(stream.as_array().unwrap().iter().all(|i| i["pluginTags"].as_array().unwrap().iter().any(|t| t["plugin"] == "acme")), "{stream}");
    let action = slots["actions"].as_array().unwrap().iter().find(|a| a["plugin"] == "acme").expect("action");
    assert_eq!(action["label"], "Retry job");
    let panel = slots["panels"].as_array().unwrap().iter().find(|a| a["plugin"] == "acme").expect("panel");
    let page_url = format!("{}{}", p.base_url(), panel["url"].as_str().unwrap());

    // The plugin's own page, and its POST storing meta about the issue.
    let page = Client::new().get(&page_url).bearer_auth(&p.token).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let body = page.text().unwrap();
    assert!(body.contains("Job SendWelcome") && !body.contains("Retry requested"), "{body}");
    let no_redirect = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = no_redirect.post(&page_url).bearer_auth(&p.token).header("Content-Type", "application/x-www-form-urlencoded").body("go=1").send().unwrap();
    assert_eq!(post.status(), 303);
    assert!(Client::new().get(&page_url).bearer_auth(&p.token).send().unwrap().text().unwrap().contains("Retry requested"));

    // post_process ran after the commit for every event, with is_new right.
    p.wait_for("the journal", || std::fs::read_to_string(&journal).map(|s| s.lines().count() >= ids.len()).unwrap_or(false));
    let lines: Vec<Value> = std::fs::read_to_string(&journal).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), ids.len());
    let line = |name: &str| lines.iter().find(|l| l["event_id"] == ids[name].as_str()).unwrap_or_else(|| panic!("no journal line for {name}")).clone();
    assert_eq!(line("job_value_error")["is_new"], true);
    assert_eq!(line("job_key_error")["is_new"], false);
    assert_eq!(line("billing")["queue"], "billing");

    // Permissions: the plugin's veto denies a member the core would allow;
    // for others its `None` leaves Picket's rule in charge.
    for (email, expected) in [("temp@contractor.example", 403), ("dev@example.com", 200)] {
        p.cli_ok(&["createuser", "--email", email, "--password", "a long enough password"]);
        p.cli_ok(&["org", "add-member", "acme", "--email", email, "--role", "member"]);
        let token = last_line(&p.cli_ok(&["token", "create", "--email", email]));
        let put = Client::new().put(format!("{}/api/0/issues/{job_issue}/", p.base_url())).bearer_auth(&token).json(&json!({"status": "resolved"})).send().unwrap();
        assert_eq!(put.status().as_u16(), expected, "{email}");
        if expected == 403 {
            // No actions for someone who may not act.
            let slots: Value = Client::new().get(format!("{}/api/0/issues/{job_issue}/plugins/", p.base_url())).bearer_auth(&token).send().unwrap().json().unwrap();
            assert_eq!(slots["actions"], json!([]));
        }
    }
    // Even as an admin, the contractor cannot switch the plugin (and its veto) off.
    p.cli_ok(&["org", "add-member", "acme", "--email", "temp@contractor.example", "--role", "admin"]);
    let contractor = last_line(&p.cli_ok(&["token", "create", "--email", "temp@contractor.example"]));
    let r = Client::new().put(format!("{}/api/0/projects/acme/web/plugins/acme/", p.base_url())).bearer_auth(&contractor).json(&json!({"enabled": false})).send().unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().unwrap().contains("vetoed configure_project_plugin"));

    // is_rate_limited: the project refuses new events with 429.
    configure(&p, "acme", json!({"options": {"paused": true}}));
    let r = Client::new().post(format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key)).json(&json!({"message": "while paused"})).send().unwrap();
    assert_eq!(r.status(), 429);

    // The CLI lists the plugin with its metadata.
    let list = p.cli_ok(&["plugins", "list"]);
    let row = list.lines().find(|l| l.starts_with("acme ")).unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains("Acme Jobs") && row.contains("0.1.0") && row.contains("Acme Corp") && row.contains("picket_acme"), "{row}");
}

#[test]
fn options_are_validated_and_secrets_are_write_only() {
    let p = Picket::start("acme-options");
    let (status, body, _) = p.api_request("PUT", "/api/0/projects/acme/web/plugins/acme/", Some(json!({"options": {"paused": "maybe", "tem": "x"}})));
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("paused: Refuse new events must be true or false") && detail.contains("unknown option 'tem'"), "{detail}");
    // The webhooks plugin has a secret: stored, never sent back.
    let v = configure(&p, "webhooks", json!({"enabled": true, "options": {"urls": "https://hooks.example/a", "secret": "s3cret-value"}}));
    let secret = v["config"].as_array().unwrap().iter().find(|f| f["key"] == "secret").unwrap().clone();
    assert_eq!(secret["isSet"], true);
    assert!(!v.to_string().contains("s3cret-value"), "{v}");
    // Sending the form back with the secret left empty (or blank) keeps it; null removes it.
    let v = configure(&p, "webhooks", json!({"options": {"secret": "  ", "when": "every_event"}}));
    assert_eq!(v["config"].as_array().unwrap().iter().find(|f| f["key"] == "secret").unwrap()["isSet"], true);
    let v = configure(&p, "webhooks", json!({"options": {"secret": null}}));
    assert_eq!(v["config"].as_array().unwrap().iter().find(|f| f["key"] == "secret").unwrap()["isSet"], false);
    // A plugin is not enabled without its required options.
    let (status, body, _) = p.api_request("PUT", "/api/0/projects/acme/web/plugins/slack/", Some(json!({"enabled": true, "options": {"when": "new"}})));
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("needs Webhook URL before it can be enabled"), "{body}");
    // A member may not configure plugins.
    p.cli_ok(&["createuser", "--email", "m@example.com", "--password", "a long enough password"]);
    p.cli_ok(&["org", "add-member", "acme", "--email", "m@example.com", "--role", "member"]);
    let token = last_line(&p.cli_ok(&["token", "create", "--email", "m@example.com"]));
    let r = Client::new().put(format!("{}/api/0/projects/acme/web/plugins/acme/", p.base_url())).bearer_auth(&token).json(&json!({"enabled": false})).send().unwrap();
    assert_eq!(r.status(), 403);
    // The plugin list shows a member only the projects they can see, and no error texts.
    p.cli_ok(&["org", "create", "secretorg"]);
    p.cli_ok(&["project", "create", "secretorg/hidden"]);
    configure_in(&p, "secretorg/hidden", "slack", json!({"enabled": true, "options": {"webhook_url": "https://hooks.example/x"}}));
    let list: Value = Client::new().get(format!("{}/api/0/plugins/", p.base_url())).bearer_auth(&token).send().unwrap().json().unwrap();
    let slack = list.as_array().unwrap().iter().find(|x| x["slug"] == "slack").unwrap();
    assert_eq!(slack["projects"], json!([]), "{slack}");
    assert!(slack["health"].get("lastError").is_none(), "{slack}");
    let admin_view = p.api("/api/0/plugins/");
    let slack = admin_view.as_array().unwrap().iter().find(|x| x["slug"] == "slack").unwrap();
    assert_eq!(slack["projects"], json!([{"project": "secretorg/hidden", "enabled": true}]));
    // Unknown plugin: a 404 that says where to look.
    let (status, body, _) = p.api_request("GET", "/api/0/projects/acme/web/plugins/nope/", None);
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("picket plugins list"));
}

#[test]
fn a_plugin_failing_in_every_hook_breaks_nothing() {
    let p = Picket::start("acme-chaos");
    configure(&p, "chaos", json!({"enabled": true}));
    let ids = send_jobs(&p);
    // Ingest and grouping went on: every event stored, the job still groups.
    assert_eq!(group_of(&p, &ids["job_value_error"]), group_of(&p, &ids["job_key_error"]));
    let issue = group_of(&p, &ids["plain"]);
    // Pages work, with the other plugins' output.
    let slots = p.api(&format!("/api/0/issues/{issue}/plugins/"));
    assert!(slots["widgets"].as_array().unwrap().iter().any(|w| w["plugin"] == "acme"), "{slots}");
    assert!(!slots["widgets"].as_array().unwrap().iter().any(|w| w["plugin"] == "chaos"));
    assert_eq!(p.api_request("GET", "/api/0/projects/acme/web/filters/", None).0, 200);
    assert_eq!(p.api_request("PUT", &format!("/api/0/issues/{issue}/"), Some(json!({"status": "resolved"}))).0, 200, "a failing has_perm vetoes nothing");
    // Its own page fails alone, with a clear answer.
    let (status, body, _) = p.api_request("GET", &format!("/api/0/issues/{issue}/plugins/chaos/"), None);
    assert_eq!(status, 502);
    assert!(body["detail"].as_str().unwrap().contains("chaos in view"), "{body}");
    // The failures are visible: in the log, the API and the CLI.
    p.wait_for("post_process to fail", || p.log().contains("hook=\"post_process\"") || p.log().contains("hook=post_process"));
    assert!(p.log().contains("plugin hook failed"), "{}", p.log());
    let plugins = p.api("/api/0/plugins/");
    let chaos = plugins.as_array().unwrap().iter().find(|x| x["slug"] == "chaos").unwrap();
    assert!(chaos["health"]["failures"].as_i64().unwrap() > 0, "{chaos}");
    assert!(chaos["health"]["lastError"].as_str().unwrap().starts_with("chaos in") || chaos["health"]["lastError"].as_str().unwrap().starts_with("panicked: chaos in"));
    let list = p.cli_ok(&["plugins", "list"]);
    let row = list.lines().find(|l| l.starts_with("chaos ")).unwrap();
    assert!(row.contains("acme/web:on") && row.contains("chaos in"), "{row}");
}

#[test]
fn post_processing_survives_a_crash() {
    let mut p = Picket::start("acme-crash");
    let journal = p.dir.join("journal.jsonl");
    set_journal(&p, &journal);
    configure(&p, "acme", json!({"options": {"journal_delay_ms": 1500}}));
    let send = |p: &Picket, msg: &str| {
        let r = Client::new().post(format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key)).json(&json!({"message": msg})).send().unwrap();
        assert_eq!(r.status(), 200);
    };
    send(&p, "first");
    send(&p, "second");
    p.wait_for_events(2);
    // Stored and acknowledged, but post_process is still sleeping: kill the server.
    p.kill();
    assert!(std::fs::read_to_string(&journal).unwrap_or_default().lines().count() < 2);
    p.spawn();
    p.wait_for("both journal lines after the restart", || std::fs::read_to_string(&journal).map(|s| s.lines().count() >= 2).unwrap_or(false));
    assert!(p.log().contains("post-processing what the previous run left unfinished"), "{}", p.log());
}
