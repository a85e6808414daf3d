use super::*;
use serde_json::json;

const NOW: f64 = 1_700_000_000.0;

fn norm(v: Value) -> NormalizedEvent {
    normalize(v, &Context::at(NOW)).unwrap()
}

#[test]
fn levels() {
    for (input, want) in [(json!(40), "error"), (json!("warn"), "warning"), (json!("critical"), "fatal"), (json!("log"), "info"), (json!(10), "debug"), (json!("30"), "warning")] {
        assert_eq!(norm(json!({"level": input})).level.as_str(), want);
    }
    let e = norm(json!({"level": "bogus"}));
    assert_eq!(e.level, Level::Error);
    assert_eq!(e.data["errors"][0]["name"], "level");
    assert_eq!(norm(json!({"type": "transaction"})).level, Level::Info);
}

#[test]
fn timestamps() {
    let t = |v: Value| norm(json!({ "timestamp": v })).timestamp;
    assert_eq!(t(json!(NOW - 10.5)), NOW - 10.5);
    let iso = format_timestamp(NOW - 100.0);
    assert_eq!(t(json!(iso)), NOW - 100.0);
    assert_eq!(t(json!("2023-11-14T22:12:20")), 1_699_999_940.0);
    assert_eq!(t(json!("2023-11-14T22:12:20.123456789+00:00")), 1_699_999_940.123456);
    assert_eq!(t(json!("2023-11-14T22:12:20Z")), 1_699_999_940.0);
    // Too far in the future or past: reset to the receive time, with a note.
    let e = norm(json!({"timestamp": NOW + 3600.0}));
    assert_eq!(e.timestamp, NOW);
    assert_eq!(e.data["errors"][0]["type"], "future_timestamp");
    assert_eq!(t(json!(NOW - 40.0 * 86400.0)), NOW);
    assert_eq!(t(json!("garbage")), NOW);
}

#[test]
fn clock_drift_is_corrected() {
    // The client's clock is two hours behind.
    let ctx = Context { received: NOW, sent_at: Some(NOW - 7200.0), ..Context::default() };
    let e = normalize(json!({"timestamp": NOW - 7205.0, "breadcrumbs": [{"timestamp": NOW - 7210.0}]}), &ctx).unwrap();
    assert_eq!(e.timestamp, NOW - 5.0);
    assert_eq!(e.data["breadcrumbs"]["values"][0]["timestamp"], json!(NOW - 10.0));
    // A small difference is left alone.
    let ctx = Context { received: NOW, sent_at: Some(NOW - 30.0), ..Context::default() };
    assert_eq!(normalize(json!({"timestamp": NOW - 31.0}), &ctx).unwrap().timestamp, NOW - 31.0);
}

#[test]
fn breadcrumb_timestamps_become_seconds() {
    let crumbs = json!([{"timestamp": NOW - 3.5}, {"timestamp": 1_700_000_000}, {"timestamp": "2023-11-14T22:13:20Z"}, {"timestamp": "soon"}, {"timestamp": -0.0}, {}]);
    let e = norm(json!({"breadcrumbs": crumbs}));
    let got: Vec<&Value> = e.data["breadcrumbs"]["values"].as_array().unwrap().iter().map(|c| &c["timestamp"]).collect();
    assert_eq!(got, [&json!(NOW - 3.5), &json!(1_700_000_000.0), &json!(1_700_000_000.0), &json!("soon"), &json!(0.0), &Value::Null]);
    assert!(got[1].is_f64(), "an integer becomes a float, as with a drift correction");
}

#[test]
fn legacy_raven_payload() {
    let e = norm(json!({
        "message": "Hello %s",
        "sentry.interfaces.Message": {"message": "Hello %s", "params": ["world"]},
        "sentry.interfaces.Exception": {"values": [{"type": "ValueError", "value": 42}]},
        "sentry.interfaces.User": {"id": 7},
        "sentry.interfaces.Http": {"url": "http://x/", "headers": {"Accept": "a"}},
        "tags": [["a", "1"], ["b", 2]],
        "level": 40,
        "platform": "python"
    }));
    assert_eq!(e.data["logentry"], json!({"message": "Hello %s", "params": ["world"], "formatted": "Hello world"}));
    assert_eq!(e.data["exception"]["values"][0]["value"], "42");
    assert_eq!(e.data["user"]["id"], "7");
    assert_eq!(e.data["request"]["headers"], json!([["Accept", "a"]]));
    assert!(e.tags.contains(&("a".into(), "1".into())));
    assert!(e.tags.contains(&("b".into(), "2".into())));
    assert!(e.tags.contains(&("user".into(), "id:7".into())));
    assert_eq!(e.event_type, EventType::Error);
    assert_eq!(e.title, "ValueError: 42");
    assert_eq!(e.user_key.as_deref(), Some("id:7"));
}

#[test]
fn exception_shapes() {
    let list = norm(json!({"exception": [{"type": "A", "value": "x"}]}));
    assert_eq!(list.data["exception"]["values"][0]["type"], "A");
    let single = norm(json!({"exception": {"type": "B"}}));
    assert_eq!(single.data["exception"]["values"][0]["type"], "B");
    let empty = norm(json!({"exception": {"values": []}}));
    assert!(empty.data.get("exception").is_none());
    assert_eq!(empty.event_type, EventType::Default);
    let null_frames = norm(json!({"exception": {"values": [{"type": "C", "stacktrace": {"frames": null}}]}}));
    assert_eq!(null_frames.data["exception"]["values"][0]["stacktrace"]["frames"], json!([]));
    let neither = norm(json!({"exception": {"values": [{"module": "m"}]}}));
    assert!(neither.data.get("exception").is_none());
}

#[test]
fn long_stack_traces_keep_both_ends() {
    let frames: Vec<Value> = (0..10_000).map(|i| json!({"function": format!("f{i}"), "in_app": true})).collect();
    let e = norm(json!({"exception": [{"type": "RecursionError", "stacktrace": {"frames": frames}}]}));
    let st = &e.data["exception"]["values"][0]["stacktrace"];
    let kept = st["frames"].as_array().unwrap();
    assert_eq!(kept.len(), 250);
    assert_eq!(kept[0]["function"], "f0");
    assert_eq!(kept[49]["function"], "f49");
    assert_eq!(kept[50]["function"], "f9800");
    assert_eq!(kept[249]["function"], "f9999", "the crashing frame is kept");
    assert_eq!(st["frames_omitted"], json!([50, 9800]));
}

#[test]
fn headers_as_pairs_or_lists() {
    let e = norm(json!({"request": {"headers": [["A", "1"], ["B", 2]]}}));
    assert_eq!(e.data["request"]["headers"], json!([["A", "1"], ["B", "2"]]));
    let e = norm(json!({"request": {"headers": {"X": ["1", "2"]}}}));
    assert_eq!(e.data["request"]["headers"], json!([["X", "1"], ["X", "2"]]));
}

#[test]
fn message_formatting() {
    let f = |t: &str, p: Value| format_params(t, Some(&p));
    assert_eq!(f("User %s failed %d times", json!(["bob", 3])), "User bob failed 3 times");
    assert_eq!(f("%(name)s is %(age)d", json!({"name": "Al", "age": 5})), "Al is 5");
    assert_eq!(f("100%% sure %s", json!(["x"])), "100% sure x");
    assert_eq!(f("missing %s %s", json!(["a"])), "missing a %s");
    assert_eq!(f("trailing %", json!([])), "trailing %");
    // Regression: a non-ASCII name skipped too much of what follows.
    assert_eq!(f("%(näme)s and more", json!({"näme": "x"})), "x and more");
    let e = norm(json!({"message": {"message": "Hi %s", "params": ["x"]}}));
    assert_eq!(e.title, "Hi x");
}

#[test]
fn strings_are_trimmed_and_coerced() {
    let e = norm(json!({"logger": "x".repeat(100), "release": 12, "environment": "", "server_name": "a\nb"}));
    assert_eq!(e.data["logger"].as_str().unwrap().len(), 64);
    assert_eq!(e.release.as_deref(), Some("12"));
    assert!(e.environment.is_none());
    assert!(e.data.get("server_name").is_none());
    assert_eq!(truncate("héllo", 2), "hé");
}

#[test]
fn event_id_from_envelope_wins() {
    let ctx = Context { received: NOW, event_id: Some("aa".repeat(16)), ..Context::default() };
    let e = normalize(json!({"event_id": "bb".repeat(16)}), &ctx).unwrap();
    assert_eq!(e.event_id, "aa".repeat(16));
    assert_eq!(norm(json!({"event_id": "BB".repeat(16)})).event_id, "bb".repeat(16));
    assert_eq!(norm(json!({"event_id": "nope"})).event_id.len(), 32);
}

#[test]
fn not_an_object() {
    assert!(normalize(json!([1]), &Context::at(NOW)).is_err());
}

#[test]
fn platform_defaults_to_other() {
    assert_eq!(norm(json!({"platform": "cobol"})).platform, "other");
    assert_eq!(norm(json!({"platform": "Python"})).platform, "python");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![Just("exception".to_string()), Just("values".to_string()), Just("frames".to_string()), Just("stacktrace".to_string()),
                        Just("message".to_string()), Just("tags".to_string()), Just("user".to_string()), Just("request".to_string()), Just("headers".to_string()),
                        Just("level".to_string()), Just("timestamp".to_string()), Just("logentry".to_string()), Just("params".to_string()),
                        Just("threads".to_string()), Just("breadcrumbs".to_string()), Just("fingerprint".to_string()), Just("type".to_string()), ".{0,8}"],
                    inner, 0..6
                ).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any object normalizes without panicking, and the result has a title and hashes.
        #[test]
        fn normalize_is_total(v in arb_json()) {
            let obj = match v { Value::Object(m) => Value::Object(m), other => json!({"extra": other}) };
            let e = normalize(obj, &Context::at(NOW)).unwrap();
            prop_assert!(!e.title.is_empty());
            prop_assert!(!e.grouping.hashes.is_empty());
        }
    }
}

#[test]
fn tags_are_trimmed_and_cut_to_the_limits() {
    let long = "é".repeat(max_chars::TAG_VALUE + 5);
    let ev = norm(json!({"message": "m", "tags": {" padded ": "  value  ", "long": long, "exact": "x".repeat(max_chars::TAG_VALUE), "blank": "  "}}));
    let tag = |k: &str| ev.tags.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(tag("padded").as_deref(), Some("value"));
    assert_eq!(tag("long").map(|v| v.chars().count()), Some(max_chars::TAG_VALUE), "cut by characters, not bytes");
    assert_eq!(tag("exact").map(|v| v.len()), Some(max_chars::TAG_VALUE));
    assert_eq!(tag("blank"), None, "a blank value is no tag");
}

/// Plugins' tags in the order two plugins would return them.
struct TwoTagPlugins;
impl EventHooks for TwoTagPlugins {
    fn extra_tags(&self, _event: &Event) -> Vec<(String, String)> {
        [("url", "https://from-plugin.example/"), ("tenant", "first"), ("level", "debug"), (" tenant ", "second"), ("new", "added")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[test]
fn plugins_add_tags_but_do_not_replace_the_events_own() {
    let raw = json!({"message": "m", "level": "error", "tags": {"url": "https://explicit.example/"}});
    let ev = normalize_with(raw, &Context::at(NOW), Registry::global(), &TwoTagPlugins).unwrap();
    let tag = |k: &str| ev.tags.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    assert_eq!(tag("url"), ["https://explicit.example/"], "the SDK's tag wins over a plugin's");
    assert_eq!(tag("level"), ["error"], "a derived tag wins over a plugin's");
    assert_eq!(tag("tenant"), ["first"], "the first plugin to add a key wins");
    assert_eq!(tag("new"), ["added"]);
    // The stored payload's tags are the same list.
    assert!(ev.data["tags"].as_array().unwrap().contains(&json!(["url", "https://explicit.example/"])));
}
