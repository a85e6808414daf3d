//! End-to-end tests: each starts the real `picket` binary in its own
//! directory on its own port and talks to it over HTTP.
//!
//! - `harness`: starting, stopping and querying a server.
//! - `replay`: raw requests captured from real SDKs, replayed byte for byte.
//! - `ingest_errors`: every error answer of the ingest endpoints.
//! - `api`: the `/api/0/` API (search, status changes, pagination, auth).
//! - `durability`: SIGKILL under load loses no acknowledged event.
//! - `sdks`: the real, unmodified Python and Node SDKs installed from the registries.
//! - `sdk_rust`: the real Rust `sentry` crate.
//! - `cli`: the admin commands and configuration errors.
//! - `plugins`: the built-in plugins against real peers (HTTP receiver, SMTP server).

mod api;
mod cli;
mod durability;
mod harness;
mod ingest_errors;
mod replay;
mod sdk_rust;
mod plugins;
mod sdks;
