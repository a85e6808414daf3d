//! Data Interfaces: the typed parts of an event (`exception`, `request`,
//! `user`, ...). An interface owns one top-level key of the payload (and its
//! aliases, such as the legacy `sentry.interfaces.Http`). It normalizes its
//! part on the way in, may contribute the grouping key, renders itself on the
//! issue page and in e-mails, and offers search terms.
//!
//! Picket's own interfaces are written against this trait; a plugin adds one
//! for a new key with [`register_interface!`](crate::register_interface). A
//! key no interface claims is kept as raw data and shown as JSON.

use serde_json::{Map, Value};

use crate::html::Html;

/// Facts an interface may need while normalizing.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NormalizeContext {
    /// When Picket received the event (Unix seconds).
    pub received: f64,
    /// Seconds to add to the client's timestamps (clock drift correction).
    pub clock_drift: f64,
    /// The sender's IP address, for `{{auto}}`.
    pub client_ip: Option<String>,
}

impl NormalizeContext {
    /// A context (for Picket and for tests).
    pub fn new(received: f64, clock_drift: f64, client_ip: Option<String>) -> NormalizeContext {
        NormalizeContext { received, clock_drift, client_ip }
    }
}

/// Facts an interface may need for its grouping component.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GroupingContext<'a> {
    /// The event's platform (`python`, `javascript`, ...).
    pub platform: &'a str,
    /// Only in-app frames count (the "app" variant); false for the "system" variant.
    pub in_app_only: bool,
    /// The whole event, for interfaces that mix in others' data.
    pub event: &'a Map<String, Value>,
}

impl<'a> GroupingContext<'a> {
    /// A context (for Picket and for tests).
    pub fn new(platform: &'a str, in_app_only: bool, event: &'a Map<String, Value>) -> GroupingContext<'a> {
        GroupingContext { platform, in_app_only, event }
    }
}

/// A typed part of an event.
pub trait Interface: Send + Sync + 'static {
    /// The payload key (`"request"`).
    fn key(&self) -> &'static str;

    /// Other keys meaning the same (`"sentry.interfaces.Http"`); moved to [`Interface::key`] on the way in.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Heading on the issue page and in e-mails (`"Request"`).
    fn title(&self) -> &'static str;

    /// Order of grouping and display, highest first: the interface with the
    /// highest score that returns a grouping component decides the group.
    /// Picket's: exception 2000, threads 1010, stacktrace 1000, csp 900, template 800,
    /// request 700, user 300, breadcrumbs 100, message (`logentry`), query, contexts
    /// and debug_meta 0. Equal scores are ordered by key: pick a distinct score.
    fn score(&self) -> i32 {
        0
    }

    /// Validates and normalizes the value in place. An error drops the value
    /// (noted in the event's `errors`); the rest of the event is kept.
    fn normalize(&self, _value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        Ok(())
    }

    /// The grouping key this interface proposes, or `None` for no opinion.
    /// Events with the same key (and no fingerprint) form one issue.
    fn grouping_component(&self, _value: &Value, _ctx: &GroupingContext<'_>) -> Option<String> {
        None
    }

    /// The value as HTML for the issue page. The default shows it as JSON, escaped.
    fn to_html(&self, value: &Value) -> Html {
        Html::trusted(format!("<pre class=\"interface-json\">{}</pre>", crate::html::escape(&serde_json::to_string_pretty(value).unwrap_or_default())))
    }

    /// The value as plain text for e-mails and tickets; `None` leaves it out.
    fn to_text(&self, _value: &Value) -> Option<String> {
        None
    }

    /// Words under which the event is found by free-text search.
    fn search_terms(&self, _value: &Value) -> Vec<String> {
        Vec::new()
    }
}
