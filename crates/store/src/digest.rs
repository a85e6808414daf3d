//! Applying a processed batch: events, issues, counters, and everything else
//! an envelope carries. The whole batch is one transaction (the writer's), and
//! the queue rows it came from are deleted in it.

use std::collections::{HashMap, HashSet};

use picket_core::process::{CheckIn, ProcessedEnvelope, SessionUpdate, UserReport};
use picket_core::NormalizedEvent;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension};
use serde_json::Value;

use crate::dictionary::Dictionaries;
use crate::tags::{TagCounts, TagsInBatch};
use crate::Result;

/// The writer's per-batch maps and sets, keyed by issue ids, tags and event
/// ids: about 40 lookups per event, where SipHash (the std default) was 5%
/// of the writer's instructions.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// What happened to an event in the batch; plugins' `post_process` reads this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOutcome {
    pub project_id: i64,
    pub event_id: String,
    pub issue_id: i64,
    pub is_new: bool,
    pub is_regression: bool,
    /// The event's row in the post-process queue; `None` when the project
    /// has no plugin that post-processes.
    pub post_process_job: Option<i64>,
}

/// Whether a batch item's events are post-processed after they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostProcess {
    /// Each event gets a durable post-process job and keeps its payload for the hand-off.
    Queue,
    /// No enabled plugin has a `post_process`: no job, and the payload is
    /// freed as soon as it is serialized.
    Skip,
}

/// A processed envelope with its event payloads already serialized and
/// compressed, so that the single writer thread does nothing but SQL.
pub struct PreparedBatchItem {
    env: ProcessedEnvelope,
    event_blobs: Vec<Vec<u8>>,
    /// With [`PostProcess::Skip`], what a new issue takes from each event,
    /// read before the payload is freed (empty otherwise: read when needed).
    issue_seeds: Vec<IssueSeed>,
    transaction_blobs: Vec<Vec<u8>>,
    post_process: PostProcess,
}

/// The parts of an event's payload that a new issue stores.
struct IssueSeed {
    logger: Option<String>,
    /// `metadata` (JSON), see [`issue_metadata`].
    metadata: String,
}

impl IssueSeed {
    fn of(ev: &NormalizedEvent) -> IssueSeed {
        IssueSeed { logger: ev.data.get("logger").and_then(Value::as_str).map(String::from), metadata: issue_metadata(ev).to_string() }
    }
}

impl PreparedBatchItem {
    /// The envelope's project and events, given up after the batch is stored
    /// (post-processing reads them from memory). With [`PostProcess::Skip`]
    /// the events' `data` is empty.
    pub fn into_events(self) -> (i64, Vec<NormalizedEvent>) {
        (self.env.project_id, self.env.events)
    }
}

/// Serializes and compresses what [`apply`] will store (CPU work, off the
/// writer): events with their project's dictionary, when it has one.
pub fn prepare(batch: Vec<ProcessedEnvelope>, post_process: PostProcess, dictionaries: &Dictionaries) -> Vec<PreparedBatchItem> {
    batch.into_iter().map(|env| prepare_one(env, post_process, dictionaries)).collect()
}

/// [`prepare`] for one envelope. The digest calls it right after processing
/// the envelope, while its events are still in the CPU's caches: serializing
/// a whole batch after processing it read every event back from memory.
pub fn prepare_one(mut env: ProcessedEnvelope, post_process: PostProcess, dictionaries: &Dictionaries) -> PreparedBatchItem {
    thread_local! {
        // One buffer per thread for the JSON before compression: a fresh
        // `Vec` per event grew by doubling, a copy each time.
        static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let blob = |project_id: Option<i64>, ev: &NormalizedEvent| {
        JSON.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            // A `Value` always serializes; an empty blob as before if not.
            if serde_json::to_writer(&mut *buf, &ev.data).is_err() {
                buf.clear();
            }
            let blob = match project_id {
                Some(project_id) => dictionaries.compress_event(project_id, &buf),
                None => crate::compress(&buf),
            };
            // Keep up to 1 MiB between events, not the largest event's size.
            buf.clear();
            buf.shrink_to(1 << 20);
            blob
        })
    };
    let event_blobs = env.events.iter().map(|ev| blob(Some(env.project_id), ev)).collect();
    let mut issue_seeds = Vec::new();
    if post_process == PostProcess::Skip {
        issue_seeds = env.events.iter().map(IssueSeed::of).collect();
        // Freed here, on the thread that built it and while it is in the
        // caches, instead of travelling through the writer.
        for ev in &mut env.events {
            drop(std::mem::take(&mut ev.data));
        }
    }
    PreparedBatchItem {
        event_blobs,
        issue_seeds,
        // Transactions are another shape: an event dictionary would not fit them.
        transaction_blobs: env.transactions.iter().map(|tx| blob(None, tx)).collect(),
        env,
        post_process,
    }
}

/// Stores a batch with its tag counts; returns the outcome of each new
/// (non-duplicate) event.
pub fn apply(conn: &Connection, batch: &[PreparedBatchItem]) -> Result<Vec<EventOutcome>> {
    Ok(apply_with(conn, batch, TagsInBatch::Write { kept_back: &TagCounts::default() })?.0)
}

/// Stores a batch, and its tag counts as `tags` says (see [`crate::tags`]);
/// returns the outcome of each new (non-duplicate) event, and the batch's
/// tag counts when they are kept back.
pub fn apply_with(conn: &Connection, batch: &[PreparedBatchItem], tags: TagsInBatch<'_>) -> Result<(Vec<EventOutcome>, TagCounts)> {
    // The row id the batch's first event will get (SQLite's: the highest plus one).
    let first_event_id = match tags {
        TagsInBatch::KeepBack => Some(conn.prepare_cached("SELECT IFNULL(MAX(id), 0) + 1 FROM events")?.query_row([], |r| r.get::<_, i64>(0))?),
        TagsInBatch::Write { .. } => None,
    };
    let mut outcomes = Vec::new();
    let mut counts: FastMap<(i64, String, &'static str), i64> = FastMap::default();
    let mut agg = Aggregates::default();
    let mut seen = SeenEvents::read(conn, batch)?;
    let mut statements = EventStatements::prepare(conn)?;
    let deleted = deleted_projects(conn, batch)?;
    for item in batch {
        let env = &item.env;
        if deleted.contains(&env.project_id) {
            continue;
        }
        for (i, ev) in env.events.iter().enumerate() {
            if !seen.first_time(env.project_id, &ev.event_id) {
                *counts.entry((env.project_id, "event".into(), "duplicate")).or_default() += 1;
                continue;
            }
            outcomes.push(store_event(conn, &mut statements, item, i, &mut agg)?);
            *counts.entry((env.project_id, "event".into(), "accepted")).or_default() += 1;
        }
        for (tx, blob) in env.transactions.iter().zip(&item.transaction_blobs) {
            let outcome = if store_transaction(conn, env.project_id, tx, blob)? { "accepted" } else { "duplicate" };
            *counts.entry((env.project_id, "transaction".into(), outcome)).or_default() += 1;
        }
        for a in &env.attachments {
            conn.prepare_cached(
                "INSERT INTO attachments (project_id, event_id, name, content_type, attachment_type, size, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![env.project_id, a.event_id, a.name, a.content_type, a.attachment_type, a.data.len() as i64, a.data, crate::now()])?;
            *counts.entry((env.project_id, "attachment".into(), "accepted")).or_default() += 1;
        }
        for r in &env.user_reports {
            let outcome = if store_user_report(conn, env.project_id, r)? { "accepted" } else { "duplicate" };
            *counts.entry((env.project_id, r.kind.to_string(), outcome)).or_default() += 1;
        }
        for s in &env.sessions {
            apply_session(conn, env.project_id, s)?;
        }
        for a in &env.session_aggregates {
            let total = a.exited + a.errored + a.abnormal + a.crashed;
            conn.prepare_cached(
                "INSERT INTO session_aggregates (project_id, release, environment, total, exited, errored, abnormal, crashed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (project_id, release, environment) DO UPDATE SET total = total + excluded.total, exited = exited + excluded.exited,
                 errored = errored + excluded.errored, abnormal = abnormal + excluded.abnormal, crashed = crashed + excluded.crashed",
            )?
            .execute(params![env.project_id, a.release, a.environment, total, a.exited, a.errored, a.abnormal, a.crashed])?;
        }
        for c in &env.check_ins {
            apply_check_in(conn, env.project_id, c)?;
        }
        for (reason, category, quantity) in &env.client_outcomes {
            conn.prepare_cached(
                "INSERT INTO client_outcomes (project_id, reason, category, quantity) VALUES (?, ?, ?, ?)
                 ON CONFLICT (project_id, reason, category) DO UPDATE SET quantity = quantity + excluded.quantity",
            )?
            .execute(params![env.project_id, reason, category, quantity])?;
        }
        for (item_type, outcome) in &env.counted {
            *counts.entry((env.project_id, item_type.clone(), outcome)).or_default() += 1;
        }
    }
    drop(statements); // back into the statement cache
    let tag_counts = agg.flush(conn)?;
    // A batch without tag counts stored no events: nothing for the mark to cover.
    let first_event_id = first_event_id.filter(|_| !tag_counts.is_empty());
    let kept_back = crate::tags::finish_batch(conn, tag_counts, first_event_id, tags)?;
    let counts: Vec<(i64, String, &'static str, i64)> = counts.into_iter().map(|((p, t, o), n)| (p, t, o, n)).collect();
    add_item_counts(conn, &counts)?;
    let ids = batch.iter().map(|i| i.env.queue_id);
    if let (Some(first), Some(last)) = (ids.clone().min(), ids.max()) {
        crate::queue::delete_range(conn, first, last)?;
    }
    Ok((outcomes, kept_back))
}

/// The batch's projects that are deleted or being deleted: envelopes for
/// them were queued before (or in the seconds a server still takes their
/// keys).
/// Those envelopes are dropped with their queue rows; storing them would
/// fail the foreign keys, and with them the whole batch at every retry.
fn deleted_projects(conn: &Connection, batch: &[PreparedBatchItem]) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = batch.iter().map(|i| i.env.project_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut exists = conn.prepare_cached("SELECT 1 FROM projects WHERE id = ? AND NOT deleting")?;
    let mut deleted = Vec::new();
    for id in ids {
        if !exists.exists([id])? {
            deleted.push(id);
        }
    }
    if !deleted.is_empty() {
        let envelopes = batch.iter().filter(|i| deleted.contains(&i.env.project_id)).count();
        tracing::info!(projects = ?deleted, envelopes, "dropped envelopes queued for deleted projects");
    }
    Ok(deleted)
}

/// Adds to the counts of items by project, type and outcome (the stats).
pub fn add_item_counts(conn: &Connection, counts: &[(i64, String, &'static str, i64)]) -> Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO item_counts (project_id, item_type, outcome, count) VALUES (?, ?, ?, ?)
         ON CONFLICT (project_id, item_type, outcome) DO UPDATE SET count = count + excluded.count",
    )?;
    for (project_id, item_type, outcome, n) in counts {
        st.execute(params![project_id, item_type, outcome, n])?;
    }
    Ok(())
}

/// The event ids a batch must not store again: those already stored, read
/// with one query per project instead of one per event, and those stored
/// earlier in the batch.
struct SeenEvents<'a> {
    ids: FastSet<(i64, &'a str)>,
}

impl<'a> SeenEvents<'a> {
    fn read(conn: &Connection, batch: &'a [PreparedBatchItem]) -> Result<SeenEvents<'a>> {
        let mut by_project: FastMap<i64, Vec<&str>> = FastMap::default();
        for item in batch {
            let ids = by_project.entry(item.env.project_id).or_default();
            ids.extend(item.env.events.iter().map(|ev| ev.event_id.as_str()));
        }
        let mut seen = SeenEvents { ids: FastSet::default() };
        let mut st = conn.prepare_cached("SELECT event_id FROM events WHERE project_id = ?1 AND event_id IN (SELECT value FROM json_each(?2))")?;
        for (project_id, ids) in by_project.into_iter().filter(|(_, ids)| !ids.is_empty()) {
            let list = serde_json::to_string(&ids).unwrap_or_default();
            let mut rows = st.query(params![project_id, list])?;
            let mut batch_ids: Option<FastSet<&'a str>> = None;
            while let Some(row) = rows.next()? {
                let stored: String = row.get(0)?;
                // Borrow the batch's own copy of the id, so that the set owns nothing.
                let batch_ids = batch_ids.get_or_insert_with(|| ids.iter().copied().collect());
                if let Some(id) = batch_ids.get(stored.as_str()) {
                    seen.ids.insert((project_id, id));
                }
            }
        }
        Ok(seen)
    }

    /// True the first time an event is offered and it is not stored yet.
    fn first_time(&mut self, project_id: i64, event_id: &'a str) -> bool {
        self.ids.insert((project_id, event_id))
    }
}

/// The statements that every stored event runs, prepared once per batch.
/// Taken from rusqlite's statement cache for each event instead (hashing
/// the SQL text, moving the LRU entry, clearing the bindings on return),
/// they cost 3% of the writer's instructions.
struct EventStatements<'c> {
    find_hash: CachedStatement<'c>,
    issue_status: CachedStatement<'c>,
    insert_hash: CachedStatement<'c>,
    insert_event: CachedStatement<'c>,
    insert_post_process: CachedStatement<'c>,
}

impl<'c> EventStatements<'c> {
    fn prepare(conn: &'c Connection) -> Result<EventStatements<'c>> {
        Ok(EventStatements {
            find_hash: conn.prepare_cached("SELECT issue_id FROM group_hashes WHERE project_id = ? AND hash = ?")?,
            issue_status: conn.prepare_cached("SELECT status FROM issues WHERE id = ?")?,
            insert_hash: conn.prepare_cached("INSERT OR IGNORE INTO group_hashes (project_id, hash, algorithm, issue_id) VALUES (?, ?, ?, ?)")?,
            insert_event: conn.prepare_cached(
                "INSERT INTO events (project_id, event_id, issue_id, timestamp, received, level, title, environment, release, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?,
            insert_post_process: conn.prepare_cached(crate::plugins::INSERT_FIRST_POST_PROCESS)?,
        })
    }
}

/// Stores the item's event `i` (not a duplicate: see [`SeenEvents`]) and updates its issue.
fn store_event(conn: &Connection, st: &mut EventStatements<'_>, item: &PreparedBatchItem, i: usize, agg: &mut Aggregates) -> Result<EventOutcome> {
    let (project_id, ev, blob) = (item.env.project_id, &item.env.events[i], &item.event_blobs[i]);
    // Find the issue owning any of the event's hashes (most are known from
    // earlier events of the batch).
    let mut issue_id: Option<i64> = None;
    for h in &ev.grouping.hashes {
        issue_id = match agg.hashes.get(&project_id).and_then(|m| m.get(h)) {
            Some(id) => Some(*id),
            None => {
                let found = st.find_hash.query_row(params![project_id, h], |r| r.get(0)).optional()?;
                if let Some(id) = found {
                    agg.hashes.entry(project_id).or_default().insert(h.clone(), id);
                }
                found
            }
        };
        if issue_id.is_some() {
            break;
        }
    }
    let (is_new, mut is_regression) = (issue_id.is_none(), false);
    let issue_id = match issue_id {
        Some(id) => {
            // An issue seen unresolved earlier in this batch needs no check.
            if !agg.unresolved.contains(&id) {
                let status: String = st.issue_status.query_row([id], |r| r.get(0))?;
                if status == "resolved" {
                    is_regression = true;
                    conn.prepare_cached("UPDATE issues SET status = 'unresolved', substatus = 'regressed', resolved_at = NULL WHERE id = ?")?.execute([id])?;
                }
                if status != "ignored" {
                    agg.unresolved.insert(id);
                }
            }
            agg.issues.entry(id).or_insert((0, ev.timestamp, ev.timestamp)).add(ev.timestamp);
            id
        }
        None => {
            let read;
            let seed = match item.issue_seeds.get(i) {
                Some(seed) => seed,
                None => {
                    read = IssueSeed::of(ev);
                    &read
                }
            };
            let short_id: i64 = conn
                .prepare_cached("UPDATE projects SET issue_counter = issue_counter + 1 WHERE id = ? RETURNING issue_counter")?
                .query_row([project_id], |r| r.get(0))
                .optional()?
                .unwrap_or(0); // no such project: the insert below fails on its foreign key
            conn.prepare_cached(
                "INSERT INTO issues (project_id, title, culprit, event_type, level, platform, logger, status, first_seen, last_seen, times_seen, first_release, search_text, metadata, short_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, 'unresolved', ?, ?, 1, ?, ?, ?, ?)",
            )?
            .execute(params![project_id, ev.title, ev.culprit, ev.event_type.as_str(), ev.level.as_str(), ev.platform, seed.logger, ev.timestamp, ev.timestamp, ev.release, ev.search_text, seed.metadata, short_id])?;
            let id = conn.last_insert_rowid();
            agg.unresolved.insert(id);
            id
        }
    };
    for h in &ev.grouping.hashes {
        if agg.hashes.get(&project_id).is_some_and(|m| m.contains_key(h)) {
            continue;
        }
        let added = st.insert_hash.execute(params![project_id, h, ev.grouping.algorithm, issue_id])?;
        // A hash another issue owns already stays that issue's: not cached,
        // so the next event carrying it asks the table again.
        if added == 1 {
            agg.hashes.entry(project_id).or_default().insert(h.clone(), issue_id);
        }
    }
    st.insert_event.execute(params![project_id, ev.event_id, issue_id, ev.timestamp, ev.received, ev.level.as_str(), ev.title, ev.environment, ev.release, blob])?;
    for (k, v) in &ev.tags {
        agg.tags.add(issue_id, k, v, ev.timestamp);
    }
    if let Some(user) = &ev.user_key {
        agg.users.insert((issue_id, user.clone()));
    }
    let hour = (ev.timestamp / 3600.0).floor() as i64 * 3600;
    *agg.hourly.entry((issue_id, hour)).or_default() += 1;
    for view in &ev.views {
        agg.views.insert((issue_id, view));
    }
    // Plugins' post_process runs after the commit; this durable row is the record
    // of it until it has run (see `plugins::enqueue_post_process`).
    let post_process_job = match item.post_process {
        PostProcess::Queue => Some(crate::plugins::enqueue_post_process(&mut st.insert_post_process, project_id, issue_id, &ev.event_id, is_new, is_regression)?),
        PostProcess::Skip => None,
    };
    Ok(EventOutcome { project_id, event_id: ev.event_id.clone(), issue_id, is_new, is_regression, post_process_job })
}

/// A count with the first and last time it was seen.
pub(crate) type Seen = (i64, f64, f64);

pub(crate) trait AddSeen {
    /// One more sighting at `t`.
    fn add(&mut self, t: f64);
    /// The sightings of `other` too.
    fn absorb(&mut self, other: Seen);
}

impl AddSeen for Seen {
    fn add(&mut self, t: f64) {
        self.absorb((1, t, t));
    }

    fn absorb(&mut self, (n, first, last): Seen) {
        self.0 += n;
        self.1 = self.1.min(first);
        self.2 = self.2.max(last);
    }
}

/// Counters summed over a batch and written once per key: a batch of 256
/// events of one issue updates its 12 tag values once, not 256 times.
#[derive(Default)]
struct Aggregates {
    /// Existing issues: events added, first and last seen (new issues start at 1 in their INSERT).
    issues: FastMap<i64, Seen>,
    tags: TagCounts,
    users: FastSet<(i64, String)>,
    hourly: FastMap<(i64, i64), i64>,
    /// Issues known to be unresolved (or ignored) in this batch: no regression check needed.
    unresolved: FastSet<i64>,
    /// Group hashes known to be in `group_hashes` (read or written in this
    /// batch), with the issue that owns them, by project.
    hashes: FastMap<i64, FastMap<String, i64>>,
    /// Aggregate views the batch's issues belong to.
    views: FastSet<(i64, &'static str)>,
}

impl Aggregates {
    /// Writes the counters; returns the tag counts, which the caller writes or keeps back.
    fn flush(self, conn: &Connection) -> Result<TagCounts> {
        for (id, (n, first, last)) in self.issues {
            conn.prepare_cached("UPDATE issues SET times_seen = times_seen + ?1, first_seen = MIN(first_seen, ?2), last_seen = MAX(last_seen, ?3) WHERE id = ?4")?
                .execute(params![n, first, last, id])?;
        }
        let mut new_users: FastMap<i64, i64> = FastMap::default();
        for (issue_id, user) in self.users {
            let added = conn.prepare_cached("INSERT OR IGNORE INTO issue_users (issue_id, user_key) VALUES (?, ?)")?.execute(params![issue_id, user])?;
            *new_users.entry(issue_id).or_default() += added as i64;
        }
        for (issue_id, n) in new_users.into_iter().filter(|(_, n)| *n > 0) {
            conn.prepare_cached("UPDATE issues SET user_count = user_count + ? WHERE id = ?")?.execute(params![n, issue_id])?;
        }
        for (issue_id, view) in self.views {
            conn.prepare_cached("INSERT OR IGNORE INTO issue_views (issue_id, view) VALUES (?, ?)")?.execute(params![issue_id, view])?;
        }
        for ((issue_id, hour), n) in self.hourly {
            conn.prepare_cached("INSERT INTO issue_hourly (issue_id, hour, count) VALUES (?1, ?2, ?3) ON CONFLICT (issue_id, hour) DO UPDATE SET count = count + ?3")?
                .execute(params![issue_id, hour, n])?;
        }
        Ok(self.tags)
    }
}

/// What the issue list shows without loading an event (Sentry's `metadata`).
fn issue_metadata(ev: &NormalizedEvent) -> Value {
    let exc = ev.data.get("exception").and_then(|e| e.get("values")).and_then(Value::as_array).and_then(|v| v.last());
    let mut m = serde_json::Map::new();
    if let Some(exc) = exc {
        if let Some(t) = exc.get("type") {
            m.insert("type".into(), t.clone());
        }
        if let Some(v) = exc.get("value") {
            m.insert("value".into(), v.clone());
        }
    } else if let Some(msg) = ev.data.get("logentry").and_then(|l| l.get("formatted").or_else(|| l.get("message"))) {
        m.insert("title".into(), msg.clone());
    }
    Value::Object(m)
}

/// Stores a user report; false if it is one stored already: a `feedback`
/// event sent again (by its own id), or a legacy report for an event that
/// has one (replaced by the new one, as Sentry does).
fn store_user_report(conn: &Connection, project_id: i64, r: &UserReport) -> Result<bool> {
    let values = params![project_id, r.event_id, r.kind, r.name, r.email, r.comments, r.url, r.created_at, r.source_id];
    let insert = "INSERT INTO user_reports (project_id, event_id, kind, name, email, comments, url, created_at, source_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
    if r.kind == "user_report" && r.event_id.is_some() {
        let replaced: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM user_reports WHERE project_id = ? AND event_id = ? AND kind = 'user_report')")?
            .query_row(params![project_id, r.event_id], |row| row.get(0))?;
        conn.prepare_cached(&format!(
            "{insert} ON CONFLICT (project_id, event_id) WHERE kind = 'user_report' AND event_id IS NOT NULL
             DO UPDATE SET name = excluded.name, email = excluded.email, comments = excluded.comments, created_at = excluded.created_at"
        ))?
        .execute(values)?;
        return Ok(!replaced);
    }
    Ok(conn.prepare_cached(&format!("{insert} ON CONFLICT (project_id, source_id) WHERE source_id IS NOT NULL DO NOTHING"))?.execute(values)? > 0)
}

/// Stores a transaction; false if one with its id is stored already.
fn store_transaction(conn: &Connection, project_id: i64, tx: &NormalizedEvent, blob: &[u8]) -> Result<bool> {
    let name = tx.data.get("transaction").and_then(Value::as_str).unwrap_or("<unlabeled transaction>");
    let trace = tx.data.get("contexts").and_then(|c| c.get("trace"));
    let op = trace.and_then(|t| t.get("op")).and_then(Value::as_str);
    let status = trace.and_then(|t| t.get("status")).and_then(Value::as_str);
    let start = tx.data.get("start_timestamp").and_then(Value::as_f64);
    let duration_ms = start.map(|s| (tx.timestamp - s) * 1000.0);
    let inserted = conn.prepare_cached(
        "INSERT OR IGNORE INTO transactions (project_id, event_id, name, op, status, start_timestamp, timestamp, duration_ms, environment, release, data)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![project_id, tx.event_id, name, op, status, start, tx.timestamp, duration_ms, tx.environment, tx.release, blob])?;
    Ok(inserted > 0)
}

/// A session counts once (when first seen); a crash, an abnormal end or
/// errors count once per session, whatever the number of updates.
fn apply_session(conn: &Connection, project_id: i64, s: &SessionUpdate) -> Result<()> {
    let previous: Option<(String, i64)> = conn
        .prepare_cached("SELECT status, errors FROM sessions WHERE project_id = ? AND sid = ?")?
        .query_row(params![project_id, s.sid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (was_status, was_errors, is_new) = match &previous {
        Some((st, e)) => (st.as_str(), *e, false),
        None => ("ok", 0, true),
    };
    // Terminal states stay terminal.
    let status = if matches!(was_status, "exited" | "crashed" | "abnormal") { was_status } else { s.status.as_str() };
    let errors = was_errors.max(s.errors);
    conn.prepare_cached(
        "INSERT INTO sessions (project_id, sid, release, environment, started, status, errors, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project_id, sid) DO UPDATE SET status = excluded.status, errors = excluded.errors, updated = excluded.updated",
    )?
    .execute(params![project_id, s.sid, s.release, s.environment, s.started, status, errors, s.timestamp])?;
    let total = i64::from(is_new);
    let crashed = i64::from(status == "crashed" && was_status != "crashed");
    let abnormal = i64::from(status == "abnormal" && was_status != "abnormal");
    let exited = i64::from(status == "exited" && was_status != "exited");
    let errored = i64::from(errors > 0 && was_errors == 0);
    conn.prepare_cached(
        "INSERT INTO session_aggregates (project_id, release, environment, total, exited, errored, abnormal, crashed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (project_id, release, environment) DO UPDATE SET total = total + excluded.total, exited = exited + excluded.exited,
         errored = errored + excluded.errored, abnormal = abnormal + excluded.abnormal, crashed = crashed + excluded.crashed",
    )?
    .execute(params![project_id, s.release, s.environment, total, exited, errored, abnormal, crashed])?;
    Ok(())
}

/// The nil check-in id means "the most recent in-progress check-in of this monitor".
fn apply_check_in(conn: &Connection, project_id: i64, c: &CheckIn) -> Result<()> {
    let target: Option<i64> = if c.check_in_id.chars().all(|ch| ch == '0' || ch == '-') {
        conn.prepare_cached("SELECT id FROM check_ins WHERE project_id = ? AND monitor_slug = ? AND status = 'in_progress' ORDER BY received DESC LIMIT 1")?
            .query_row(params![project_id, c.monitor_slug], |r| r.get(0))
            .optional()?
    } else {
        conn.prepare_cached("SELECT id FROM check_ins WHERE project_id = ? AND check_in_id = ?")?
            .query_row(params![project_id, c.check_in_id], |r| r.get(0))
            .optional()?
    };
    let data = c.data.to_string();
    match target {
        Some(id) => {
            conn.prepare_cached("UPDATE check_ins SET status = ?, duration = COALESCE(?, duration), updated = ?, data = ? WHERE id = ?")?
                .execute(params![c.status, c.duration, c.received, data, id])?;
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO check_ins (project_id, check_in_id, monitor_slug, status, duration, environment, release, received, updated, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![project_id, c.check_in_id, c.monitor_slug, c.status, c.duration, c.environment, c.release, c.received, c.received, data])?;
        }
    }
    Ok(())
}
