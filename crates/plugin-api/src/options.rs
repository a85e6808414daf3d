//! Configuration options: a plugin declares a schema, Picket renders the form,
//! validates what is submitted, stores it per site, per project or per user
//! (under the plugin's slug), and hands the stored values back to the plugin
//! in every hook's context.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// What kind of value an option holds; decides the form field and the validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum OptionKind {
    /// One line of text.
    Text,
    /// Several lines of text.
    Textarea,
    /// A secret (password, token): stored, never sent back to a browser or the API.
    Secret,
    /// An `http` or `https` URL.
    Url,
    /// An e-mail address.
    Email,
    /// A number, optionally bounded.
    Number {
        /// Smallest value allowed.
        min: Option<f64>,
        /// Largest value allowed.
        max: Option<f64>,
    },
    /// On or off.
    Bool,
    /// One of the given values.
    Choice {
        /// `(value, label)` pairs.
        choices: Vec<(String, String)>,
    },
    /// Any number of the given values.
    MultiChoice {
        /// `(value, label)` pairs.
        choices: Vec<(String, String)>,
    },
    /// A list of strings (entered one per line or comma separated).
    List,
}

/// One option of a plugin's form.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct OptionSpec {
    /// Key under which the value is stored (per plugin and scope) and read back. `enabled` is reserved.
    pub key: String,
    /// Label of the form field.
    pub label: String,
    /// What the value is.
    #[serde(flatten)]
    pub kind: OptionKind,
    /// Help text under the field.
    pub help: Option<String>,
    /// Whether a value must be given.
    pub required: bool,
    /// Value used while none is stored.
    pub default: Option<Value>,
}

impl OptionSpec {
    /// An optional field with no default and no help.
    pub fn new(key: &str, label: &str, kind: OptionKind) -> OptionSpec {
        OptionSpec { key: key.into(), label: label.into(), kind, help: None, required: false, default: None }
    }

    /// Marks the field as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Sets the help text.
    pub fn help(mut self, help: &str) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the default value.
    pub fn default_value(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self
    }

    /// True for secrets, which are write-only.
    pub fn is_secret(&self) -> bool {
        matches!(self.kind, OptionKind::Secret)
    }

    /// Checks and normalizes one submitted value. `Ok(None)` means "no value"
    /// (the stored one is removed). The error says what is wrong, for the form.
    pub fn validate(&self, v: &Value) -> Result<Option<Value>, String> {
        let label = &self.label;
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if empty {
            return if self.required { Err(format!("{label} is required")) } else { Ok(None) };
        }
        let text = || match v {
            Value::String(s) => Ok(s.trim().to_string()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(format!("{label} must be text")),
        };
        let out = match &self.kind {
            OptionKind::Text | OptionKind::Secret => {
                let s = text()?;
                if s.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
                    return Err(format!("{label} must be a single line of text, without control characters"));
                }
                Value::String(s)
            }
            OptionKind::Textarea => Value::String(text()?),
            OptionKind::Url => {
                let s = text()?;
                let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
                match rest {
                    Some(r) if !r.is_empty() && !r.starts_with('/') && !s.contains(char::is_whitespace) => Value::String(s),
                    _ => return Err(format!("{label} must be an http:// or https:// URL, got '{s}'")),
                }
            }
            OptionKind::Email => {
                let s = text()?;
                if !is_email(&s) {
                    return Err(format!("{label} must be an e-mail address, got '{s}'"));
                }
                Value::String(s)
            }
            OptionKind::Number { min, max } => {
                let n = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or_else(|| format!("{label} must be a number"))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(format!("{label} must be between {} and {}", min.map_or("-inf".into(), |m| m.to_string()), max.map_or("inf".into(), |m| m.to_string())));
                }
                // Whole numbers stay whole (a port is 25, not 25.0).
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    Value::from(n as i64)
                } else {
                    serde_json::Number::from_f64(n).map(Value::Number).unwrap_or(Value::Null)
                }
            }
            OptionKind::Bool => {
                let word = match v {
                    Value::Bool(b) => Some(*b),
                    Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
                    Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
                    Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                        "true" | "on" | "1" | "yes" => Some(true),
                        "false" | "off" | "0" | "no" => Some(false),
                        _ => None,
                    },
                    _ => None,
                };
                Value::Bool(word.ok_or_else(|| format!("{label} must be true or false (also accepted: on/off, yes/no, 1/0)"))?)
            }
            OptionKind::Choice { choices } => {
                let s = text()?;
                if !choices.iter().any(|(value, _)| *value == s) {
                    return Err(format!("{label} must be one of: {}", choices.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", ")));
                }
                Value::String(s)
            }
            OptionKind::MultiChoice { choices } => {
                let items = list_items(v).ok_or_else(|| format!("{label} must be a list"))?;
                for item in &items {
                    if !choices.iter().any(|(value, _)| value == item) {
                        return Err(format!("{label}: '{item}' is not one of: {}", choices.iter().map(|c| c.0.as_str()).collect::<Vec<_>>().join(", ")));
                    }
                }
                Value::Array(items.into_iter().map(Value::String).collect())
            }
            OptionKind::List => Value::Array(list_items(v).ok_or_else(|| format!("{label} must be a list"))?.into_iter().map(Value::String).collect()),
        };
        // A list of nothing but separators (`","`) is no value, like an empty one.
        if out.as_array().is_some_and(|a| a.is_empty()) {
            return if self.required { Err(format!("{label} is required")) } else { Ok(None) };
        }
        Ok(Some(out))
    }
}

/// A list given as a JSON array or as text, one item per line or comma separated.
fn list_items(v: &Value) -> Option<Vec<String>> {
    let items: Vec<String> = match v {
        Value::Array(a) => a.iter().filter(|x| !x.is_null()).map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect(),
        Value::String(s) => s.split([',', '\n']).map(str::to_string).collect(),
        _ => return None,
    };
    Some(items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !s.contains(char::is_whitespace) && !domain.contains('@')
        }
        None => false,
    }
}

/// The stored option values a hook sees, with the schema's defaults filled in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionValues(BTreeMap<String, Value>);

impl OptionValues {
    /// Values from stored ones, with defaults for what is not stored.
    pub fn with_defaults(specs: &[OptionSpec], stored: BTreeMap<String, Value>) -> OptionValues {
        let mut values = stored;
        for s in specs {
            if let Some(d) = &s.default {
                values.entry(s.key.clone()).or_insert_with(|| d.clone());
            }
        }
        OptionValues(values)
    }

    /// Any value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A text value; `None` when absent, empty or not text.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// A boolean; `false` when absent.
    pub fn bool(&self, key: &str) -> bool {
        self.0.get(key).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(Value::as_f64)
    }

    /// A list of strings; empty when absent.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.0.get(key).and_then(list_items).unwrap_or_default()
    }

    /// Iterates over all values.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

/// A value to store for a key (`None` removes it).
pub type OptionUpdate = (String, Option<Value>);

/// Errors of a form, by field key.
pub type FormErrors = BTreeMap<String, String>;

/// Validates a whole submitted form against a schema. Keys not in the schema
/// are refused (a typo must not be silently ignored); every error is
/// reported, keyed by field. Secrets left empty (or blank) keep their stored
/// value, which is what a form that never shows secrets sends back; `null`
/// removes one.
pub fn validate_form(specs: &[OptionSpec], submitted: &serde_json::Map<String, Value>) -> Result<Vec<OptionUpdate>, FormErrors> {
    let mut errors = BTreeMap::new();
    let mut out = Vec::new();
    for key in submitted.keys() {
        if !specs.iter().any(|s| &s.key == key) {
            let known = if specs.is_empty() { "this form has no options".to_string() } else { format!("the options are: {}", specs.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ")) };
            errors.insert(key.clone(), format!("unknown option '{key}'; {known}"));
        }
    }
    for spec in specs {
        match submitted.get(&spec.key) {
            None => {}
            Some(v) if spec.is_secret() && v.as_str().is_some_and(|s| s.trim().is_empty()) => {}
            Some(v) => match spec.validate(v) {
                Ok(value) => out.push((spec.key.clone(), value)),
                Err(e) => {
                    errors.insert(spec.key.clone(), e);
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_validates_and_normalizes() {
        let url = OptionSpec::new("u", "URL", OptionKind::Url);
        assert_eq!(url.validate(&json!(" https://x.example/hook ")).unwrap(), Some(json!("https://x.example/hook")));
        assert!(url.validate(&json!("ftp://x")).unwrap_err().contains("http://"));
        assert!(url.validate(&json!("https://")).is_err());
        let email = OptionSpec::new("e", "E-mail", OptionKind::Email);
        assert!(email.validate(&json!("a@b.co")).is_ok());
        assert!(email.validate(&json!("a@b")).is_err());
        let n = OptionSpec::new("n", "Retries", OptionKind::Number { min: Some(0.0), max: Some(10.0) });
        assert_eq!(n.validate(&json!("3")).unwrap(), Some(json!(3)));
        assert_eq!(n.validate(&json!(2.5)).unwrap(), Some(json!(2.5)));
        assert!(n.validate(&json!(11)).unwrap_err().contains("between 0 and 10"));
        let b = OptionSpec::new("b", "On", OptionKind::Bool);
        assert_eq!(b.validate(&json!("on")).unwrap(), Some(json!(true)));
        assert_eq!(b.validate(&json!(" YES ")).unwrap(), Some(json!(true)));
        assert_eq!(b.validate(&json!(0)).unwrap(), Some(json!(false)));
        assert!(b.validate(&json!("maybe")).unwrap_err().contains("on/off"));
        let c = OptionSpec::new("c", "Level", OptionKind::Choice { choices: vec![("error".into(), "Error".into())] });
        assert!(c.validate(&json!("debug")).unwrap_err().contains("one of: error"));
        let l = OptionSpec::new("l", "Emails", OptionKind::List);
        assert_eq!(l.validate(&json!("a@x.io, b@x.io\nc@x.io")).unwrap(), Some(json!(["a@x.io", "b@x.io", "c@x.io"])));
        let t = OptionSpec::new("t", "Name", OptionKind::Text).required();
        assert_eq!(t.validate(&json!("  ")).unwrap_err(), "Name is required");
        assert!(t.validate(&json!("a\nb")).is_err());
        assert!(t.validate(&json!("a\u{0}b")).is_err());
        assert!(t.validate(&json!("a\u{2028}b")).is_err());
        assert_eq!(l.validate(&json!([1, true, null, "x"])).unwrap(), Some(json!(["1", "true", "x"])));
    }

    #[test]
    fn a_list_of_separators_is_no_value() {
        // Found by the `plugin_options` fuzz target: "," became [] which then read back as no value.
        let l = OptionSpec::new("l", "Emails", OptionKind::List);
        assert_eq!(l.validate(&json!(",")).unwrap(), None);
        assert_eq!(l.validate(&json!(" ,\n , ")).unwrap(), None);
        assert_eq!(l.clone().required().validate(&json!(",")).unwrap_err(), "Emails is required");
        let m = OptionSpec::new("m", "Levels", OptionKind::MultiChoice { choices: vec![("a".into(), "A".into())] });
        assert_eq!(m.validate(&json!([" "])).unwrap(), None);
    }

    #[test]
    fn forms_refuse_unknown_keys_and_keep_empty_secrets() {
        let specs = vec![OptionSpec::new("token", "Token", OptionKind::Secret), OptionSpec::new("url", "URL", OptionKind::Url)];
        let form = json!({"token": "  ", "url": "http://h.example/"});
        let ok = validate_form(&specs, form.as_object().unwrap()).unwrap();
        assert_eq!(ok, vec![("url".to_string(), Some(json!("http://h.example/")))]);
        let bad = json!({"tokn": "x", "url": "nope"});
        let errors = validate_form(&specs, bad.as_object().unwrap()).unwrap_err();
        assert!(errors["tokn"].contains("the options are: token, url"));
        assert!(errors.contains_key("url"));
    }

    #[test]
    fn defaults_fill_what_is_not_stored() {
        let specs = vec![OptionSpec::new("level", "Level", OptionKind::Text).default_value("error")];
        let v = OptionValues::with_defaults(&specs, BTreeMap::new());
        assert_eq!(v.str("level"), Some("error"));
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            "\\PC{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ])
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics_and_its_output_validates_again(v in any_json()) {
            let kinds = [
                OptionKind::Text, OptionKind::Textarea, OptionKind::Secret, OptionKind::Url, OptionKind::Email,
                OptionKind::Number { min: Some(0.0), max: Some(10.0) }, OptionKind::Bool,
                OptionKind::Choice { choices: vec![("a".into(), "A".into())] },
                OptionKind::MultiChoice { choices: vec![("a".into(), "A".into())] }, OptionKind::List,
            ];
            for kind in kinds {
                let spec = OptionSpec::new("k", "K", kind);
                if let Ok(Some(out)) = spec.validate(&v) {
                    // What was stored is accepted again as is: forms round-trip.
                    proptest::prop_assert_eq!(spec.validate(&out).unwrap(), Some(out.clone()));
                }
            }
        }
    }
}
