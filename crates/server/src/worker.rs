//! The digest worker: takes queued envelopes in batches, processes them (CPU
//! work, off the async threads), and stores each batch in one transaction that
//! also deletes its queue rows.
//!
//! Two stages overlap: while the writer commits batch N, batch N+1 is read
//! and processed. A queue row is never in two batches at once: the reader
//! moves a cursor past what it has handed on, and only goes back to the
//! start of the queue (to retry a failed batch, or pick up rows another
//! process queued) when nothing is in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use picket_core::normalize::{EventHooks, NoHooks};
use picket_core::process::{process_envelope_with, Origin};
use picket_store::digest::{PostProcess, PreparedBatchItem};
use picket_store::queue;
use picket_store::tags::{TagCounts, TagsInBatch};

use crate::AppState;

/// Decoded bodies of envelopes ingest has just queued, by queue row id, up
/// to a memory bound. The queue row stays the durable copy: a body not found
/// here (evicted, or queued before a restart) is decoded from the row.
pub struct FreshBodies {
    inner: std::sync::Mutex<(std::collections::BTreeMap<i64, Vec<u8>>, usize)>,
    max_bytes: usize,
}

impl Default for FreshBodies {
    fn default() -> Self {
        FreshBodies { inner: Default::default(), max_bytes: 16 * 1024 * 1024 }
    }
}

impl FreshBodies {
    /// Keeps a body unless the bound is reached (then the row is read instead).
    pub fn put(&self, id: i64, body: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.1 + body.len() <= self.max_bytes {
            inner.1 += body.len();
            inner.0.insert(id, body);
        }
    }

    /// Takes the body of row `id`, and forgets older ones: the digest reads
    /// rows in order, so a body older than the one asked for was read from
    /// its row already (it was put after the digest passed it).
    fn take(&self, id: i64) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *inner;
        while let Some(entry) = map.first_entry() {
            if *entry.key() >= id {
                break;
            }
            *bytes -= entry.remove().len();
        }
        let body = map.remove(&id)?;
        *bytes -= body.len();
        Some(body)
    }
}

/// One named thread that runs CPU-bound jobs in order. The digest processes
/// every batch on the same thread (or each half of a large batch on the
/// same one of two, see [`SPLIT_AT_ROWS`]), so the allocator reuses that
/// thread's warm memory instead of each batch dirtying fresh pages on
/// whichever pool thread it lands on (measured: less page zeroing, less
/// resident memory).
pub(crate) struct CpuThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    /// Release jobs sent and not yet run (see [`CpuThread::release`]).
    releases_waiting: Arc<AtomicUsize>,
}

/// Release jobs allowed to wait for the thread; past this (the thread is
/// stuck or far behind), values are freed where they are.
const MAX_RELEASES_WAITING: usize = 8;

impl CpuThread {
    pub(crate) fn spawn(name: &str) -> CpuThread {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawning the digest thread");
        CpuThread { jobs, releases_waiting: Arc::default() }
    }

    /// Frees `value` on the thread, between its other jobs. Events are built
    /// on the digest thread; freed on another thread, each of their many
    /// small blocks goes back through mimalloc's cross-thread path, which cost
    /// post-processing twice what the same frees cost at home (callgrind).
    /// At most [`MAX_RELEASES_WAITING`] such jobs wait, so memory stays bounded.
    pub(crate) fn release<T: Send + 'static>(&self, value: T) {
        if self.releases_waiting.fetch_add(1, Ordering::AcqRel) >= MAX_RELEASES_WAITING {
            self.releases_waiting.fetch_sub(1, Ordering::AcqRel);
            return drop(value);
        }
        let waiting = self.releases_waiting.clone();
        // If the thread has stopped, the job (and the value) is dropped here.
        let _ = self.jobs.send(Box::new(move || {
            drop(value);
            waiting.fetch_sub(1, Ordering::AcqRel);
        }));
    }

    /// Runs `f` on the thread; a panic comes back as an error.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|p| p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into()));
            let _ = tx.send(out);
        });
        self.jobs.send(job).map_err(|_| "the digest thread has stopped".to_string())?;
        rx.await.map_err(|_| "the digest thread has stopped".to_string())?
    }
}

/// How long the digest waits for a batch to fill under heavy load. Counters
/// are summed per batch (an issue seen 5 times in a batch is updated once),
/// so fuller batches mean fewer writes per event; events become searchable
/// at most this much later.
const GATHER: Duration = Duration::from_millis(50);

/// Ingest requests waiting for their queue commit, on average, from which
/// the digest gathers: the sign that the machine is saturated, whatever its
/// speed (Little's law: requests waiting = rate x wait). Below it the digest
/// keeps up with small batches, and gathering would only make each batch's
/// transaction hold the single writer longer, which ingest's commits wait
/// behind (measured: p99 acceptance latency at 1,000/s went from 4.5 to 20 ms).
const GATHER_WHEN_WAITING: f64 = 8.0;

/// Under sustained load, tag counts are kept back and written with a later
/// batch at least this often (see `picket_store::tags`): tag searches and
/// tag counts lag the stored events by at most about this much.
const TAG_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Kept-back tag rows written at once, whatever their age (about 150 bytes
/// of memory each).
const MAX_KEPT_BACK_TAG_ROWS: usize = 50_000;

/// A processed batch on its way to the writer.
struct Batch {
    items: Vec<PreparedBatchItem>,
    rows: usize,
    /// Decoded bytes of the rows.
    bytes: usize,
    /// No queued rows were waiting after this batch's when it was read: the
    /// digest is keeping up, and the batch writes its tag counts (with any
    /// kept back) instead of keeping them back too.
    caught_up: bool,
}

/// Runs until `shutdown` resolves; finishes the batches in hand first.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Tag counts that a crash kept from being written, before anything new is stored.
    match state.store.write(picket_store::tags::recount_uncounted).await {
        Ok(0) => {}
        Ok(events) => tracing::info!(events, "counted the tags of events stored before the last stop, whose counts had been kept back"),
        Err(e) => tracing::error!(error = %e, "counting the tags of events stored before the last stop failed; the digest's next write of tag counts tries again"),
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let in_flight = Arc::new(AtomicUsize::new(0));
    // Queue rows in batches handed to the writer and not yet stored.
    let handed_rows = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (state, in_flight, failed, handed_rows) = (state.clone(), in_flight.clone(), failed.clone(), handed_rows.clone());
        tokio::spawn(async move {
            let kept_back = KeptBackTags::new(TAG_WRITE_INTERVAL, MAX_KEPT_BACK_TAG_ROWS);
            while let Some(batch) = rx.recv().await {
                let started = std::time::Instant::now();
                let items = batch.items;
                let write_tags = kept_back.write_with(batch.caught_up);
                let in_writer = kept_back.counts.clone();
                let stored = state.store.write(move |c| {
                    let k = lock(&in_writer);
                    let tags = if write_tags { TagsInBatch::Write { kept_back: &k } } else { TagsInBatch::KeepBack };
                    let (outcomes, batch_tags) = picket_store::digest::apply_with(c, &items, tags)?;
                    Ok((outcomes, batch_tags, items))
                });
                match stored.await {
                    Ok((outcomes, batch_tags, items)) => {
                        let tags_kept_back = kept_back.committed(write_tags, batch_tags);
                        hand_off(&state, &outcomes, items);
                        state.queue_len.fetch_sub(batch.rows as i64, Ordering::Relaxed);
                        let new_issues = outcomes.iter().filter(|o| o.is_new).count();
                        let regressions = outcomes.iter().filter(|o| o.is_regression).count();
                        let post_process_jobs = outcomes.iter().filter(|o| o.post_process_job.is_some()).count();
                        tracing::debug!(
                            envelopes = batch.rows,
                            events = outcomes.len(),
                            new_issues,
                            regressions,
                            post_process_jobs,
                            tags_written = write_tags,
                            tags_kept_back,
                            commit_ms = started.elapsed().as_millis() as u64,
                            "digested batch"
                        );
                    }
                    Err(e) => {
                        // The rows stay queued; the reader goes back for them.
                        tracing::error!(error = %e, envelopes = batch.rows, "storing a digest batch failed; it will be retried");
                        failed.store(true, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                handed_rows.fetch_sub(batch.rows as i64, Ordering::Relaxed);
                in_flight.fetch_sub(1, Ordering::Release);
            }
            // Stopping: write what is kept back (if this fails, the next start recounts it).
            let k = kept_back.take();
            if !k.is_empty() {
                let rows = k.len();
                if let Err(e) = state.store.write(move |c| picket_store::tags::write_kept_back(c, &k)).await {
                    tracing::error!(error = %e, rows, "writing the kept-back tag counts failed; they are recounted from the stored events at the next start");
                }
            }
        })
    };

    let cpu = (state.digest_thread.clone(), state.digest_helper.clone());
    let mut after = 0i64;
    // Rows that would fill the next batch, when the last one was not full.
    let mut to_fill: Option<i64> = None;
    // Ingest requests waiting, averaged over windows of at least 250 ms
    // (one sample says little about the load).
    let (mut window_start, mut samples, mut sum, mut waiting) = (std::time::Instant::now(), 0usize, 0usize, 0.0f64);
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Some(rows) = to_fill.take() {
            // Events keep coming but the last batch was not full: let the next fill up.
            let deadline = tokio::time::Instant::now() + GATHER;
            while state.queue_len.load(Ordering::Relaxed) - handed_rows.load(Ordering::Relaxed) < rows {
                tokio::select! {
                    _ = state.queued.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = shutdown.changed() => break,
                }
            }
        }
        if failed.swap(false, Ordering::Relaxed) {
            wait_idle(&in_flight).await;
            after = 0;
        }
        match read_and_process(&state, &cpu, after).await {
            Ok(Some((last, mut batch))) => {
                after = last;
                batch.caught_up = state.queue_len.load(Ordering::Relaxed) - handed_rows.load(Ordering::Relaxed) - batch.rows as i64 <= 0;
                // Full by count or by bytes (large events make short batches).
                let avg_bytes = (batch.bytes / batch.rows.max(1)).max(1);
                let fill = state.settings.digest_batch.min(queue::MAX_BATCH_BYTES / avg_bytes).max(1);
                samples += 1;
                sum += state.ingest_waiting.load(Ordering::Relaxed);
                if window_start.elapsed() >= Duration::from_millis(250) {
                    waiting = sum as f64 / samples as f64;
                    (window_start, samples, sum) = (std::time::Instant::now(), 0, 0);
                }
                to_fill = (batch.rows < fill && waiting >= GATHER_WHEN_WAITING).then_some(fill as i64);
                handed_rows.fetch_add(batch.rows as i64, Ordering::Relaxed);
                in_flight.fetch_add(1, Ordering::Acquire);
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(None) => {
                // Nothing past the cursor. Once the writer is done, start again
                // from the beginning (rows of a failed batch, rows queued by
                // another process), sleeping until something is queued.
                wait_idle(&in_flight).await;
                if after != 0 {
                    after = 0;
                    continue;
                }
                tokio::select! {
                    _ = state.queued.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed; retrying in 1s");
                wait_idle(&in_flight).await;
                after = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Gives the stored events to post-processing, so it need not read them back.
/// `outcomes` follow the batch's events in order, duplicates left out.
fn hand_off(state: &AppState, outcomes: &[picket_store::digest::EventOutcome], items: Vec<PreparedBatchItem>) {
    let mut outcomes = outcomes.iter().peekable();
    // Duplicates, and events of projects without post-processing.
    let mut leftovers = Vec::new();
    for (project_id, evs) in items.into_iter().map(PreparedBatchItem::into_events) {
        for ev in evs {
            let Some(o) = outcomes.next_if(|o| o.project_id == project_id && o.event_id == ev.event_id) else {
                leftovers.push(ev);
                continue;
            };
            let Some(job_id) = o.post_process_job else {
                leftovers.push(ev);
                continue;
            };
            let job = picket_store::plugins::PostProcessJob {
                id: job_id,
                project_id: o.project_id,
                issue_id: o.issue_id,
                event_id: o.event_id.clone(),
                is_new: o.is_new,
                is_regression: o.is_regression,
                plugin: None,
                attempts: 0,
            };
            state.handoff.send(crate::plugins::Handoff { job, event: picket_plugin_api::Event::from_data_with_tags(o.project_id, ev.tags, ev.data) });
        }
    }
    state.digest_thread.release(leftovers);
}

/// Tag counts the digest keeps back between batches under load (see
/// `picket_store::tags`): whether the next batch writes them, and what is
/// kept once a batch is committed.
struct KeptBackTags {
    /// Locked by the writer task and, while a batch is stored, by the
    /// database's writer thread, which reads them.
    counts: Arc<std::sync::Mutex<TagCounts>>,
    interval: Duration,
    max_rows: usize,
}

impl KeptBackTags {
    fn new(interval: Duration, max_rows: usize) -> KeptBackTags {
        KeptBackTags { counts: Arc::default(), interval, max_rows }
    }

    /// Whether the next batch writes the tag counts (its own and those kept
    /// back) rather than keeping its own back too: when the digest has
    /// caught up with the queue, or the kept-back counts are old or many.
    fn write_with(&self, batch_caught_up: bool) -> bool {
        let counts = lock(&self.counts);
        batch_caught_up || counts.age() >= self.interval || counts.len() >= self.max_rows
    }

    /// After a batch's transaction committed: counts it wrote are forgotten,
    /// counts it kept back join the others. (A batch that failed changes
    /// nothing: it is retried.) Returns how many rows are kept back.
    fn committed(&self, wrote: bool, batch_tags: TagCounts) -> usize {
        let mut counts = lock(&self.counts);
        counts.committed(wrote, batch_tags);
        counts.len()
    }

    /// Everything kept back, to write when the digest stops.
    fn take(&self) -> TagCounts {
        std::mem::take(&mut *lock(&self.counts))
    }
}

/// The lock of the kept-back tag counts. The writer only reads them, so a
/// panic there leaves them whole: a poisoned lock is used as it is.
fn lock(counts: &std::sync::Mutex<TagCounts>) -> std::sync::MutexGuard<'_, TagCounts> {
    counts.lock().unwrap_or_else(|e| e.into_inner())
}

async fn wait_idle(in_flight: &AtomicUsize) {
    while in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Batches of at least this many envelopes are processed in two halves at
/// once, one on each digest thread. Under sustained load (full batches)
/// the digest then uses both cores where the machine has them idle: with
/// 50 KB events one thread was the bottleneck, busy while the rest of the
/// machine waited (`BENCHMARKS.md`, session 10). Small batches (a moderate
/// rate) stay on one thread: splitting them saves nothing worth a thread hop.
const SPLIT_AT_ROWS: usize = 32;

/// Reads and processes the next batch after `after`; `None` when there is none.
/// `cpu` is the digest thread and its helper.
async fn read_and_process(state: &AppState, cpu: &(Arc<CpuThread>, Arc<CpuThread>), after: i64) -> picket_store::Result<Option<(i64, Batch)>> {
    let limit = state.settings.digest_batch;
    let st = state.clone();
    let (rows, hooks) = state
        .store
        .read_async(move |c| {
            let rows = queue::fetch(c, after, limit, &mut |id| st.fresh.take(id))?;
            // Each project's enabled plugins, once per batch (a deleted project has none).
            let mut hooks = std::collections::HashMap::new();
            for r in &rows {
                let pid = r.envelope.project_id;
                if let std::collections::hash_map::Entry::Vacant(slot) = hooks.entry(pid) {
                    slot.insert(st.plugins.project_blocking(c, pid).ok());
                }
            }
            Ok((rows, hooks))
        })
        .await?;
    let Some(last) = rows.last().map(|r| r.id) else { return Ok(None) };
    let n = rows.len();
    let bytes = rows.iter().map(|r| r.envelope.body.len()).sum();
    let registry = state.plugins.registry;
    let dictionaries = state.store.dictionaries().clone();
    let hooks = Arc::new(hooks);
    let items = on_digest_threads(cpu, rows, move |rows| {
        let (hooks, dictionaries) = (hooks.clone(), dictionaries.clone());
        move || process_rows(&rows, &hooks, registry, &dictionaries)
    })
    .await
    .map_err(|e| picket_store::StoreError::Invalid(format!("digest task failed: {e}")))?;
    if let Some((project_id, samples)) = state.store.dictionaries().take_samples() {
        // Off the digest thread: training takes a few hundred milliseconds.
        let store = state.store.clone();
        tokio::task::spawn_blocking(move || {
            let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| picket_store::dictionary::train_and_install(&store, project_id, samples)));
            match trained {
                Ok(Ok(id)) => tracing::info!(project_id, dictionary = id, "trained a zstd dictionary for the project's events"),
                Ok(Err(e)) => tracing::warn!(project_id, error = %e, "no zstd dictionary for the project's events yet; it will sample again"),
                Err(_) => {
                    // Not stuck in training: sample again.
                    store.dictionaries().training_failed(project_id);
                    tracing::error!(project_id, "training a zstd dictionary panicked; the project will sample again");
                }
            }
        });
    }
    // `caught_up` is the caller's to set: it knows what is handed on already.
    Ok(Some((last, Batch { items, rows: n, bytes, caught_up: true })))
}

/// Runs `work` on the rows on the digest thread, or, from [`SPLIT_AT_ROWS`]
/// rows on, on both digest threads at once, each with half of them; the
/// results come back in the rows' order. A panic in either half fails the
/// whole batch (its rows stay queued and are retried).
async fn on_digest_threads<R, T, F, W>(cpu: &(Arc<CpuThread>, Arc<CpuThread>), rows: Vec<R>, work: W) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: FnOnce() -> Vec<T> + Send + 'static,
    W: Fn(Vec<R>) -> F,
{
    if rows.len() < SPLIT_AT_ROWS {
        return cpu.0.run(work(rows)).await;
    }
    let mut first = rows;
    let second = first.split_off(first.len() / 2);
    match tokio::join!(cpu.0.run(work(first)), cpu.1.run(work(second))) {
        (Ok(mut out), Ok(rest)) => {
            out.extend(rest);
            Ok(out)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Decoded bytes processed in one go on a digest thread after which the
/// thread gives the memory its allocator holds for reuse back to the
/// system. mimalloc keeps freed memory for up to a second, and with large
/// events two digest threads each held a batch half's worth: peak RSS with
/// 50 KB events 138–139 MiB without this, 115–128 MiB with it, at the same
/// throughput (`BENCHMARKS.md`, session 10). Below this (5 KB events make
/// halves of about 650 KB) it is not done: there the same release after
/// every batch cost CPU for memory that is reused at once.
const RELEASE_MEMORY_AFTER_BYTES: usize = 2 << 20;

/// Gives memory the allocator holds for reuse back to the system, on the
/// calling thread; set once by the binary, which chooses the allocator.
static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what a digest thread calls to give back memory after a large batch
/// (see [`RELEASE_MEMORY_AFTER_BYTES`]). Without it nothing is released early.
pub fn set_release_memory(release: fn()) {
    let _ = RELEASE_MEMORY.set(release);
}

/// Processes queued envelopes into what the writer stores, in order.
fn process_rows(
    rows: &[queue::QueueRow],
    hooks: &std::collections::HashMap<i64, Option<Arc<picket_core::plugins::ProjectPlugins>>>,
    registry: &'static picket_plugin_api::Registry,
    dictionaries: &picket_store::dictionary::Dictionaries,
) -> Vec<PreparedBatchItem> {
    let items = rows
        .iter()
        .map(|row| {
            let origin = Origin {
                queue_id: row.id,
                project_id: row.envelope.project_id,
                received: row.envelope.received,
                client_ip: row.envelope.meta.client_ip.clone(),
                sdk_client: row.envelope.meta.sdk_client.clone(),
            };
            let (project_hooks, post_process): (&dyn EventHooks, _) = match hooks.get(&origin.project_id) {
                Some(Some(p)) => (&**p, if p.wants_post_process() { PostProcess::Queue } else { PostProcess::Skip }),
                // Plugins unknown (the project is gone, or reading them failed):
                // post-processing reads them again when it runs.
                _ => (&NoHooks, PostProcess::Queue),
            };
            picket_store::digest::prepare_one(process_envelope_with(&origin, &row.envelope.body, registry, project_hooks), post_process, dictionaries)
        })
        .collect();
    if rows.iter().map(|r| r.envelope.body.len()).sum::<usize>() >= RELEASE_MEMORY_AFTER_BYTES {
        if let Some(release) = RELEASE_MEMORY.get() {
            release();
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rows: &[(i64, &str, &str)]) -> TagCounts {
        let mut c = TagCounts::default();
        for (issue, k, v) in rows {
            c.add(*issue, k, v, 1.0);
        }
        c
    }

    #[tokio::test]
    async fn large_batches_are_split_over_both_digest_threads_and_keep_their_order() {
        let cpu = (Arc::new(CpuThread::spawn("test-digest")), Arc::new(CpuThread::spawn("test-digest-2")));
        let on_thread = |rows: Vec<usize>| move || rows.into_iter().map(|r| (r, std::thread::current().name().unwrap().to_string())).collect::<Vec<_>>();

        let small = on_digest_threads(&cpu, (0..SPLIT_AT_ROWS - 1).collect(), on_thread).await.unwrap();
        assert!(small.iter().all(|(_, t)| t == "test-digest"), "a small batch stays on one thread: {small:?}");

        let large = on_digest_threads(&cpu, (0..100).collect(), on_thread).await.unwrap();
        assert_eq!(large.iter().map(|(r, _)| *r).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>(), "in order");
        assert!(large[..50].iter().all(|(_, t)| t == "test-digest") && large[50..].iter().all(|(_, t)| t == "test-digest-2"), "{large:?}");

        let failing = on_digest_threads(&cpu, (0..100).collect(), |rows: Vec<usize>| {
            move || {
                assert!(rows[0] != 50, "a bad envelope");
                rows
            }
        });
        assert!(failing.await.unwrap_err().contains("a bad envelope"), "a panic in one half fails the batch");
    }

    #[test]
    fn kept_back_tags_are_written_when_caught_up_old_or_many() {
        let kept = KeptBackTags::new(Duration::from_millis(400), 3);
        assert!(kept.write_with(true), "caught up: write");
        assert!(!kept.write_with(false), "behind, nothing kept: keep back");
        assert_eq!(kept.committed(false, counts(&[(1, "level", "error"), (2, "level", "error")])), 2);
        assert!(!kept.write_with(false), "young and few: keep back");
        std::thread::sleep(Duration::from_millis(450));
        assert!(kept.write_with(false), "older than the interval: write");
        let many = KeptBackTags::new(Duration::from_secs(60), 3);
        many.committed(false, counts(&[(1, "a", "1"), (1, "b", "1"), (1, "c", "1")]));
        assert!(many.write_with(false), "as many rows as the bound: write");
    }

    #[test]
    fn a_committed_batch_clears_what_it_wrote_and_adds_what_it_kept_back() {
        let kept = KeptBackTags::new(Duration::from_secs(60), 1000);
        assert_eq!(kept.committed(false, counts(&[(1, "level", "error")])), 1);
        assert_eq!(kept.committed(false, counts(&[(1, "level", "error"), (1, "os", "Linux")])), 2, "the same row merges");
        // A batch whose transaction failed never reaches `committed`: nothing changes.
        assert_eq!(kept.committed(true, counts(&[(3, "level", "info")])), 0, "written with the batch: forgotten");
        kept.committed(false, counts(&[(4, "level", "info")]));
        let left = kept.take();
        assert_eq!(left.len(), 1);
        assert!(kept.take().is_empty(), "taken once, for the write at stop");
    }
}
