//! Plugin option forms: any JSON (leniently parsed) submitted to every kind
//! of option and to a whole form. Must never panic, and what validation
//! accepts must validate again unchanged (what is stored round-trips).
#![no_main]

use libfuzzer_sys::fuzz_target;
use picket_plugin_api::options::{validate_form, OptionKind, OptionSpec};
use picket_plugin_api::serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = picket_protocol::json::parse_lenient(data) else { return };
    let kinds = [
        OptionKind::Text,
        OptionKind::Textarea,
        OptionKind::Secret,
        OptionKind::Url,
        OptionKind::Email,
        OptionKind::Number { min: Some(-5.0), max: Some(5.0) },
        OptionKind::Bool,
        OptionKind::Choice { choices: vec![("a".into(), "A".into())] },
        OptionKind::MultiChoice { choices: vec![("a".into(), "A".into()), ("b".into(), "B".into())] },
        OptionKind::List,
    ];
    let specs: Vec<OptionSpec> = kinds.into_iter().enumerate().map(|(i, k)| OptionSpec::new(&format!("k{i}"), "K", k)).collect();
    for spec in &specs {
        if let Ok(Some(out)) = spec.validate(&value) {
            assert_eq!(spec.validate(&out), Ok(Some(out.clone())));
        }
    }
    if let Value::Object(form) = &value {
        let _ = validate_form(&specs, form);
    }
});
