//! Event Filters: the facets of the issue stream's sidebar (status, level,
//! logger, ...). A filter has a query parameter, a list of choices with
//! counts, a condition it adds to the store's query, and a widget.
//!
//! Register a filter for every project with
//! [`register_filter!`](crate::register_filter), or return filters for
//! some projects from [`Plugin::get_filters`](crate::Plugin::get_filters).

use serde::Serialize;

use crate::html::{escape, Html};
use crate::model::ProjectRef;
use crate::plugin::HookResult;

/// Which listing a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FilterTarget {
    /// The issue stream.
    Issues,
    /// The list of events.
    Events,
}

/// One choice of a filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Choice {
    /// The query parameter's value.
    pub value: String,
    /// What the sidebar shows.
    pub label: String,
    /// Issues (or events) with this value, when known.
    pub count: Option<i64>,
}

impl Choice {
    /// A choice.
    pub fn new(value: impl Into<String>, label: impl Into<String>, count: Option<i64>) -> Choice {
        Choice { value: value.into(), label: label.into(), count }
    }
}

/// A condition a filter adds to the store's query.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// The issue's status (`unresolved`, `resolved`, `ignored`).
    Status(String),
    /// A tag value, as sent or derived (`level`, `logger`, `server_name`, `release`, any key).
    Tag {
        /// Tag key.
        key: String,
        /// Tag value.
        value: String,
    },
    /// Issues in an aggregate view (by slug).
    View(String),
    /// Free text in the title, culprit or message.
    Text(String),
}

/// What a filter may ask the store while listing its choices.
pub trait FilterData {
    /// Values of a tag in the project with the number of issues having each, most first.
    fn tag_values(&self, key: &str, limit: usize) -> Vec<(String, i64)>;
    /// Issues per status in the project.
    fn status_counts(&self) -> Vec<(String, i64)>;
}

/// Context of a filter's calls.
#[non_exhaustive]
pub struct FilterContext<'a> {
    /// The project listed.
    pub project: &'a ProjectRef,
    /// Counts from the store.
    pub data: &'a dyn FilterData,
}

impl<'a> FilterContext<'a> {
    /// A context (for Picket and for tests).
    pub fn new(project: &'a ProjectRef, data: &'a dyn FilterData) -> FilterContext<'a> {
        FilterContext { project, data }
    }
}

/// A filter of the issue stream or the event list.
pub trait EventFilter: Send + Sync + 'static {
    /// The query parameter (`level`); also identifies the filter.
    fn query_param(&self) -> String;

    /// The sidebar heading (`Level`).
    fn label(&self) -> String;

    /// Value used when the parameter is absent (the status filter's `unresolved`).
    fn default_value(&self) -> Option<String> {
        None
    }

    /// Listings this filter applies to.
    fn targets(&self) -> &'static [FilterTarget] {
        &[FilterTarget::Issues, FilterTarget::Events]
    }

    /// The choices, most useful first (at most 100 are shown).
    fn choices(&self, ctx: &FilterContext<'_>) -> HookResult<Vec<Choice>>;

    /// The condition for a chosen value; `None` ignores the value.
    fn condition(&self, value: &str) -> Option<Condition>;

    /// The sidebar widget: by default an "Any" link (`param=`, which turns the
    /// filter's default off) and one link per choice. `query` is the current
    /// query string without this filter's parameter.
    fn widget(&self, query: &str, current: Option<&str>, choices: &[Choice]) -> Html {
        choice_list(&self.query_param(), &self.label(), query, current, choices)
    }
}

/// The default widget: a list of links, the current choice marked.
pub fn choice_list(param: &str, label: &str, query: &str, current: Option<&str>, choices: &[Choice]) -> Html {
    let sep = if query.is_empty() { "" } else { "&" };
    let mut out = format!("<ul class=\"filter-list\" data-filter=\"{}\">", escape(param));
    // "Any" says so explicitly (`param=`), so that a filter's default does not apply.
    let any_class = if current.is_none_or(str::is_empty) { " class=\"active\"" } else { "" };
    let any_href = format!("?{query}{sep}{}=", url_encode(param));
    out.push_str(&format!("<li{any_class}><a href=\"{}\">Any {}</a></li>", escape(&any_href), escape(label)));
    for c in choices {
        let class = if current == Some(c.value.as_str()) { " class=\"active\"" } else { "" };
        let href = format!("?{query}{sep}{}={}", url_encode(param), url_encode(&c.value));
        let count = c.count.map(|n| format!(" <span class=\"count\">{n}</span>")).unwrap_or_default();
        out.push_str(&format!("<li{class}><a href=\"{}\">{}</a>{count}</li>", escape(&href), escape(&c.label)));
    }
    out.push_str("</ul>");
    Html::trusted(out)
}

/// Percent-encodes a query-string component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widget_escapes_values_and_encodes_links() {
        let html = choice_list("server_name", "Server", "is=1", Some("a"), &[Choice::new("a", "a", Some(3)), Choice::new("<x&y>", "<x&y>", None)]);
        let s = html.as_str();
        assert!(s.contains("href=\"?is=1&amp;server_name=%3Cx%26y%3E\""), "{s}");
        assert!(s.contains(">&lt;x&amp;y&gt;</a>"), "{s}");
        assert!(s.contains("<li class=\"active\"><a href=\"?is=1&amp;server_name=a\">a</a> <span class=\"count\">3</span>"), "{s}");
    }
}
