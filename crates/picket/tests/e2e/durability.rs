//! "Nothing acknowledged is lost": events are sent from several threads while
//! the server is killed with SIGKILL and restarted. Afterwards every event
//! that got a 200 is stored, and every stored event was counted exactly once
//! (issue counters and tag counts).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::Picket;

#[test]
fn sigkill_under_load_loses_no_acknowledged_event() {
    // Small digest batches keep the digest busy when the kill lands.
    let mut p = Picket::start_with("durability", &[("PICKET_DIGEST_BATCH_SIZE", "16")]);
    let url = format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key);
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let (url, acked, sent, stop) = (url.clone(), acked.clone(), sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut i = 0u64;
                // Bounded: at most 20,000 requests per thread, and stopped by the flag.
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    i += 1;
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    sent.lock().unwrap().insert(id.clone());
                    let body = json!({"event_id": id, "message": format!("load {t} {}", i % 7), "level": "error"});
                    match client.post(&url).json(&body).send() {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(id);
                        }
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(1200));
        let before = acked.lock().unwrap().len();
        p.kill();
        assert!(before > 0, "round {round}: nothing was acknowledged before the kill");
        std::thread::sleep(Duration::from_millis(200));
        p.spawn();
    }
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    p.wait_for("the queue to drain", || p.event_count() >= acked.len() as i64 && p.api("/api/0/projects/acme/web/stats/")["events"] == p.event_count());
    // Let any in-flight (sent, not acknowledged) events land too.
    std::thread::sleep(Duration::from_millis(1000));
    let stored = p.event_count();
    assert!(stored >= acked.len() as i64, "stored {stored} < acknowledged {}", acked.len());
    assert!(stored <= sent.len() as i64, "stored {stored} > sent {}", sent.len());
    // Exactly once: issue counters add up to the stored events.
    let counted: i64 = p.issues(None).iter().map(|i| i["count"].as_str().unwrap().parse::<i64>().unwrap()).sum();
    assert_eq!(counted, stored, "issue counters disagree with stored events");
    // Tag counts too: under load the digest keeps them back in memory, and
    // what a kill lost is recounted from the stored events at the next start.
    for issue in p.issues(None) {
        let id = issue["id"].as_str().unwrap();
        let tags = p.api(&format!("/api/0/issues/{id}/tags/"));
        let level = tags.as_array().unwrap().iter().find(|t| t["key"] == "level").unwrap_or_else(|| panic!("issue {id} has a level tag: {tags}"));
        assert_eq!(level["totalValues"].to_string(), issue["count"].as_str().unwrap(), "issue {id}: the level tag's counts add up to the issue's events");
    }
    // Every acknowledged id is there, exactly once: page through each issue's events.
    let mut seen: Vec<String> = Vec::new();
    for issue in p.issues(None) {
        let mut cursor = String::from("0:0:0");
        loop {
            let (status, page, headers) = p.api_request("GET", &format!("/api/0/issues/{}/events/?cursor={cursor}", issue["id"].as_str().unwrap()), None);
            assert_eq!(status, 200);
            seen.extend(page.as_array().unwrap().iter().map(|e| e["eventID"].as_str().unwrap().to_string()));
            let link = headers["link"].to_str().unwrap().to_string();
            let next = link.split(", <").find(|l| l.contains("rel=\"next\"")).unwrap();
            if !next.contains("results=\"true\"") {
                break;
            }
            cursor = next.split("cursor=\"").nth(1).unwrap().trim_end_matches('"').to_string();
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an event is stored twice");
    assert_eq!(seen.len() as i64, stored);
    let missing: Vec<_> = acked.difference(&unique).collect();
    assert!(missing.is_empty(), "{} acknowledged events are missing, e.g. {:?}", missing.len(), missing.first());
    let recounts = p.log().matches("counted the tags of events stored before the last stop").count();
    eprintln!("durability: sent {}, acknowledged {}, stored {stored}, tag counts recounted after {recounts} of 2 kills", sent.len(), acked.len());
}

/// A project's events are compressed with a dictionary trained on its first
/// 1,000: events from before and after read back whole, also after a
/// restart (the dictionary comes from the database then).
#[test]
fn events_read_back_after_the_projects_dictionary_is_trained_and_after_a_restart() {
    let mut p = Picket::start("dictionary");
    let url = format!("{}/api/{}/store/?sentry_key={}", p.base_url(), p.project_id, p.public_key);
    let total = 1_100;
    let ids: Vec<String> = (0..total).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let chunks: Vec<Vec<(usize, String)>> = ids.iter().cloned().enumerate().collect::<Vec<_>>().chunks(total / 4).map(<[_]>::to_vec).collect();
    let senders: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for (n, id) in chunk {
                    let body = json!({"event_id": id, "level": "error", "tags": {"n": n.to_string()},
                        "exception": {"values": [{"type": "ValueError", "value": format!("bad value {n}"),
                            "stacktrace": {"frames": [{"module": "app.views", "function": "handle", "lineno": n, "in_app": true}]}}]}});
                    assert_eq!(client.post(&url).json(&body).send().unwrap().status(), 200);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    p.wait_for_events(total as i64);
    p.wait_for("the dictionary to be trained", || p.log().contains("trained a zstd dictionary"));
    // Events stored after the dictionary was installed.
    let late: Vec<String> = (0..30).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
    let client = reqwest::blocking::Client::new();
    for (k, id) in late.iter().enumerate() {
        let body = json!({"event_id": id, "message": format!("after the dictionary {k}"), "level": "warning"});
        assert_eq!(client.post(&url).json(&body).send().unwrap().status(), 200);
    }
    p.wait_for_events((total + late.len()) as i64);
    let check = |p: &Picket| {
        for n in [0, 500, total - 1] {
            let ev = p.event(&ids[n]);
            assert!(ev["entries"].to_string().contains(&format!("bad value {n}")), "event {n} reads back: {ev}");
        }
        for (k, id) in late.iter().enumerate() {
            assert_eq!(p.event(id)["message"], format!("after the dictionary {k}"));
        }
    };
    check(&p);
    assert_eq!(p.terminate().code(), Some(0));
    p.spawn();
    check(&p);
}
