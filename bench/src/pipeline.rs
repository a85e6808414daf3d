//! `picket-pipeline`: runs Picket's digest pipeline in process, without HTTP,
//! on the same events as `picket-load`, and reports what each stage costs.
//!
//! The stages are the server's own functions, in the server's order, one
//! batch at a time:
//! 1. `process`: parse, normalize, group (`picket_core::process::process_envelope`);
//! 2. `prepare`: serialize and compress what is stored (`picket_store::digest::prepare`);
//! 3. `write`: the batch's SQL and its commit on the writer thread
//!    (`picket_store::digest::apply` inside `Store::write`), fsync included;
//! 4. `release`: freeing what is left of the batch (the server does it after
//!    post-processing; with `--post-process skip` the payloads are already
//!    freed in `prepare`).
//!
//! The server runs these on different threads at once; here they run one
//! after another so that each is measured alone. The event ids and payloads
//! come from a seeded generator, so two builds do the same work: under
//! `valgrind --tool=callgrind` the instruction counts of an A/B pair are
//! comparable to a fraction of a percent, where wall-clock figures on a
//! shared VM drift by ±15% (see `BENCHMARKS.md`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use picket_bench::events::{envelope, payloads};
use picket_core::process::{process_envelope, Origin};
use picket_store::tags::TagsInBatch;
use picket_store::{accounts, digest, Durability, Store};
use rand::SeedableRng;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Runs Picket's digest pipeline in process and reports the cost of each stage")]
struct Args {
    /// Events to process.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Distinct issues the events spread over.
    #[arg(long, default_value_t = 100)]
    issues: usize,
    /// Approximate size of one event's JSON, in KB.
    #[arg(long, default_value_t = 5)]
    size_kb: usize,
    /// Envelopes per digest batch (the server's `digest.batch_size`).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// `full` (fsync on every commit, the server's default) or `normal`.
    #[arg(long, default_value = "full")]
    durability: String,
    /// `skip` (the project has no plugin with a `post_process`, like a new
    /// project: event payloads are freed in `prepare`) or `queue` (a job row
    /// per event, and payloads kept for post-processing).
    #[arg(long, default_value = "skip")]
    post_process: String,
    /// Write the tag counts every this many batches, keeping them back in
    /// between, as the server does under sustained load (it writes them
    /// about once a second: some 18 batches of 256 at 4,500 events/s). 1
    /// writes each batch's own, as the server does below saturation.
    #[arg(long, default_value_t = 1)]
    tags_every: usize,
    /// Directory for the database (a fresh temporary one if not given).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

/// A uniformly spread 128-bit event id for event `n` (SplitMix64 twice), so
/// that the event-id index sees the same random keys as from real SDKs.
fn event_id(n: u64) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(n.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1));
    let b = mix(a ^ 0x5851_f42d_4c95_7f2d);
    format!("{a:016x}{b:016x}")
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.events > 0 && args.issues > 0 && args.batch > 0 && args.tags_every > 0, "--events, --issues, --batch and --tags-every must be at least 1");
    let durability = match args.durability.as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => anyhow::bail!("--durability must be 'full' or 'normal', not '{other}'"),
    };
    let post_process = match args.post_process.as_str() {
        "skip" => digest::PostProcess::Skip,
        "queue" => digest::PostProcess::Queue,
        other => anyhow::bail!("--post-process must be 'skip' or 'queue', not '{other}'"),
    };
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("picket-pipeline-{}", std::process::id()));
            temp.clone()
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let store = Store::open(&dir.join("picket.sqlite3"), durability)?;
    let project_id = store.write_blocking(|c| {
        accounts::create_org(c, "bench", "bench")?;
        Ok(accounts::create_project(c, "bench", "pipeline", "pipeline", None)?.0.id)
    })?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let payloads = payloads(args.issues, args.size_kb, &mut rng);
    let average_json = payloads.iter().map(String::len).sum::<usize>() / payloads.len();

    let (mut process, mut prepare, mut write, mut release) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut stored = 0usize;
    let started = Instant::now();
    let mut n = 0usize;
    let mut kept_back = picket_store::tags::TagCounts::default();
    let mut batches = 0usize;
    while n < args.events {
        let end = (n + args.batch).min(args.events);
        let bodies: Vec<Vec<u8>> = (n..end).map(|i| envelope(&event_id(i as u64), &payloads[i % payloads.len()])).collect();
        let t = Instant::now();
        let processed: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(k, body)| {
                let origin = Origin { queue_id: (n + k + 1) as i64, project_id, received: 1.7e9 + (n + k) as f64 / 1000.0, client_ip: None, sdk_client: None };
                process_envelope(&origin, body)
            })
            .collect();
        process += t.elapsed();
        let t = Instant::now();
        let items = digest::prepare(processed, post_process, store.dictionaries());
        prepare += t.elapsed();
        // As the server does once a project has enough events (not timed:
        // the server trains on another thread, once per project).
        if let Some((project_id, samples)) = store.dictionaries().take_samples() {
            picket_store::dictionary::train_and_install(&store, project_id, samples)?;
        }
        let t = Instant::now();
        // Like the server, take the batch back from the writer: its events go
        // on to post-processing and are freed there, not on the writer thread.
        batches += 1;
        let write_tags = batches.is_multiple_of(args.tags_every) || end == args.events;
        let (outcomes, items, batch_tags, kept) = store.write_blocking(move |c| {
            let tags = if write_tags { TagsInBatch::Write { kept_back: &kept_back } } else { TagsInBatch::KeepBack };
            let (outcomes, batch_tags) = digest::apply_with(c, &items, tags)?;
            Ok((outcomes, items, batch_tags, kept_back))
        })?;
        kept_back = kept;
        kept_back.committed(write_tags, batch_tags);
        write += t.elapsed();
        stored += outcomes.len();
        let t = Instant::now();
        drop(items);
        release += t.elapsed();
        n = end;
    }
    let total = started.elapsed();
    store.close();
    let disk: u64 = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    anyhow::ensure!(stored == args.events, "stored {stored} of {} events: the pipeline lost or merged some", args.events);

    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / args.events as f64;
    let report = json!({
        "events": args.events,
        "issues": args.issues,
        "event_json_bytes": average_json,
        "batch": args.batch,
        "tags_every": args.tags_every,
        "us_per_event": {
            "process": per_event(process),
            "prepare": per_event(prepare),
            "write": per_event(write),
            "release": per_event(release),
            "total": per_event(total),
        },
        "events_per_sec_one_thread": args.events as f64 / total.as_secs_f64(),
        "disk_bytes_per_event": disk / args.events as u64,
    });
    if args.json {
        println!("{report}");
    } else {
        let us = &report["us_per_event"];
        println!("{} events of {:.1} KB over {} issues, batches of {}", args.events, average_json as f64 / 1024.0, args.issues, args.batch);
        for stage in ["process", "prepare", "write", "release", "total"] {
            println!("  {stage:<8} {:>8.1} µs/event", us[stage].as_f64().unwrap_or(0.0));
        }
        println!("  {:.0} events/s on one thread, {} bytes of disk per event", report["events_per_sec_one_thread"].as_f64().unwrap_or(0.0), disk / args.events as u64);
    }
    Ok(())
}
