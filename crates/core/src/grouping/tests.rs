use super::*;
use crate::normalize::{normalize, Context};
use serde_json::{json, Value};

fn hashes(v: Value) -> Vec<String> {
    normalize(v, &Context::at(1_700_000_000.0)).unwrap().grouping.hashes
}

fn py_error(ty: &str, value: &str, func: &str, lineno: u32) -> Value {
    json!({"platform": "python", "exception": {"values": [{"type": ty, "value": value, "stacktrace": {"frames": [
        {"module": "django.core.handlers", "function": "inner", "lineno": 10, "in_app": false, "context_line": "response = get_response(request)"},
        {"module": "app.views", "function": func, "lineno": lineno, "in_app": true, "context_line": "    raise ValueError(msg)  "}
    ]}}]}})
}

#[test]
fn message_and_line_numbers_do_not_split() {
    let a = hashes(py_error("ValueError", "user 1 not found", "index", 10));
    let b = hashes(py_error("ValueError", "user 2 is gone", "index", 99));
    assert_eq!(a[0], b[0]);
}

#[test]
fn different_place_or_type_splits() {
    let a = hashes(py_error("ValueError", "x", "index", 10));
    assert_ne!(a[0], hashes(py_error("ValueError", "x", "detail", 10))[0]);
    assert_ne!(a[0], hashes(py_error("KeyError", "x", "index", 10))[0]);
}

#[test]
fn library_frames_only_matter_in_the_system_hash() {
    let a = py_error("ValueError", "x", "index", 10);
    let mut b = a.clone();
    b["exception"]["values"][0]["stacktrace"]["frames"][0]["function"] = json!("other_inner");
    let (ha, hb) = (hashes(a), hashes(b));
    assert_eq!(ha.len(), 2);
    assert_eq!(ha[0], hb[0], "app hash ignores library frames");
    assert_ne!(ha[1], hb[1], "system hash includes them");
}

#[test]
fn messages_group_by_template() {
    let a = hashes(json!({"logentry": {"message": "User %s failed", "params": ["alice"]}}));
    let b = hashes(json!({"logentry": {"message": "User %s failed", "params": ["bob"]}}));
    assert_eq!(a, b);
    // Without a template, parameterization still merges variable parts.
    assert_eq!(hashes(json!({"message": "Timeout after 30 ms for order 1234"})), hashes(json!({"message": "Timeout after 45 ms for order 99"})));
    assert_ne!(hashes(json!({"message": "disk full"})), hashes(json!({"message": "disk empty"})));
}

#[test]
fn exception_without_frames_uses_the_value() {
    let a = hashes(json!({"exception": [{"type": "E", "value": "id 5 missing"}]}));
    let b = hashes(json!({"exception": [{"type": "E", "value": "id 6 missing"}]}));
    let c = hashes(json!({"exception": [{"type": "E", "value": "other"}]}));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn chained_exceptions_all_count() {
    let mut a = py_error("ValueError", "x", "index", 10);
    let cause = json!({"type": "KeyError", "value": "k", "stacktrace": {"frames": [{"module": "app.db", "function": "get", "in_app": true}]}});
    let mut b = a.clone();
    a["exception"]["values"].as_array_mut().unwrap().insert(0, cause.clone());
    let mut cause2 = cause;
    cause2["type"] = json!("IndexError");
    b["exception"]["values"].as_array_mut().unwrap().insert(0, cause2);
    assert_ne!(hashes(a)[0], hashes(b)[0]);
}

#[test]
fn custom_fingerprints() {
    let base = py_error("ValueError", "x", "index", 10);
    let with = |fp: Value| {
        let mut e = base.clone();
        e["fingerprint"] = fp;
        e
    };
    // A fixed fingerprint merges different errors.
    assert_eq!(hashes(with(json!(["db-down"]))), hashes(json!({"message": "other", "fingerprint": ["db-down"]})));
    assert_eq!(hashes(with(json!(["db-down"]))).len(), 1);
    // {{ default }} salts the default: same place, split by the extra part.
    let d1 = hashes(with(json!(["{{ default }}", "tenant-a"])));
    let d2 = hashes(with(json!(["{{default}}", "tenant-b"])));
    assert_ne!(d1[0], d2[0]);
    assert_ne!(d1[0], hashes(base.clone())[0]);
    // Variables.
    let t1 = hashes(with(json!(["{{ type }}", "{{ function }}"])));
    let t2 = hashes(json!({"exception": [{"type": "ValueError", "stacktrace": {"frames": [{"function": "index"}]}}], "fingerprint": ["{{ type }}", "{{ function }}"]}));
    assert_eq!(t1, t2);
    // Numbers in fingerprints are coerced.
    assert_eq!(hashes(with(json!(["a", 1]))), hashes(with(json!(["a", "1"]))));
}

#[test]
fn js_frames_ignore_urls_and_anonymous_functions() {
    let js = |host: &str| {
        json!({"platform": "javascript", "exception": [{"type": "TypeError", "value": "x is undefined", "stacktrace": {"frames": [
            {"abs_path": format!("https://{host}/static/app.1234.js"), "filename": "/static/app.1234.js", "function": "Object.handleClick", "in_app": true},
            {"abs_path": "[native code]", "function": "?"}
        ]}}]})
    };
    assert_eq!(hashes(js("a.example.com")), hashes(js("b.example.com")));
}

#[test]
fn recursion_is_collapsed() {
    let frame = json!({"module": "app", "function": "rec", "lineno": 3, "in_app": true});
    let a = json!({"exception": [{"type": "RecursionError", "stacktrace": {"frames": [frame.clone(), frame.clone(), frame.clone()]}}]});
    let b = json!({"exception": [{"type": "RecursionError", "stacktrace": {"frames": [frame.clone()]}}]});
    assert_eq!(hashes(a), hashes(b));
}

#[test]
fn csp_groups_by_directive_and_host() {
    let csp = |uri: &str, dir: &str| json!({"csp": {"blocked_uri": uri, "effective_directive": dir}, "message": "m"});
    assert_eq!(hashes(csp("https://evil.com/a.js", "script-src")), hashes(csp("https://evil.com/b.js", "script-src")));
    assert_ne!(hashes(csp("https://evil.com/a.js", "script-src")), hashes(csp("https://evil.com/a.js", "img-src")));
}

#[test]
fn algorithm_is_recorded() {
    let r = normalize(json!({"message": "x"}), &Context::at(0.0 + 1_700_000_000.0)).unwrap().grouping;
    assert_eq!(r.algorithm, ALGORITHM);
    assert_eq!(r.hashes[0].len(), 32);
}

#[test]
fn generated_java_classes_group_together_and_plain_modules_stay() {
    assert_eq!(normalize_module("com.example.Service$$Lambda$123/0x0000000801234"), "com.example.Service<auto>");
    assert_eq!(normalize_module("sun.reflect.GeneratedMethodAccessor42"), "sun.reflect.<auto>");
    assert_eq!(normalize_module("com.example.Outer$Inner"), "com.example.Outer$Inner");
    assert_eq!(normalize_module("app.views"), "app.views");
    let java = |module: &str| {
        hashes(json!({"platform": "java", "exception": {"values": [{"type": "IllegalStateException", "stacktrace": {"frames": [
            {"module": module, "function": "apply", "in_app": true}
        ]}}]}}))
    };
    assert_eq!(java("com.example.Service$$Lambda$1/0x1")[0], java("com.example.Service$$Lambda$2/0x2")[0]);
}
