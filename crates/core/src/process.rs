//! Processing of one queued envelope: every item is parsed, normalized and
//! sorted into what the store keeps. A bad item is counted as invalid and
//! skipped; it never takes the rest of the envelope with it.

use picket_protocol::envelope::{Envelope, Item};
use serde_json::Value;

use crate::normalize::{normalize_with, parse_timestamp, Context, EventHooks, NoHooks, NormalizedEvent};

/// Where an envelope came from, as recorded by ingest.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub queue_id: i64,
    pub project_id: i64,
    pub received: f64,
    pub client_ip: Option<String>,
    pub sdk_client: Option<String>,
}

/// Everything one queued envelope turned into after processing.
#[derive(Debug, Default)]
pub struct ProcessedEnvelope {
    pub queue_id: i64,
    pub project_id: i64,
    pub events: Vec<NormalizedEvent>,
    pub transactions: Vec<NormalizedEvent>,
    pub attachments: Vec<Attachment>,
    pub user_reports: Vec<UserReport>,
    pub sessions: Vec<SessionUpdate>,
    pub session_aggregates: Vec<SessionAggregate>,
    pub check_ins: Vec<CheckIn>,
    pub client_outcomes: Vec<(String, String, i64)>,
    /// Item types counted but not stored, with why (`skipped`, `invalid`).
    pub counted: Vec<(String, &'static str)>,
}

#[derive(Debug, Clone)]
pub struct Attachment {
    pub event_id: String,
    pub name: String,
    pub content_type: Option<String>,
    pub attachment_type: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct UserReport {
    pub event_id: Option<String>,
    /// `user_report` (legacy) or `feedback`.
    pub kind: &'static str,
    pub name: Option<String>,
    pub email: Option<String>,
    pub comments: String,
    pub url: Option<String>,
    pub created_at: f64,
    /// The report's own id, when it has one (a `feedback` item is an event):
    /// the same report sent again is stored once.
    pub source_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SessionUpdate {
    pub sid: String,
    pub release: String,
    pub environment: String,
    pub started: f64,
    pub init: bool,
    pub status: String,
    pub errors: i64,
    pub timestamp: f64,
}

#[derive(Debug, Clone)]
pub struct SessionAggregate {
    pub release: String,
    pub environment: String,
    pub exited: i64,
    pub errored: i64,
    pub abnormal: i64,
    pub crashed: i64,
}

#[derive(Debug, Clone)]
pub struct CheckIn {
    pub check_in_id: String,
    pub monitor_slug: String,
    pub status: String,
    pub duration: Option<f64>,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub received: f64,
    pub data: Value,
}

/// Processes the bytes of a queued envelope. Malformed envelopes (which
/// ingest already refused) yield an empty result counted as invalid.
pub fn process_envelope(origin: &Origin, body: &[u8]) -> ProcessedEnvelope {
    process_envelope_with(origin, body, picket_plugin_api::Registry::global(), &NoHooks)
}

/// [`process_envelope`] with the interfaces of `registry` and the project's plugin hooks.
pub fn process_envelope_with(origin: &Origin, body: &[u8], registry: &picket_plugin_api::Registry, hooks: &dyn EventHooks) -> ProcessedEnvelope {
    let mut out = ProcessedEnvelope { queue_id: origin.queue_id, project_id: origin.project_id, ..ProcessedEnvelope::default() };
    let env = match Envelope::parse(body) {
        Ok(e) => e,
        Err(_) => {
            out.counted.push(("envelope".into(), "invalid"));
            return out;
        }
    };
    let envelope_event_id = env.event_id();
    let sent_at = env.headers.get("sent_at").and_then(parse_timestamp);
    let sdk = env.headers.get("sdk").cloned().filter(Value::is_object).or_else(|| {
        origin.sdk_client.as_ref().and_then(|c| c.split_once('/')).map(|(n, v)| serde_json::json!({"name": n, "version": v}))
    });
    let ctx = Context { received: origin.received, sent_at, event_id: envelope_event_id.clone(), client_ip: origin.client_ip.clone(), sdk, project_id: origin.project_id };
    // The event id attachments and feedback belong to.
    let mut event_id = envelope_event_id.clone();
    for item in &env.items {
        let ty = item.item_type();
        match ty {
            "event" | "transaction" | "feedback" => match parse_object(item).and_then(|v| normalize_with(v, &ctx, registry, hooks).ok()) {
                Some(ev) => {
                    event_id.get_or_insert_with(|| ev.event_id.clone());
                    match ty {
                        "transaction" => out.transactions.push(ev),
                        // Counted when stored (accepted, or a duplicate).
                        "feedback" => out.user_reports.push(feedback_report(&ev)),
                        _ => out.events.push(ev),
                    }
                }
                None => out.counted.push((ty.into(), "invalid")),
            },
            "attachment" => {
                let Some(eid) = event_id.clone().or_else(|| envelope_event_id.clone()) else {
                    out.counted.push((ty.into(), "invalid"));
                    continue;
                };
                out.attachments.push(Attachment {
                    event_id: eid,
                    name: item.header_str("filename").unwrap_or("attachment").to_string(),
                    content_type: item.header_str("content_type").map(str::to_string),
                    attachment_type: item.header_str("attachment_type").unwrap_or("event.attachment").to_string(),
                    data: item.payload.to_vec(),
                });
            }
            "user_report" => match parse_object(item).as_ref().and_then(|v| user_report(v, origin.received)) {
                Some(r) => out.user_reports.push(r),
                None => out.counted.push((ty.into(), "invalid")),
            },
            "session" => match parse_object(item).as_ref().and_then(|v| session_update(v, origin.received)) {
                Some(s) => {
                    out.sessions.push(s);
                    out.counted.push((ty.into(), "accepted"));
                }
                None => out.counted.push((ty.into(), "invalid")),
            },
            "sessions" => match parse_object(item).as_ref().map(session_aggregates) {
                Some(a) => {
                    out.session_aggregates.extend(a);
                    out.counted.push((ty.into(), "accepted"));
                }
                None => out.counted.push((ty.into(), "invalid")),
            },
            "check_in" => match parse_object(item).and_then(|v| check_in(v, origin.received)) {
                Some(c) => {
                    out.check_ins.push(c);
                    out.counted.push((ty.into(), "accepted"));
                }
                None => out.counted.push((ty.into(), "invalid")),
            },
            "client_report" => {
                if let Some(v) = parse_object(item) {
                    for key in ["discarded_events", "rate_limited_events", "filtered_events", "filtered_sampling_events"] {
                        for d in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                            let reason = d.get("reason").and_then(Value::as_str).unwrap_or(key).to_string();
                            let category = d.get("category").and_then(Value::as_str).unwrap_or("default").to_string();
                            let quantity = d.get("quantity").and_then(Value::as_i64).unwrap_or(0);
                            if quantity > 0 {
                                out.client_outcomes.push((reason, category, quantity));
                            }
                        }
                    }
                }
                out.counted.push((ty.into(), "accepted"));
            }
            other => out.counted.push((other.to_string(), "skipped")),
        }
    }
    out
}

fn parse_object(item: &Item<'_>) -> Option<Value> {
    picket_protocol::json::parse_lenient(item.payload).ok().filter(Value::is_object)
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn user_report(v: &Value, received: f64) -> Option<UserReport> {
    Some(UserReport {
        event_id: v.get("event_id").and_then(Value::as_str).and_then(picket_protocol::parse_event_id),
        kind: "user_report",
        name: str_field(v, "name"),
        email: str_field(v, "email"),
        comments: str_field(v, "comments")?,
        url: None,
        created_at: received,
        source_id: None,
    })
}

/// A `feedback` item is an event whose `contexts.feedback` holds the report.
fn feedback_report(ev: &NormalizedEvent) -> UserReport {
    let fb = ev.data.get("contexts").and_then(|c| c.get("feedback")).cloned().unwrap_or(Value::Null);
    UserReport {
        event_id: fb.get("associated_event_id").and_then(Value::as_str).and_then(picket_protocol::parse_event_id),
        kind: "feedback",
        name: str_field(&fb, "name"),
        email: str_field(&fb, "contact_email"),
        comments: str_field(&fb, "message").unwrap_or_default(),
        url: str_field(&fb, "url"),
        created_at: ev.timestamp,
        source_id: Some(ev.event_id.clone()),
    }
}

fn attrs(v: &Value) -> (Option<String>, String) {
    let a = v.get("attrs");
    let release = a.and_then(|a| str_field(a, "release"));
    let env = a.and_then(|a| str_field(a, "environment")).unwrap_or_else(|| "production".into());
    (release, env)
}

fn session_update(v: &Value, received: f64) -> Option<SessionUpdate> {
    let (release, environment) = attrs(v);
    let release = release?;
    let sid = str_field(v, "sid")?;
    // A client clock ahead of ours is not believed beyond a minute (as for
    // events): retention finds old rows by these times.
    let at_most_now = |t: f64| t.min(received + 60.0);
    let started = at_most_now(v.get("started").and_then(parse_timestamp).unwrap_or(received));
    Some(SessionUpdate {
        sid,
        release,
        environment,
        started,
        init: v.get("init").and_then(Value::as_bool).unwrap_or(false),
        status: str_field(v, "status").unwrap_or_else(|| "ok".into()),
        errors: v.get("errors").and_then(Value::as_i64).unwrap_or(0).max(0),
        timestamp: at_most_now(v.get("timestamp").and_then(parse_timestamp).unwrap_or(received)),
    })
}

fn session_aggregates(v: &Value) -> Vec<SessionAggregate> {
    let (release, environment) = attrs(v);
    let Some(release) = release else { return vec![] };
    let n = |a: &Value, k: &str| a.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
    v.get("aggregates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(picket_protocol::limits::MAX_SESSIONS)
        .map(|a| SessionAggregate {
            release: release.clone(),
            environment: environment.clone(),
            exited: n(a, "exited"),
            errored: n(a, "errored"),
            abnormal: n(a, "abnormal"),
            crashed: n(a, "crashed"),
        })
        .collect()
}

fn check_in(v: Value, received: f64) -> Option<CheckIn> {
    Some(CheckIn {
        check_in_id: v.get("check_in_id").and_then(Value::as_str).and_then(picket_protocol::parse_event_id)?,
        monitor_slug: str_field(&v, "monitor_slug")?,
        status: str_field(&v, "status")?,
        duration: v.get("duration").and_then(Value::as_f64),
        environment: str_field(&v, "environment"),
        release: str_field(&v, "release"),
        received,
        data: v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_type_lands_somewhere() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"sent_at\":\"2024-03-19T15:18:27.581Z\"}\n\
{\"type\":\"event\"}\n{\"message\":\"hello\",\"level\":\"error\"}\n\
{\"type\":\"attachment\",\"length\":3,\"filename\":\"a.txt\"}\nabc\n\
{\"type\":\"session\"}\n{\"sid\":\"s1\",\"status\":\"ok\",\"init\":true,\"started\":\"2024-03-19T15:18:00Z\",\"attrs\":{\"release\":\"1.0\"}}\n\
{\"type\":\"sessions\"}\n{\"aggregates\":[{\"started\":\"2024-03-19T15:18:00Z\",\"exited\":3,\"crashed\":1}],\"attrs\":{\"release\":\"1.0\",\"environment\":\"prod\"}}\n\
{\"type\":\"check_in\"}\n{\"check_in_id\":\"83a7c03ed0a04e1b97e2e3b18d38f244\",\"monitor_slug\":\"nightly\",\"status\":\"ok\",\"duration\":1.5}\n\
{\"type\":\"client_report\"}\n{\"discarded_events\":[{\"reason\":\"queue_overflow\",\"category\":\"error\",\"quantity\":2}]}\n\
{\"type\":\"user_report\"}\n{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"name\":\"A\",\"email\":\"a@b.c\",\"comments\":\"broke\"}\n\
{\"type\":\"profile\"}\n{}\n\
{\"type\":\"something_new\"}\n{}\n\
{\"type\":\"event\"}\nnot json\n";
        let p = process_envelope(&Origin { received: 1_710_861_510.0, project_id: 1, ..Origin::default() }, body);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].event_id, "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].event_id, "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(p.sessions.len(), 1);
        assert_eq!(p.session_aggregates[0].crashed, 1);
        assert_eq!(p.check_ins[0].monitor_slug, "nightly");
        assert_eq!(p.client_outcomes, vec![("queue_overflow".to_string(), "error".to_string(), 2)]);
        assert_eq!(p.user_reports[0].comments, "broke");
        assert!(p.counted.contains(&("profile".into(), "skipped")));
        assert!(p.counted.contains(&("something_new".into(), "skipped")));
        assert!(p.counted.contains(&("event".into(), "invalid")));
    }

    #[test]
    fn session_times_ahead_of_the_server_are_not_believed() {
        let received = 1_710_861_510.0;
        let body = b"{}\n{\"type\":\"session\"}\n{\"sid\":\"s1\",\"started\":\"2034-03-19T15:18:00Z\",\"timestamp\":\"2034-03-19T15:18:00Z\",\"attrs\":{\"release\":\"1.0\"}}\n";
        let p = process_envelope(&Origin { received, project_id: 1, ..Origin::default() }, body);
        assert_eq!((p.sessions[0].started, p.sessions[0].timestamp), (received + 60.0, received + 60.0));
    }
}
