//! Picket's benchmark tools: `picket-load` sends events to a running server
//! over HTTP; `picket-pipeline` runs the digest pipeline in process. See
//! `BENCHMARKS.md` at the repository root.

pub mod events;
