//! The `/api/0/` API: search, sort, status changes and regressions,
//! deletion, permissions, pagination, tags, keys and event entries.

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::harness::Picket;

fn send(p: &Picket, event: Value) -> String {
    let r = Client::new().post(format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key)).json(&event).send().unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().unwrap()["id"].as_str().unwrap().to_string()
}

fn python_error(ty: &str, value: &str, function: &str) -> Value {
    json!({
        "platform": "python",
        "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": [
            {"module": "app.views", "function": function, "lineno": 10, "in_app": true, "context_line": "do_it()"}
        ]}}]},
    })
}

fn titles(issues: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = issues.iter().map(|i| i["title"].as_str().unwrap().to_string()).collect();
    t.sort();
    t
}

#[test]
fn search_and_sort() {
    let p = Picket::start("api-search");
    let mut a = python_error("ValueError", "bad value", "index");
    a["release"] = json!("1.0");
    a["environment"] = json!("production");
    a["tags"] = json!({"customer": "acme-corp"});
    send(&p, a.clone());
    send(&p, a);
    let mut b = python_error("KeyError", "'missing'", "detail");
    b["level"] = json!("warning");
    b["release"] = json!("2.0");
    b["environment"] = json!("staging");
    send(&p, b);
    send(&p, json!({"message": "disk almost full", "level": "info", "logger": "ops"}));
    p.wait_for_events(4);

    assert_eq!(p.issues(None).len(), 3);
    assert_eq!(titles(&p.issues(Some("level:warning"))), ["KeyError: 'missing'"]);
    assert_eq!(titles(&p.issues(Some("release:1.0"))), ["ValueError: bad value"]);
    assert_eq!(titles(&p.issues(Some("environment:staging"))), ["KeyError: 'missing'"]);
    assert_eq!(titles(&p.issues(Some("customer:acme-corp"))), ["ValueError: bad value"]);
    assert_eq!(titles(&p.issues(Some("!customer:acme-corp"))).len(), 2);
    assert_eq!(titles(&p.issues(Some("logger:ops"))), ["disk almost full"]);
    assert_eq!(titles(&p.issues(Some("disk"))), ["disk almost full"]);
    assert_eq!(titles(&p.issues(Some("\"bad value\" is:unresolved"))), ["ValueError: bad value"]);
    assert!(p.issues(Some("nothing-matches-this")).is_empty());
    // The default query is is:unresolved; an unknown status is a clear 400.
    assert_eq!(p.api("/api/0/projects/acme/web/issues/").as_array().unwrap().len(), 3);
    let (s, body, _) = p.api_request("GET", "/api/0/projects/acme/web/issues/?query=is:bogus", None);
    assert_eq!(s, 400);
    assert!(body["detail"].as_str().unwrap().contains("is:unresolved"));
    // Sorting.
    let freq = p.api("/api/0/projects/acme/web/issues/?query=&sort=freq");
    assert_eq!(freq[0]["title"], "ValueError: bad value");
    assert_eq!(freq[0]["count"], "2");
    let new = p.api("/api/0/projects/acme/web/issues/?query=&sort=new");
    assert_eq!(new[0]["title"], "disk almost full");
    let (s, _, _) = p.api_request("GET", "/api/0/projects/acme/web/issues/?sort=sideways", None);
    assert_eq!(s, 400);
}

#[test]
fn resolve_regress_ignore_delete() {
    let p = Picket::start("api-status");
    send(&p, python_error("ValueError", "x", "index"));
    p.wait_for_events(1);
    let id = p.issues(None)[0]["id"].as_str().unwrap().to_string();
    let (s, body, _) = p.api_request("PUT", &format!("/api/0/issues/{id}/"), Some(json!({"status": "resolved"})));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "resolved");
    assert!(p.issues(Some("is:unresolved")).is_empty());
    assert_eq!(p.issues(Some("is:resolved")).len(), 1);
    // A new event reopens it as a regression.
    send(&p, python_error("ValueError", "y", "index"));
    p.wait_for_events(2);
    let issue = p.api(&format!("/api/0/issues/{id}/"));
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["substatus"], "regressed");
    assert_eq!(issue["isRegression"], true);
    assert_eq!(issue["count"], "2");
    // Ignore, then bad input.
    let (s, body, _) = p.api_request("PUT", &format!("/api/0/issues/{id}/"), Some(json!({"status": "ignored"})));
    assert_eq!((s, body["status"].as_str()), (200, Some("ignored")));
    let (s, body, _) = p.api_request("PUT", &format!("/api/0/issues/{id}/"), Some(json!({"status": "sideways"})));
    assert_eq!(s, 400);
    assert!(body["detail"].as_str().unwrap().contains("unresolved, resolved or ignored"));
    // Delete: the issue is gone at once, its events soon after (in the background).
    let (s, _, _) = p.api_request("DELETE", &format!("/api/0/issues/{id}/"), None);
    assert_eq!(s, 202);
    let (s, _, _) = p.api_request("GET", &format!("/api/0/issues/{id}/"), None);
    assert_eq!(s, 404);
    assert!(p.issues(None).is_empty());
    let (s, _, _) = p.api_request("DELETE", &format!("/api/0/issues/{id}/"), None);
    assert_eq!(s, 404, "being deleted already");
    p.wait_for("the deleted issue's events to go", || p.event_count() == 0);
    // The same error again is a new issue, not the deleted one back.
    send(&p, python_error("ValueError", "z", "index"));
    p.wait_for_events(1);
    let issues = p.issues(None);
    assert_eq!(issues.len(), 1);
    assert_ne!(issues[0]["id"].as_str(), Some(id.as_str()));
    assert!(p.log().contains("deleted the issue: 2 events, 1 issue"), "{}", p.log());
}

#[test]
fn permissions_are_scoped_by_organization_and_role() {
    let p = Picket::start("api-perms");
    send(&p, json!({"message": "secret stuff"}));
    p.wait_for_events(1);
    let issue_id = p.issues(None)[0]["id"].as_str().unwrap().to_string();
    let get = |token: &str, path: &str| Client::new().get(format!("{}{path}", p.base_url())).bearer_auth(token).send().unwrap();
    // No token, a wrong token.
    assert_eq!(Client::new().get(format!("{}/api/0/projects/", p.base_url())).send().unwrap().status(), 401);
    assert_eq!(get("pkt_wrong", "/api/0/projects/").status(), 401);
    // A user outside the organization sees nothing, and cannot probe what exists.
    p.cli_ok(&["createuser", "--email", "outsider@example.com", "--password", "another long one"]);
    let outsider = crate::harness::last_line(&p.cli_ok(&["token", "create", "--email", "outsider@example.com"]));
    assert_eq!(get(&outsider, "/api/0/projects/").json::<Value>().unwrap(), json!([]));
    assert_eq!(get(&outsider, "/api/0/projects/acme/web/issues/").status(), 404);
    assert_eq!(get(&outsider, &format!("/api/0/issues/{issue_id}/")).status(), 404);
    // A member can read and resolve, but not delete.
    p.cli_ok(&["org", "add-member", "acme", "--email", "outsider@example.com", "--role", "member"]);
    assert_eq!(get(&outsider, "/api/0/projects/").json::<Value>().unwrap().as_array().unwrap().len(), 1);
    let put = Client::new().put(format!("{}/api/0/issues/{issue_id}/", p.base_url())).bearer_auth(&outsider).json(&json!({"status": "resolved"})).send().unwrap();
    assert_eq!(put.status(), 200);
    let del = Client::new().delete(format!("{}/api/0/issues/{issue_id}/", p.base_url())).bearer_auth(&outsider).send().unwrap();
    assert_eq!(del.status(), 403);
}

#[test]
fn events_entries_tags_keys_and_pagination() {
    let p = Picket::start("api-events");
    let mut ev = python_error("ValueError", "outer", "index");
    ev["exception"]["values"].as_array_mut().unwrap().insert(0, json!({"type": "KeyError", "value": "'inner'"}));
    ev["breadcrumbs"] = json!([{"category": "query", "message": "SELECT 1"}]);
    ev["request"] = json!({"url": "https://example.com/a?b=1", "method": "GET", "headers": [["User-Agent", "Firefox"]]});
    ev["user"] = json!({"id": 7, "email": "u@example.com"});
    ev["contexts"] = json!({"os": {"name": "Linux", "version": "6.1"}});
    ev["threads"] = json!({"values": [{"id": 1, "name": "main", "crashed": true}]});
    let id = send(&p, ev);
    for i in 0..4 {
        send(&p, json!({"message": format!("page {i}"), "logger": "pager", "fingerprint": ["pager"]}));
    }
    p.wait_for_events(5);
    let e = p.event(&id);
    let entry = |t: &str| e["entries"].as_array().unwrap().iter().find(|x| x["type"] == t).cloned().unwrap_or_else(|| panic!("no {t} entry in {e}"));
    assert_eq!(entry("exception")["data"]["values"].as_array().unwrap().len(), 2);
    assert_eq!(entry("breadcrumbs")["data"]["values"][0]["message"], "SELECT 1");
    assert_eq!(entry("request")["data"]["method"], "GET");
    assert_eq!(entry("threads")["data"]["values"][0]["name"], "main");
    assert_eq!(e["user"]["id"], "7");
    assert_eq!(e["contexts"]["os"]["name"], "Linux");
    assert!(e["tags"].as_array().unwrap().iter().any(|t| t["key"] == "os" && t["value"] == "Linux 6.1"));
    assert!(e["tags"].as_array().unwrap().iter().any(|t| t["key"] == "url" && t["value"] == "https://example.com/a"));
    let issue_id = e["groupID"].as_str().unwrap();
    let latest = p.api(&format!("/api/0/issues/{issue_id}/events/latest/"));
    assert_eq!(latest["eventID"], id.as_str());
    let values = p.api(&format!("/api/0/issues/{issue_id}/tags/user/values/"));
    assert_eq!(values[0]["value"], "id:7");
    assert_eq!(values[0]["count"], 1);
    // Keys carry the DSN.
    let keys = p.api("/api/0/projects/acme/web/keys/");
    assert_eq!(keys[0]["dsn"]["public"], p.dsn.as_str());
    // Pagination: 4 events in one issue, 3 per page.
    let pager = p.issues(Some("logger:pager"))[0]["id"].as_str().unwrap().to_string();
    let (s, page1, headers) = p.api_request("GET", &format!("/api/0/issues/{pager}/events/?limit=3"), None);
    assert_eq!(s, 200);
    assert_eq!(page1.as_array().unwrap().len(), 3);
    let link = headers["link"].to_str().unwrap();
    assert!(link.contains("rel=\"next\"; results=\"true\"; cursor=\"0:3:0\""), "{link}");
    let page2 = p.api(&format!("/api/0/issues/{pager}/events/?limit=3&cursor=0:3:0"));
    assert_eq!(page2.as_array().unwrap().len(), 1);
    // A bad parameter is a JSON error that names it, not axum's plain text.
    for path in [format!("/api/0/issues/{pager}/events/?limit=-3"), "/api/0/projects/acme/web/issues/?limit=many".to_string()] {
        let (s, body, _) = p.api_request("GET", &path, None);
        assert_eq!(s, 400, "{path}");
        let detail = body["detail"].as_str().unwrap_or_else(|| panic!("{path}: {body}"));
        assert!(detail.starts_with("invalid query string: limit"), "{path}: {detail}");
    }
}

#[test]
fn deleting_a_project_hides_it_at_once_and_deletes_its_data_in_the_background() {
    let p = Picket::start("api-delete-project");
    send(&p, json!({"message": "soon gone"}));
    p.wait_for_events(1);
    let delete = |token: &str| Client::new().delete(format!("{}/api/0/projects/acme/web/", p.base_url())).bearer_auth(token).send().unwrap().status().as_u16();
    p.cli_ok(&["createuser", "--email", "member@example.com", "--password", "another long one"]);
    p.cli_ok(&["org", "add-member", "acme", "--email", "member@example.com", "--role", "member"]);
    let member = crate::harness::last_line(&p.cli_ok(&["token", "create", "--email", "member@example.com"]));
    assert_eq!(delete(&member), 403, "a member may not delete a project");
    assert_eq!(p.event_count(), 1);
    assert_eq!(delete(&p.token), 204);
    let late = Client::new().post(format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key)).body("{\"message\":\"late\"}").send().unwrap();
    assert_eq!(late.status(), 403, "its keys are refused at once by the server that deleted it");
    assert_eq!(p.api_request("GET", "/api/0/projects/acme/web/", None).0, 404);
    assert_eq!(p.api("/api/0/projects/"), json!([]));
    assert_eq!(delete(&p.token), 404, "already gone");
    p.wait_for("the background deletion", || p.log().contains("deleted the project: 1 event, 1 issue"));
    // The slug is free again.
    assert!(p.cli_ok(&["project", "create", "acme/web"]).contains("http"));
}
