//! `picket-load`: sends realistic events to a Picket DSN and measures what
//! matters: accepted events per second, answer latency, and events fully
//! processed (stored, grouped, counted) per second, read back from the API.
//!
//! Events are Python-, JavaScript- and Java-shaped exceptions with 10–40
//! frames, breadcrumbs, tags, user, request and contexts, padded to a target
//! size, spread over `--issues` distinct issues, each with a unique event id.
//! Each body is a gzip envelope. To keep the generator's CPU off the server's
//! budget, every issue's item is compressed once, and each request is a small
//! gzip member with the envelope header (the unique `event_id`, stored, not
//! compressed: see `stored_gzip_member`) followed by
//! the pre-compressed member: a multi-member gzip body, valid per RFC 1952,
//! that the server decompresses exactly as it would a single member.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use picket_bench::events::{body_for, build_templates};
use rand::Rng;
use serde_json::{json, Value};

// The generator shares the machine with the server: glibc's malloc was a
// tenth of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for Picket")]
struct Args {
    /// DSN of the project to send to.
    #[arg(long)]
    dsn: String,
    /// API token, to poll how many events were fully processed.
    #[arg(long)]
    token: Option<String>,
    /// ORG/PROJECT of the DSN, for the API.
    #[arg(long, default_value = "bench/load")]
    project: String,
    /// Events to send.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Distinct issues the events spread over.
    #[arg(long, default_value_t = 100)]
    issues: usize,
    /// Approximate size of one event's JSON, in KB.
    #[arg(long, default_value_t = 5)]
    size_kb: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Events per second to send at most (0: as fast as answers come).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to wait for processing to finish after sending.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

struct Target {
    envelope_url: String,
    api_base: String,
}

fn parse_dsn(dsn: &str) -> Result<(Target, String)> {
    let (scheme, rest) = dsn.split_once("://").context("DSN must start with http://")?;
    let (key, hostpath) = rest.split_once('@').context("DSN has no key")?;
    let (host, path) = hostpath.split_once('/').context("DSN has no project id")?;
    let (prefix, project_id) = path.trim_end_matches('/').rsplit_once('/').map(|(a, b)| (format!("/{a}"), b.to_string())).unwrap_or((String::new(), path.trim_end_matches('/').to_string()));
    let base = format!("{scheme}://{host}{prefix}");
    Ok((Target { envelope_url: format!("{base}/api/{project_id}/envelope/?sentry_key={key}&sentry_version=7"), api_base: base }, key.to_string()))
}

#[derive(Default)]
struct Stats {
    latencies_us: Mutex<Vec<u32>>,
    statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
    errors: AtomicU64,
    accepted: AtomicU64,
    bytes: AtomicU64,
}

async fn processed_count(client: &reqwest::Client, args: &Args, target: &Target) -> Result<Option<i64>> {
    let Some(token) = &args.token else { return Ok(None) };
    let url = format!("{}/api/0/projects/{}/stats/", target.api_base, args.project);
    let resp = client.get(url).bearer_auth(token).send().await?;
    if !resp.status().is_success() {
        bail!("stats API answered {}", resp.status());
    }
    let v: Value = serde_json::from_slice(&resp.bytes().await?)?;
    Ok(v["events"].as_i64())
}

async fn issue_count(client: &reqwest::Client, args: &Args, target: &Target) -> Result<Option<usize>> {
    let Some(token) = &args.token else { return Ok(None) };
    let mut total = 0;
    let mut offset = 0;
    loop {
        let url = format!("{}/api/0/projects/{}/issues/?query=&limit=100&cursor=0:{offset}:0", target.api_base, args.project);
        let v: Value = serde_json::from_slice(&client.get(url).bearer_auth(token).send().await?.bytes().await?)?;
        let n = v.as_array().map_or(0, Vec::len);
        total += n;
        if n < 100 {
            return Ok(Some(total));
        }
        offset += 100;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (target, _key) = parse_dsn(&args.dsn)?;
    let (templates, avg_size) = build_templates(args.issues, args.size_kb);
    let avg_gzip = templates.iter().map(Vec::len).sum::<usize>() / templates.len();
    let templates = Arc::new(templates);
    // Parsed once: reqwest parses a `&str` URL on every request.
    let envelope_url = reqwest::Url::parse(&target.envelope_url).with_context(|| format!("the DSN gives a bad URL: {}", target.envelope_url))?;
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(30)).build()?;
    let stats = Arc::new(Stats::default());
    let next = Arc::new(AtomicUsize::new(0));
    let start_count = processed_count(&client, &args, &target).await?.unwrap_or(0);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, stats, next, templates, url, args) = (client.clone(), stats.clone(), next.clone(), templates.clone(), envelope_url.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut local_lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n as u64 >= args.events {
                    break;
                }
                if args.rate > 0 {
                    // Open-loop pacing: event n is due at n / rate seconds.
                    let due = started + Duration::from_secs_f64(n as f64 / args.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let event_id = format!("{:032x}", rand::rng().random::<u128>());
                let body = body_for(&templates[n % templates.len()], &event_id);
                stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                let t0 = Instant::now();
                let res = client.post(url.clone()).header("content-encoding", "gzip").header("content-type", "application/x-sentry-envelope").body(body).send().await;
                match res {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        local_lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        *stats.statuses.lock().unwrap().entry(status).or_default() += 1;
                        if status == 200 {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            stats.latencies_us.lock().unwrap().extend(local_lat);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let send_secs = started.elapsed().as_secs_f64();
    let accepted = stats.accepted.load(Ordering::Relaxed);
    // Wait until every accepted event is processed (or the timeout).
    let mut processed = None;
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    if args.token.is_some() {
        loop {
            let n = processed_count(&client, &args, &target).await?.unwrap_or(0) - start_count;
            processed = Some(n);
            if n >= accepted as i64 || Instant::now() > deadline {
                break;
            }
            // Polling costs the server a count over the events index: not too often.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let total_secs = started.elapsed().as_secs_f64();
    let issues = issue_count(&client, &args, &target).await?;
    let mut lat = stats.latencies_us.lock().unwrap().clone();
    lat.sort_unstable();
    let statuses = stats.statuses.lock().unwrap().clone();
    let report = json!({
        "events_sent": args.events,
        "event_json_bytes": avg_size,
        "event_gzip_bytes": avg_gzip,
        "concurrency": args.concurrency,
        "rate_limit": args.rate,
        "accepted": accepted,
        "transport_errors": stats.errors.load(Ordering::Relaxed),
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "send_seconds": send_secs,
        "accepted_per_sec": accepted as f64 / send_secs,
        "latency_ms": {"p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "p999": percentile(&lat, 0.999), "max": percentile(&lat, 1.0)},
        "processed": processed,
        "processed_seconds": total_secs,
        "processed_per_sec": processed.map(|p| p as f64 / total_secs),
        "issues": issues,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
