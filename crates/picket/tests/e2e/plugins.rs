//! The built-in plugins against real peers on loopback: an HTTP receiver
//! that checks webhook signatures (and fails on purpose to prove retries), a
//! real SMTP server (aiosmtpd) for mail, and a tracker endpoint.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::harness::{deps_dir, Picket};

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP/1.1 server on loopback that records requests and answers from a
/// script (then 200 `{}`). Stops with the test process.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: Vec<(u16, &'static str)>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.trim_end().split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                g.lock().unwrap().push(Received { path, headers, body });
                let (status, answer) = script.lock().unwrap().pop_front().unwrap_or((200, "{}"));
                let mut stream = reader.into_inner();
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
            }
        });
        Receiver { port, got }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn send(p: &Picket, event: Value) {
    let r = Client::new().post(format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key)).json(&event).send().unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

fn error_event(ty: &str, value: &str) -> Value {
    json!({
        "platform": "python",
        "level": "error",
        "logger": "app.jobs",
        "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": [
            {"filename": "app/jobs.py", "function": "run", "lineno": 12, "context_line": "do_it()", "in_app": true}
        ]}}]},
    })
}

fn configure(p: &Picket, slug: &str, body: Value) {
    let (status, v, _) = p.api_request("PUT", &format!("/api/0/projects/acme/web/plugins/{slug}/"), Some(body));
    assert_eq!(status, 200, "configuring {slug}: {v}");
}

fn wait_until(what: &str, p: &Picket, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}; log:\n{}", p.log());
}

#[test]
fn webhooks_are_signed_refused_for_private_addresses_and_retried() {
    let receiver = Receiver::start(vec![(503, "{\"busy\": true}")]);
    let p = Picket::start("plugin-webhooks");
    configure(&p, "webhooks", json!({"enabled": true, "options": {"urls": receiver.url("/hook"), "secret": "s3cret", "when": "new"}}));
    // Loopback is not a public address: refused, permanently, and said so.
    send(&p, error_event("FirstError", "before the site option"));
    wait_until("the refusal to be recorded", &p, 20, || p.cli_ok(&["plugins", "list"]).lines().any(|l| l.starts_with("webhooks ") && l.contains("not a public address")));
    assert!(receiver.received().is_empty());
    // A superuser allows private addresses for this plugin (through the API: at once;
    // `picket plugins set` from another process takes effect within the cache's 2 s).
    let (status, v, _) = p.api_request("PUT", "/api/0/plugins/webhooks/site-options/", Some(json!({"allow_private_networks": true})));
    assert_eq!(status, 200, "{v}");
    let started = Instant::now();
    send(&p, error_event("SecondError", "after the site option"));
    // The first try gets a 503; the retry (2 s later) is delivered.
    wait_until("the retried delivery", &p, 30, || receiver.received().len() >= 2);
    assert!(started.elapsed() >= Duration::from_millis(1500), "retried with backoff");
    let got = receiver.received();
    assert_eq!(got[0].json(), got[1].json(), "the retry sends the same document");
    let r = &got[1];
    assert_eq!(r.path, "/hook");
    let ts = r.header("X-Picket-Timestamp").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    assert_eq!(r.header("X-Picket-Signature").unwrap(), format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    let doc = r.json();
    assert_eq!(doc["action"], "created");
    assert_eq!(doc["issue"]["title"], "SecondError: after the site option");
    assert!(doc["issue"]["url"].as_str().unwrap().contains("/organizations/acme/issues/"));
    // `when: new`: another event of the same issue sends nothing.
    send(&p, error_event("SecondError", "after the site option"));
    p.wait_for_events(3);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(receiver.received().len(), 2);
}

/// A project whose enabled plugins have no `post_process` queues no
/// post-processing once Picket has seen that (the first events still go
/// through it); enabling one that has the hook brings it back at once.
#[test]
fn post_processing_is_queued_only_for_plugins_that_have_it() {
    let receiver = Receiver::start(vec![]);
    let p = Picket::start_with("plugin-post-process-skip", &[("PICKET_LOG", "info,picket_server::worker=debug")]);
    let jobs_in_batches = |p: &Picket| -> Vec<usize> {
        p.log().lines().filter(|l| l.contains("digested batch")).filter_map(|l| l.split("post_process_jobs=").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).collect()
    };
    // Only the default plugins (tags) are on: one of the first events shows
    // that none of them has the hook, and the batches after queue nothing.
    let mut sent = 0;
    wait_until("a batch without post-process jobs", &p, 20, || {
        send(&p, error_event("QuietError", "nobody listens"));
        sent += 1;
        p.wait_for_events(sent);
        jobs_in_batches(&p).last() == Some(&0)
    });
    assert_eq!(jobs_in_batches(&p)[0], 1, "the first event is post-processed: the plugins' hooks are not known yet");
    // Enabling a plugin with the hook takes effect with the next event.
    p.cli_ok(&["plugins", "set", "webhooks", "allow_private_networks=true"]);
    configure(&p, "webhooks", json!({"enabled": true, "options": {"urls": receiver.url("/hook"), "when": "new"}}));
    send(&p, error_event("LoudError", "the webhook hears this"));
    wait_until("the webhook", &p, 20, || receiver.received().iter().any(|r| r.json()["issue"]["title"] == "LoudError: the webhook hears this"));
    assert_eq!(jobs_in_batches(&p).last(), Some(&1));
}

#[test]
fn slack_and_discord_get_a_short_message_with_a_link() {
    let receiver = Receiver::start(vec![]);
    let p = Picket::start("plugin-chat");
    p.cli_ok(&["plugins", "set", "slack", "allow_private_networks=true"]);
    p.cli_ok(&["plugins", "set", "discord", "allow_private_networks=true"]);
    configure(&p, "slack", json!({"enabled": true, "options": {"webhook_url": receiver.url("/slack")}}));
    configure(&p, "discord", json!({"enabled": true, "options": {"webhook_url": receiver.url("/discord")}}));
    send(&p, error_event("Bad<Thing>", "a & b @everyone"));
    wait_until("two messages", &p, 20, || receiver.received().len() >= 2);
    let got = receiver.received();
    let slack = got.iter().find(|r| r.path == "/slack").unwrap().json();
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("<http://127.0.0.1:") && text.contains("|New issue in web: [ERROR] Bad&lt;Thing&gt;: a &amp; b"), "{text}");
    let discord = got.iter().find(|r| r.path == "/discord").unwrap().json();
    assert!(discord["content"].as_str().unwrap().contains("Bad<Thing>"), "{discord}");
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}), "no @everyone from event data");
}

/// aiosmtpd writing every message it receives into a Maildir.
struct Smtp {
    child: Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl Smtp {
    fn start(dir: &std::path::Path) -> Smtp {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = dir.join("maildir");
        let child = Command::new(deps_dir().join("py-smtp/bin/python"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (installed by scripts/install-test-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp { child, port, maildir }
    }
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            for e in std::fs::read_dir(self.maildir.join(sub)).into_iter().flatten().flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mail_goes_through_a_real_smtp_server_to_those_who_want_it() {
    let p = Picket::start("plugin-mail");
    let smtp = Smtp::start(&p.dir);
    p.cli_ok(&["plugins", "set", "mail", "smtp_host=127.0.0.1", &format!("smtp_port={}", smtp.port), "from=alerts@picket.example"]);
    configure(&p, "mail", json!({"enabled": true, "options": {"send_to": "oncall@example.com", "min_level": "error", "exclude_loggers": "noisy"}}));
    // The admin as an owner who gets mail, and a member who opted out of this project's mail.
    p.cli_ok(&["org", "add-member", "acme", "--email", "admin@example.com", "--role", "owner"]);
    p.cli_ok(&["createuser", "--email", "quiet@example.com", "--password", "a long enough password"]);
    p.cli_ok(&["org", "add-member", "acme", "--email", "quiet@example.com", "--role", "member"]);
    let quiet = crate::harness::last_line(&p.cli_ok(&["token", "create", "--email", "quiet@example.com"]));
    let r = Client::new().put(format!("{}/api/0/projects/acme/web/plugins/mail/user-options/", p.base_url())).bearer_auth(&quiet).json(&json!({"alerts": false})).send().unwrap();
    assert_eq!(r.status(), 200);
    // Below the level and from an excluded logger: no mail. Then one that qualifies.
    send(&p, json!({"message": "just info", "level": "info"}));
    let mut noisy = error_event("NoisyError", "ignored");
    noisy["logger"] = json!("noisy");
    send(&p, noisy);
    send(&p, error_event("PaymentError", "card <declined>"));
    wait_until("two e-mails", &p, 20, || smtp.messages().len() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "oncall and the admin; not the member who opted out");
    let all = messages.join("\n");
    assert!(all.contains("To: oncall@example.com") && all.contains("To: admin@example.com") && !all.contains("quiet@example.com"), "{all}");
    assert!(all.contains("From: alerts@picket.example"));
    assert!(all.contains("Subject: [Picket] [web] ERROR: PaymentError: card <declined>"), "{all}");
    assert!(all.contains("Stacktrace (most recent call last):"), "interfaces' text in the body: {all}");
    assert!(all.contains("card &lt;declined&gt;"), "escaped in the HTML part: {all}");
    // Required STARTTLS against a server that offers none: refused, and said so.
    p.cli_ok(&["plugins", "set", "mail", "smtp_tls=starttls"]);
    std::thread::sleep(Duration::from_millis(2100)); // the server's plugin state cache
    send(&p, error_event("SecondError", "over TLS only"));
    wait_until("the TLS refusal to be recorded", &p, 20, || p.cli_ok(&["plugins", "list"]).lines().any(|l| l.starts_with("mail ") && l.contains("sending mail through 127.0.0.1")));
    assert_eq!(smtp.messages().len(), 2, "nothing sent in clear text");
}

#[test]
fn the_issue_tracker_creates_links_and_unlinks_tickets() {
    let receiver = Receiver::start(vec![(201, r#"{"id": "T-7", "url": "https://tracker.example/T-7"}"#)]);
    let p = Picket::start("plugin-tracker");
    p.cli_ok(&["plugins", "set", "issue-tracker", "allow_private_networks=true"]);
    configure(
        &p,
        "issue-tracker",
        json!({"enabled": true, "options": {"endpoint": receiver.url("/tickets"), "token": "trk-token", "label_prefix": "T#", "ticket_url": "https://tracker.example/browse/{id}"}}),
    );
    send(&p, error_event("TicketError", "needs a ticket"));
    send(&p, error_event("LinkError", "has a ticket already"));
    p.wait_for_events(2);
    let issue_of = |title: &str| p.issues(None).iter().find(|i| i["title"].as_str().unwrap().starts_with(title)).unwrap()["id"].as_str().unwrap().to_string();
    let slots = |issue: &str| p.api(&format!("/api/0/issues/{issue}/plugins/"));
    let post = |url: &str, body: &'static str| {
        let no_redirect = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = no_redirect.post(url).bearer_auth(&p.token).header("Content-Type", "application/x-www-form-urlencoded").body(body).send().unwrap();
        assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    };
    // Create: the action opens a page with the forms; submitting creates the ticket.
    let issue = issue_of("TicketError");
    let action = slots(&issue)["actions"].as_array().unwrap().iter().find(|a| a["plugin"] == "issue-tracker").expect("an action").clone();
    assert_eq!(action["label"], "Create or link ticket");
    let page_url = format!("{}{}", p.base_url(), action["url"].as_str().unwrap());
    let form = Client::new().get(&page_url).bearer_auth(&p.token).send().unwrap().text().unwrap();
    assert!(form.contains("class=\"create-ticket\"") && form.contains("value=\"TicketError: needs a ticket\"") && form.contains("class=\"link-ticket\""), "{form}");
    post(&page_url, "action=create&title=Fix+TicketError&description=see+%3Cissue%3E");
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("Authorization"), Some("Bearer trk-token"));
    // A wrong request to the page is the user's mistake: 400, not a plugin failure.
    let (status, body, _) = p.api_request("POST", &format!("/api/0/issues/{issue}/plugins/issue-tracker/"), Some(json!({"action": "explode"})));
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("action=unlink"), "{body}");
    let health = p.api("/api/0/plugins/");
    assert_eq!(health.as_array().unwrap().iter().find(|x| x["slug"] == "issue-tracker").unwrap()["health"]["failures"], 0);
    let doc = got[0].json();
    assert_eq!(doc["title"], "Fix TicketError");
    assert_eq!(doc["description"], "see <issue>");
    let s = slots(&issue);
    assert!(s["tags"].as_array().unwrap().iter().any(|t| t["html"] == "<a class=\"ticket\" href=\"https:&#x2F;&#x2F;tracker.example&#x2F;T-7\" rel=\"noopener noreferrer\">T#T-7</a>"), "{s}");
    assert!(!s["actions"].as_array().unwrap().iter().any(|a| a["plugin"] == "issue-tracker"));
    // The stream shows the ticket next to the issue (`before_events` then `tags`).
    let stream = p.api("/api/0/projects/acme/web/issues/");
    let row = stream.as_array().unwrap().iter().find(|i| i["id"] == issue.as_str()).unwrap();
    assert!(row["pluginTags"].as_array().unwrap().iter().any(|t| t["plugin"] == "issue-tracker" && t["html"].as_str().unwrap().contains("T#T-7")), "{row}");
    // Link an existing ticket to the other issue: no call to the tracker, the URL from the template.
    let other = issue_of("LinkError");
    let other_page = format!("{}/api/0/issues/{other}/plugins/issue-tracker/", p.base_url());
    post(&other_page, "action=link&ticket=OPS-3");
    assert_eq!(receiver.received().len(), 1);
    let s = slots(&other);
    assert!(s["tags"].as_array().unwrap().iter().any(|t| t["html"] == "<a class=\"ticket\" href=\"https:&#x2F;&#x2F;tracker.example&#x2F;browse&#x2F;OPS-3\" rel=\"noopener noreferrer\">T#OPS-3</a>"), "{s}");
    // Unlink: the tag goes, the action comes back.
    post(&other_page, "action=unlink");
    let s = slots(&other);
    assert!(s["tags"].as_array().unwrap().is_empty(), "{s}");
    assert!(s["actions"].as_array().unwrap().iter().any(|a| a["plugin"] == "issue-tracker"));
}

#[test]
fn tag_plugins_tag_events_and_can_be_switched_off() {
    let p = Picket::start("plugin-tags");
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
    let event = |msg: &str| json!({
        "message": msg,
        "server_name": "web-1",
        "request": {"url": "https://shop.example/cart?id=1", "headers": {"User-Agent": ua}},
        "user": {"email": "buyer@example.com"},
    });
    send(&p, event("tagged"));
    p.wait_for_events(1);
    let issue = p.issues(None)[0]["id"].as_str().unwrap().to_string();
    let tags: Vec<(String, String)> = p
        .api(&format!("/api/0/issues/{issue}/tags/"))
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| {
            let key = k["key"].as_str().unwrap().to_string();
            p.api(&format!("/api/0/issues/{issue}/tags/{key}/values/")).as_array().unwrap().iter().map(|v| (key.clone(), v["value"].as_str().unwrap().to_string())).collect::<Vec<_>>()
        })
        .collect();
    for expected in [("browser", "Chrome 126"), ("os", "Windows 10"), ("user_email", "buyer@example.com"), ("url", "https://shop.example/cart"), ("server_name", "web-1")] {
        assert!(tags.iter().any(|(k, v)| k == expected.0 && v == expected.1), "{expected:?} in {tags:?}");
    }
    // The filters offer them, and the stream filters by them.
    let found = p.api("/api/0/projects/acme/web/issues/?query=&browser=Chrome%20126");
    assert_eq!(found.as_array().unwrap().len(), 1);
    // Switched off in the project: new events no longer get the tag.
    configure(&p, "user-emails", json!({"enabled": false}));
    configure(&p, "interface-types", json!({"enabled": true}));
    send(&p, json!({"message": "after", "user": {"email": "x@example.com"}, "request": {"url": "https://a.example/"}}));
    p.wait_for_events(2);
    let after = p.issues(Some("after"))[0]["id"].as_str().unwrap().to_string();
    let keys: Vec<String> = p.api(&format!("/api/0/issues/{after}/tags/")).as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap().to_string()).collect();
    assert!(!keys.contains(&"user_email".to_string()), "{keys:?}");
    let types = p.api(&format!("/api/0/issues/{after}/tags/interface_type/values/"));
    assert_eq!(types[0]["value"], "logentry,request,user", "{types}");
}

#[test]
fn stream_filters_combine_and_say_what_is_wrong() {
    let p = Picket::start("plugin-filters");
    send(&p, error_event("OpenError", "still open"));
    send(&p, error_event("DoneError", "fixed"));
    p.wait_for_events(2);
    let done = p.issues(Some("DoneError"))[0]["id"].as_str().unwrap().to_string();
    assert_eq!(p.api_request("PUT", &format!("/api/0/issues/{done}/"), Some(json!({"status": "resolved"}))).0, 200);
    let count = |q: &str| p.api(&format!("/api/0/projects/acme/web/issues/{q}")).as_array().unwrap().len();
    assert_eq!(count(""), 1, "the status filter's default: unresolved");
    assert_eq!(count("?status="), 2, "an empty parameter means any status");
    assert_eq!(count("?status=resolved"), 1);
    assert_eq!(count("?status=resolved&query=is:unresolved"), 0, "conditions combine; contradictory ones match nothing");
    assert_eq!(count("?query=is:resolved%20is:unresolved"), 0);
    let (status, body, _) = p.api_request("GET", "/api/0/projects/acme/web/issues/?status=bogus", None);
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("use unresolved, resolved or ignored"), "{body}");
    // The status widget's "Any" link is explicit, and the list says the default.
    let filters = p.api("/api/0/projects/acme/web/filters/");
    let st = filters.as_array().unwrap().iter().find(|f| f["param"] == "status").unwrap();
    assert_eq!(st["default"], "unresolved");
    assert!(st["widgetHtml"].as_str().unwrap().contains("href=\"?status=\">Any Status"), "{st}");
    // Every API error is JSON, the framework's own included.
    for (method, path, expected) in [("GET", "/api/0/plugins", 404), ("PUT", "/api/0/plugins/", 405), ("GET", "/api/0/projects/acme/web/issues/?limit=abc", 400)] {
        let (status, body, headers) = p.api_request(method, path, None);
        assert_eq!(status, expected, "{method} {path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{method} {path}");
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{method} {path}: {body}");
    }
    assert!(p.api_request("GET", "/api/0/plugins", None).1["detail"].as_str().unwrap().contains("end with '/'"));
}
