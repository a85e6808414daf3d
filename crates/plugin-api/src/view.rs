//! Aggregate Views: other ways of looking at a project's issues. Each view
//! decides, for every incoming event, whether the event's issue belongs to
//! it; the stream then offers "All" plus one tab per view.

use crate::model::Event;

/// A view of issues, registered with [`register_view!`](crate::register_view).
pub trait AggregateView: Send + Sync + 'static {
    /// Stable identifier, used in URLs and in the store (`exceptions`).
    fn slug(&self) -> &'static str;
    /// Singular name (`Exception`).
    fn name(&self) -> &'static str;
    /// Plural name, the tab's label (`Exceptions`).
    fn name_plural(&self) -> &'static str;
    /// Whether the issue of `event` belongs to this view. Asked for every
    /// event before it is stored: keep it cheap. Once in a view, an issue stays.
    fn should_store(&self, event: &Event) -> bool;
}
