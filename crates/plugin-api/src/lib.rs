//! The public extension API of Picket: what a plugin author depends on.
//!
//! Four kinds of extension, as in Sentry's classic "Writing a Plugin", plus permissions:
//!
//! | kind | trait | register with |
//! |---|---|---|
//! | Plugins (hooks into pages, the pipeline and notifications) | [`Plugin`] | [`register_plugin!`] |
//! | Data Interfaces (typed parts of an event) | [`Interface`] | [`register_interface!`] |
//! | Event Filters (facets of the issue stream) | [`EventFilter`] | [`register_filter!`] |
//! | Aggregate Views (tabs of the issue stream) | [`AggregateView`] | [`register_view!`] |
//! | Permissions | [`Plugin::has_perm`] | — |
//!
//! [`bases`] has ready-made plugin kinds built on [`Plugin`] (an issue tracker).
//!
//! Registration happens at link time: a crate that uses these macros and is
//! linked into a Picket binary is installed; nothing in Picket's core
//! changes. Picket's own built-in interfaces, filters, views and plugins are
//! written against this same API. The guide is `docs/plugins.md`.
//!
//! ```
//! use picket_plugin_api::{register_plugin, Html, HookResult, IssueContext, Plugin, PluginMeta};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn meta(&self) -> PluginMeta {
//!         PluginMeta::new("Hello").version("1.0.0").author("Me", None).enabled_by_default()
//!     }
//!     fn widget(&self, ctx: &IssueContext) -> HookResult<Option<Html>> {
//!         // Event data is hostile: Html::text escapes it.
//!         Ok(Some(Html::text(&format!("Hello from {}", ctx.issue.title))))
//!     }
//! }
//!
//! register_plugin!(Hello);
//! ```
//!
//! Stability: every context and data struct is `#[non_exhaustive]` and every
//! hook has a default, so new fields and hooks are not breaking changes.
#![warn(missing_docs)]

pub mod bases;
pub mod filter;
pub mod html;
pub mod interface;
pub mod model;
pub mod options;
pub mod perm;
pub mod plugin;
pub mod registry;
pub mod view;

pub use filter::{Choice, Condition, EventFilter, FilterContext, FilterData, FilterTarget};
pub use html::{Html, Template, TemplateError};
pub use interface::{GroupingContext, Interface, NormalizeContext};
pub use model::{Event, IssueRef, Link, ProjectRef, UserRef};
pub use options::{OptionKind, OptionSpec, OptionValues};
pub use perm::Permission;
pub use view::AggregateView;
pub use plugin::{
    EventContext, HookResult, IssueContext, IssueListContext, Member, PermContext, Plugin, PluginError, PluginMeta, PostProcessContext, ProjectContext,
    ViewBody, ViewContext, ViewResponse,
};
pub use registry::{HookFailure, Registry};
pub use serde_json;

#[doc(hidden)]
pub use inventory as __inventory;

/// Registers a plugin type (which must implement `Default`) at link time.
///
/// `register_plugin!(MyPlugin);`
#[macro_export]
macro_rules! register_plugin {
    ($ty:ty) => {
        $crate::__inventory::submit! {
            $crate::registry::PluginRegistration {
                make: || ::std::boxed::Box::new(<$ty as ::core::default::Default>::default()),
                module: ::core::module_path!(),
            }
        }
    };
}

/// Registers a data interface type (which must implement `Default`) at link time.
#[macro_export]
macro_rules! register_interface {
    ($ty:ty) => {
        $crate::__inventory::submit! {
            $crate::registry::InterfaceRegistration {
                make: || ::std::boxed::Box::new(<$ty as ::core::default::Default>::default()),
                module: ::core::module_path!(),
            }
        }
    };
}

/// Registers an event filter type (which must implement `Default`) for every project.
#[macro_export]
macro_rules! register_filter {
    ($ty:ty) => {
        $crate::__inventory::submit! {
            $crate::registry::FilterRegistration {
                make: || ::std::boxed::Box::new(<$ty as ::core::default::Default>::default()),
                module: ::core::module_path!(),
            }
        }
    };
}

/// Registers an aggregate view type (which must implement `Default`).
#[macro_export]
macro_rules! register_view {
    ($ty:ty) => {
        $crate::__inventory::submit! {
            $crate::registry::ViewRegistration {
                make: || ::std::boxed::Box::new(<$ty as ::core::default::Default>::default()),
                module: ::core::module_path!(),
            }
        }
    };
}
