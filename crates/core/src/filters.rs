//! Picket's built-in Event Filters, on the public [`EventFilter`] trait:
//! status, level, logger, server, site, release and environment, plus one
//! generated for every other tag key of a project ([`TagFilter`]).

use picket_plugin_api::{register_filter, Choice, Condition, EventFilter, FilterContext, FilterTarget, HookResult};

/// The issue's status; the stream shows unresolved issues unless told otherwise.
#[derive(Default)]
pub struct StatusFilter;
register_filter!(StatusFilter);

impl EventFilter for StatusFilter {
    fn query_param(&self) -> String {
        "status".into()
    }
    fn label(&self) -> String {
        "Status".into()
    }
    fn default_value(&self) -> Option<String> {
        Some("unresolved".into())
    }
    fn targets(&self) -> &'static [FilterTarget] {
        &[FilterTarget::Issues]
    }
    fn choices(&self, ctx: &FilterContext<'_>) -> HookResult<Vec<Choice>> {
        let counts = ctx.data.status_counts();
        Ok(["unresolved", "resolved", "ignored"]
            .iter()
            .map(|s| {
                let n = counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
                let label = format!("{}{}", s[..1].to_uppercase(), &s[1..]);
                Choice::new(*s, label, Some(n))
            })
            .collect())
    }
    /// Any value: an unknown status is refused by the search with the list of statuses.
    fn condition(&self, value: &str) -> Option<Condition> {
        Some(Condition::Status(value.to_string()))
    }
}

/// A filter on a tag's value, with the project's values as choices.
pub struct TagFilter {
    key: String,
    label: String,
}

impl TagFilter {
    /// A filter for tag `key`, labelled `server_name` → `Server Name` unless given.
    pub fn new(key: &str, label: Option<&str>) -> TagFilter {
        let label = label.map(str::to_string).unwrap_or_else(|| {
            key.split(['_', '.'])
                .filter(|w| !w.is_empty())
                .map(|w| format!("{}{}", w[..1].to_uppercase(), &w[1..]))
                .collect::<Vec<_>>()
                .join(" ")
        });
        TagFilter { key: key.into(), label }
    }
}

impl EventFilter for TagFilter {
    fn query_param(&self) -> String {
        self.key.clone()
    }
    fn label(&self) -> String {
        self.label.clone()
    }
    fn choices(&self, ctx: &FilterContext<'_>) -> HookResult<Vec<Choice>> {
        Ok(ctx.data.tag_values(&self.key, 100).into_iter().map(|(v, n)| Choice::new(v.clone(), v, Some(n))).collect())
    }
    fn condition(&self, value: &str) -> Option<Condition> {
        (!value.is_empty()).then(|| Condition::Tag { key: self.key.clone(), value: value.to_string() })
    }
}

macro_rules! builtin_tag_filter {
    ($name:ident, $key:literal, $label:literal) => {
        #[doc = concat!("The `", $key, "` tag.")]
        pub struct $name(TagFilter);
        impl Default for $name {
            fn default() -> Self {
                $name(TagFilter::new($key, Some($label)))
            }
        }
        register_filter!($name);
        impl EventFilter for $name {
            fn query_param(&self) -> String {
                self.0.query_param()
            }
            fn label(&self) -> String {
                self.0.label()
            }
            fn choices(&self, ctx: &FilterContext<'_>) -> HookResult<Vec<Choice>> {
                self.0.choices(ctx)
            }
            fn condition(&self, value: &str) -> Option<Condition> {
                self.0.condition(value)
            }
        }
    };
}

builtin_tag_filter!(LevelFilter, "level", "Level");
builtin_tag_filter!(LoggerFilter, "logger", "Logger");
builtin_tag_filter!(ServerFilter, "server_name", "Server");
builtin_tag_filter!(SiteFilter, "site", "Site");
builtin_tag_filter!(ReleaseFilter, "release", "Release");
builtin_tag_filter!(EnvironmentFilter, "environment", "Environment");
