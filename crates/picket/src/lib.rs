//! `picket`: a self-hosted error tracker for the Sentry SDKs.
//!
//! The workspace, one crate per stage of an event's life:
//! - `picket-protocol`: the wire format (DSN, auth, envelopes, bodies). No I/O.
//! - `picket-core`: normalization, titles, grouping, processing of envelopes. No I/O.
//!   (Used by the store and the server; this crate does not call it directly.)
//! - `picket-store`: SQLite storage, the durable queue, digest application, queries.
//! - `picket-server`: HTTP ingest, the `/api/0/` API, the digest worker.
//! - `picket-plugin-api`: the public extension API (plugins, interfaces, filters, views).
//! - `picket-plugins`: the built-in plugins (tags, mail, webhooks, Slack, Discord, issue tracker).
//! - `picket` (this crate): the command line and configuration; [`main`] is the entry point.

mod cli;
mod config;
mod plugins_cmd;

use std::process::ExitCode;

/// mimalloc: less time in malloc/free on the hot path and less fragmentation
/// across threads than the system allocator (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps this process off transparent huge pages, whatever the system's
/// setting. In a 2 MiB huge page, the 64 KiB pieces that mimalloc gives back
/// stay resident: over 1,000,000 events peak RSS was 160 MiB with them and
/// 106 MiB without, for the same CPU (BENCHMARKS.md, session 9). mimalloc is
/// built not to ask for them (`no_thp`); this covers systems whose setting
/// is `always`. Only faults from here on are affected, which is all but the
/// first few allocations.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes one integer flag and touches no memory
    // of ours; the unused arguments are zero, as the interface requires.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

extern "C" {
    /// mimalloc's own function (the `mimalloc` crate links it in but does
    /// not bind it): frees what the calling thread's heap holds for reuse
    /// and, with `force`, gives it back to the system at once.
    fn mi_collect(force: bool);
}

/// What the digest calls after processing a large batch on one of its
/// threads (see `picket_server::worker::set_release_memory`).
fn release_thread_memory() {
    // SAFETY: mi_collect takes a plain bool and acts on the calling
    // thread's heap of the allocator this binary uses (`GLOBAL`).
    unsafe { mi_collect(true) }
}

/// Runs the `picket` command line. A distribution that links more plugins
/// has a `main` that references its plugin crates and calls this.
pub fn main() -> ExitCode {
    no_transparent_huge_pages();
    picket_server::worker::set_release_memory(release_thread_memory);
    picket_plugins::link();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("picket: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The whole chain, "what failed: why: ...", each part once: many errors
/// repeat their cause in their own message (SQLite's, `tracing`'s).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !out.contains(&cause) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&cause);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_says_each_cause_once() {
        let e = anyhow::anyhow!("file is not a database").context("database error: file is not a database").context("cannot open the database 'x'");
        assert_eq!(super::error_chain(&e), "cannot open the database 'x': database error: file is not a database");
        let e = anyhow::anyhow!("disk full").context("cannot write");
        assert_eq!(super::error_chain(&e), "cannot write: disk full");
    }
}
