//! Event processing: turns a raw event payload into a normalized event with
//! its title, culprit, tags and grouping hashes. Pure functions, no I/O; the
//! store applies the results.
//!
//! - [`normalize`]: legacy keys, lenient types, timestamps and clock drift,
//!   levels, platforms, trimming to Relay's limits.
//! - [`title`]: the issue title and culprit (Sentry's rules).
//! - [`grouping`]: fingerprints and the default grouping key (see `docs/grouping.md`).
//! - [`message`]: parameterization of messages for grouping.
//! - [`interfaces`], [`filters`], [`views`]: the built-in Data Interfaces, Event
//!   Filters and Aggregate Views, on the public `picket-plugin-api` traits.
//! - [`plugins`]: running plugins' hooks on events; the authorization function.
//!
//! ```
//! use picket_core::normalize::{normalize, Context};
//! let raw = serde_json::json!({"message": "User 42 failed", "level": 40});
//! let ev = normalize(raw, &Context::at(1_700_000_000.0)).unwrap();
//! assert_eq!(ev.level.as_str(), "error");
//! assert_eq!(ev.title, "User 42 failed");
//! ```

pub mod filters;
pub mod grouping;
pub mod interfaces;
pub mod message;
pub mod normalize;
pub mod plugins;
pub mod process;
pub mod title;
pub mod views;

pub use normalize::{Level, NormalizedEvent};
