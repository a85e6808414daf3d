//! Event processing: turns a raw event payload into a normalized event with
//! its title, culprit, tags and grouping hashes. Pure functions, no I/O; the
//! store applies the results.
//!
//! - [`normalize`]: legacy keys, lenient types, timestamps and clock drift,
//!   levels, platforms, trimming to Relay's limits.
//! - [`title`]: the issue title and culprit (Sentry's rules).
//! - [`grouping`]: fingerprints and the default grouping key (see `docs/grouping.md`).
//! - [`message`]: parameterization of messages for grouping.
//!
//! ```
//! use picket_core::normalize::{normalize, Context};
//! let raw = serde_json::json!({"message": "User 42 failed", "level": 40});
//! let ev = normalize(raw, &Context::at(1_700_000_000.0)).unwrap();
//! assert_eq!(ev.level.as_str(), "error");
//! assert_eq!(ev.title, "User 42 failed");
//! ```

pub mod grouping;
pub mod interfaces;
pub mod message;
pub mod normalize;
pub mod process;
pub mod title;

pub use normalize::{Level, NormalizedEvent};
