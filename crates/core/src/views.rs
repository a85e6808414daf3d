//! Picket's built-in Aggregate Views, on the public [`AggregateView`] trait:
//! Exceptions, Messages, Queries (SQL) and CSP reports. An issue is in a view
//! when one of its events carries the view's interface.

use picket_plugin_api::{register_view, AggregateView, Event};

macro_rules! interface_view {
    ($name:ident, $slug:literal, $singular:literal, $plural:literal, $test:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Default)]
        pub struct $name;
        register_view!($name);
        impl AggregateView for $name {
            fn slug(&self) -> &'static str {
                $slug
            }
            fn name(&self) -> &'static str {
                $singular
            }
            fn name_plural(&self) -> &'static str {
                $plural
            }
            fn should_store(&self, event: &Event) -> bool {
                let test: fn(&Event) -> bool = $test;
                test(event)
            }
        }
    };
}

interface_view!(ExceptionsView, "exceptions", "Exception", "Exceptions", |e| e.interface("exception").is_some(), "Issues with an exception.");
interface_view!(
    MessagesView,
    "messages",
    "Message",
    "Messages",
    |e| e.interface("exception").is_none() && e.interface("logentry").is_some(),
    "Issues from log messages (no exception)."
);
interface_view!(QueriesView, "queries", "Query", "Queries", |e| e.interface("query").is_some(), "Issues with an SQL query.");
interface_view!(CspView, "csp", "CSP report", "CSP reports", |e| e.interface("csp").is_some(), "Content Security Policy violations.");
