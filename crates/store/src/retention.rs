//! Retention: deleting what is older than a cutoff, so that the database
//! stops growing once it holds the retention period's data; and deleting
//! a whole project the same way ([`Selection`]).
//!
//! Deletion runs in small chunks, each its own write job, so that ingest's
//! commits go on in between (the writer is shared); [`delete_chunk`] is one
//! chunk, and [`delete`] runs them, paced to leave the writer at
//! least half of its time for everything else.
//!
//! Rows are found oldest first by row id, not by an index on time: row ids
//! grow with arrival, so the oldest rows are the first ones, and an index on
//! `received` would cost every stored event a B-tree insert. A chunk looks
//! at the first rows only and deletes those older than the cutoff; once the
//! first rows are all newer, the table is done. A row that arrived late with
//! an old time (a replayed backlog) waits until the rows ahead of it go.
//!
//! What goes: events by the time they were received; transactions by their
//! timestamp; attachments and user reports by when they were stored;
//! check-ins by when they were received; release-health sessions by their
//! last update. An issue goes, with its hashes, tag counts, users, hourly
//! counts and plugin data, once it was last seen before the cutoff and none
//! of its events is left. What stays: the issues still being seen (their
//! counters and tag counts keep their whole history, as in Sentry), session
//! aggregates, the ingest statistics and the accounts.
//!
//! Issues go the same way whoever deletes them (retention, a project's
//! deletion, the API): their counters (tag values, users, hours: as many
//! rows as an issue had distinct values) in chunks of rows, and only then
//! the issue rows, whose cascade is small by then. One issue with a million
//! tag values would otherwise be one write job holding ingest for seconds.
//! Retention and the API first hide the issue (`query::start_issue_deletion`:
//! it leaves every list and its hashes go); a project's issues are hidden
//! with the project.
//!
//! SQLite reuses the freed pages for new data; the file itself shrinks only
//! with `VACUUM` (offline, see `docs/configuration.md`, Retention).

use rusqlite::{params, Connection};

use crate::Result;

/// Rows looked at (and at most deleted) per table in the first chunk of
/// [`delete`], which then sizes chunks by how long they take.
pub const CHUNK_ROWS: usize = 1000;

/// Issues hidden or deleted in one chunk, at most (their counters go first,
/// in chunks of rows).
const CHUNK_ISSUES: usize = 200;

/// What one or more chunks deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub events: u64,
    pub issues: u64,
    pub transactions: u64,
    pub attachments: u64,
    pub user_reports: u64,
    pub check_ins: u64,
    pub sessions: u64,
    /// Rows of deleted issues' tag counts, users and hourly counts, which go
    /// in chunks of their own before the issues.
    pub counters: u64,
}

impl Deleted {
    /// Whether nothing was deleted (the last chunk of a run).
    pub fn is_empty(&self) -> bool {
        *self == Deleted::default()
    }

    /// Adds another chunk's counts.
    pub fn add(&mut self, other: Deleted) {
        self.events += other.events;
        self.issues += other.issues;
        self.transactions += other.transactions;
        self.attachments += other.attachments;
        self.user_reports += other.user_reports;
        self.check_ins += other.check_ins;
        self.sessions += other.sessions;
        self.counters += other.counters;
    }
}

/// The kinds deleted, e.g. `1200 events, 1 issue` (events always, the rest when any).
/// Hourly counts are counted with the tag counts and users.
impl std::fmt::Display for Deleted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counted = |n: u64, kind: &str| format!("{n} {kind}{}", if n == 1 { "" } else { "s" });
        write!(f, "{}", counted(self.events, "event"))?;
        let rest = [
            (self.issues, "issue"),
            (self.transactions, "transaction"),
            (self.attachments, "attachment"),
            (self.user_reports, "user report"),
            (self.check_ins, "check-in"),
            (self.sessions, "session"),
            (self.counters, "tag count and user row"),
        ];
        for (n, kind) in rest.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, ", {}", counted(n, kind))?;
        }
        Ok(())
    }
}

/// Where [`Deleted`] counts a table's rows.
type CountOf = fn(&mut Deleted) -> &mut u64;

/// The tables deleted by row order: the column that dates a row, and where
/// [`Deleted`] counts them.
const BY_ROW_ORDER: [(&str, &str, CountOf); 6] = [
    ("events", "received", |d| &mut d.events),
    ("transactions", "timestamp", |d| &mut d.transactions),
    ("attachments", "created_at", |d| &mut d.attachments),
    ("user_reports", "created_at", |d| &mut d.user_reports),
    ("check_ins", "received", |d| &mut d.check_ins),
    ("sessions", "updated", |d| &mut d.sessions),
];

/// What a run deletes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// Everything older than this time (Unix seconds): retention.
    OlderThan(f64),
    /// Everything of this project (then the rest of it, with
    /// [`finish_project`]).
    Project(i64),
    /// This issue, once its deletion has started
    /// (`query::start_issue_deletion`): its events, tag counts, users and
    /// hourly counts, then the issue itself.
    Issue(i64),
}

/// Deletes one chunk of `selection`: up to `rows` of each table, then the
/// issues left without events. Run it as a write job, again until it
/// returns [`Deleted::is_empty`].
///
/// Issues are looked at cheaply: for retention, those whose events the
/// chunk deleted, and all the old ones (a scan of the project's old issues)
/// only once no old event is left; for a project, its issues once its events
/// are gone (the digest stores none for a project being deleted).
pub fn delete_chunk(conn: &Connection, selection: Selection, rows: usize) -> Result<Deleted> {
    let mut deleted = Deleted::default();
    let key = match selection {
        Selection::OlderThan(cutoff) => rusqlite::types::Value::Real(cutoff),
        Selection::Project(id) => rusqlite::types::Value::Integer(id),
        Selection::Issue(id) => return delete_issue_chunk(conn, id, rows),
    };
    let mut touched_issues: Vec<i64> = Vec::new();
    for (table, column, count) in BY_ROW_ORDER {
        let chosen = match selection {
            // The first `rows` rows by row id, of which those older than the cutoff.
            Selection::OlderThan(_) => format!("SELECT rowid FROM (SELECT rowid, {column} AS t FROM {table} ORDER BY rowid LIMIT ?2) WHERE t < ?1"),
            // Every table has an index that starts with `project_id`.
            Selection::Project(_) => format!("SELECT rowid FROM {table} WHERE project_id = ?1 LIMIT ?2"),
            Selection::Issue(_) => unreachable!("returned above"),
        };
        let n = if table == "events" {
            let mut st = conn.prepare_cached(&format!("DELETE FROM events WHERE rowid IN ({chosen}) RETURNING issue_id"))?;
            let issues = st.query_map(params![key, rows as i64], |r| r.get::<_, Option<i64>>(0))?;
            let mut n = 0;
            for issue in issues {
                n += 1;
                touched_issues.extend(issue?);
            }
            n
        } else {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE rowid IN ({chosen})"))?.execute(params![key, rows as i64])? as u64
        };
        *count(&mut deleted) = n;
    }
    let doomed = match selection {
        Selection::OlderThan(cutoff) => {
            // The issues hidden earlier (by retention, or by an API deletion
            // that a stop interrupted) whose events are gone. Only when none
            // is left are more hidden: hidden ones stay in the range that
            // `old_issues` reads until they are deleted, and so that a chunk
            // hides no more than it can delete.
            let pending = pending_issues_without_events(conn)?;
            if pending.is_empty() {
                touched_issues.sort_unstable();
                touched_issues.dedup();
                let mut old = old_issues_left_without_events(conn, &touched_issues, cutoff)?;
                if deleted.events == 0 {
                    old.extend(old_issues(conn, cutoff, CHUNK_ISSUES)?);
                }
                old.truncate(CHUNK_ISSUES);
                for &id in &old {
                    crate::query::start_issue_deletion(conn, id)?;
                }
                old
            } else {
                pending
            }
        }
        Selection::Project(id) if deleted.events == 0 => conn
            .prepare_cached(&format!("SELECT id FROM issues WHERE project_id = ?1 AND status <> '{}' LIMIT ?2", crate::query::DELETED))?
            .query_map(params![id, CHUNK_ISSUES as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        Selection::Project(_) | Selection::Issue(_) => Vec::new(),
    };
    let step = delete_issues_in_chunks(conn, &doomed, rows)?;
    (deleted.issues, deleted.counters) = (step.issues, step.counters);
    // The same bookkeeping as deleting by hand (`query::delete_issues` does
    // it for issues): row ids may be given out again.
    if deleted.events > 0 && deleted.issues == 0 {
        crate::tags::after_events_deleted(conn)?;
    }
    Ok(deleted)
}

/// One chunk of an issue being deleted: up to `rows` of its events; once
/// none is left, its counters and then the issue, as
/// [`delete_issues_in_chunks`] does.
fn delete_issue_chunk(conn: &Connection, issue_id: i64, rows: usize) -> Result<Deleted> {
    // The `events_issue` index finds them.
    let events = conn
        .prepare_cached("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE issue_id = ?1 LIMIT ?2)")?
        .execute(params![issue_id, rows as i64])? as u64;
    let deleted = Deleted { events, ..Deleted::default() };
    if events > 0 {
        crate::tags::after_events_deleted(conn)?;
        return Ok(deleted);
    }
    let pending = conn
        .prepare_cached(&format!("SELECT 1 FROM issues WHERE id = ? AND status = '{}'", crate::query::PENDING_DELETION))?
        .exists([issue_id])?;
    if !pending {
        return Ok(deleted);
    }
    delete_issues_in_chunks(conn, &[issue_id], rows)
}

/// The per-issue tables with a row per distinct value: tag values, users,
/// hours seen. `?1` is the issue, `?2` the most rows to delete. The inner
/// query finds the rows by the primary key, which starts with `issue_id`,
/// and so does the outer one (`issue_id = ?1` with the rest of the key).
const ISSUE_COUNTERS: [&str; 3] = [
    "DELETE FROM issue_tag_values WHERE rowid IN (SELECT rowid FROM issue_tag_values WHERE issue_id = ?1 LIMIT ?2)",
    "DELETE FROM issue_users WHERE issue_id = ?1 AND user_key IN (SELECT user_key FROM issue_users WHERE issue_id = ?1 LIMIT ?2)",
    "DELETE FROM issue_hourly WHERE issue_id = ?1 AND hour IN (SELECT hour FROM issue_hourly WHERE issue_id = ?1 LIMIT ?2)",
];

/// One step of deleting these issues, which have no event left: up to
/// `rows` of their counters ([`ISSUE_COUNTERS`]); when that leaves none,
/// the issues too, whose cascade (hashes, plugin data, views) is then a
/// few rows each. Nothing when `issues` is empty.
fn delete_issues_in_chunks(conn: &Connection, issues: &[i64], rows: usize) -> Result<Deleted> {
    let mut deleted = Deleted::default();
    if issues.is_empty() {
        return Ok(deleted);
    }
    for &issue in issues {
        for sql in ISSUE_COUNTERS {
            let budget = rows as u64 - deleted.counters;
            deleted.counters += conn.prepare_cached(sql)?.execute(params![issue, budget as i64])? as u64;
            if deleted.counters == rows as u64 {
                return Ok(deleted);
            }
        }
    }
    // Within the budget: no counter is left.
    deleted.issues = crate::query::delete_issues(conn, issues)?;
    Ok(deleted)
}

/// Up to [`CHUNK_ISSUES`] issues being deleted whose events are gone (the
/// partial index `issues_pending_deletion` finds them).
fn pending_issues_without_events(conn: &Connection) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT i.id FROM issues i WHERE i.status = '{}' AND NOT EXISTS (SELECT 1 FROM events e WHERE e.issue_id = i.id) LIMIT {CHUNK_ISSUES}",
        crate::query::PENDING_DELETION
    ))?;
    let ids = st.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// Of these issues, those last seen before the cutoff with no event left
/// (and not already being deleted).
fn old_issues_left_without_events(conn: &Connection, issues: &[i64], cutoff: f64) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT 1 FROM issues WHERE id = ?1 AND last_seen < ?2 AND {} AND NOT EXISTS (SELECT 1 FROM events WHERE issue_id = ?1)",
        crate::query::visible("")
    ))?;
    let mut old = Vec::new();
    for &id in issues {
        if st.exists(params![id, cutoff])? {
            old.push(id);
        }
    }
    Ok(old)
}

/// The last step of deleting a project, after its chunks: what is left of it
/// (options, counters, and anything the chunks did not reach). Its row
/// stays, marked deleted, so that its id is never given to another project:
/// envelopes still queued for it must not land there. Those the digest
/// drops when it reaches them (`digest::apply`), as it does while the
/// deletion runs; deleting them here would scan the whole queue, which has
/// no index on the project (every ingest insert would pay for one), in a
/// single write job, and a queue behind by 100,000 envelopes is hundreds of
/// megabytes.
pub fn finish_project(conn: &Connection, project_id: i64) -> Result<()> {
    for sql in [
        "DELETE FROM post_process WHERE project_id = ?1",
        "DELETE FROM item_counts WHERE project_id = ?1",
        "DELETE FROM client_outcomes WHERE project_id = ?1",
        "DELETE FROM project_dictionaries WHERE project_id = ?1",
        "DELETE FROM plugin_options WHERE scope IN ('project', 'user') AND scope_id = ?1",
        "DELETE FROM project_keys WHERE project_id = ?1",
        "DELETE FROM session_aggregates WHERE project_id = ?1",
        "DELETE FROM events WHERE project_id = ?1",
        "DELETE FROM transactions WHERE project_id = ?1",
        "DELETE FROM attachments WHERE project_id = ?1",
        "DELETE FROM user_reports WHERE project_id = ?1",
        "DELETE FROM check_ins WHERE project_id = ?1",
        "DELETE FROM sessions WHERE project_id = ?1",
        "UPDATE projects SET deleting = 2 WHERE id = ?1",
    ] {
        conn.execute(sql, [project_id])?;
    }
    // Normally none by now: the chunks took them, and the digest stores
    // nothing for a project being deleted. The emptied row that keeps the
    // newest deleted issue's id taken stays (`query::delete_issues`).
    let left: Vec<i64> = conn
        .prepare_cached(&format!("SELECT id FROM issues WHERE project_id = ?1 AND status <> '{}'", crate::query::DELETED))?
        .query_map([project_id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    crate::query::delete_issues(conn, &left)?;
    crate::tags::after_issue_deleted(conn)
}

/// Issues last seen before the cutoff with no event left and not hidden, up
/// to `limit` in all (the `(project_id, last_seen)` index finds them).
fn old_issues(conn: &Connection, cutoff: f64, limit: usize) -> Result<Vec<i64>> {
    let projects: Vec<i64> = conn.prepare_cached("SELECT id FROM projects")?.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT i.id FROM issues i WHERE i.project_id = ?1 AND i.last_seen < ?2 AND {}
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.issue_id = i.id) LIMIT ?3",
        crate::query::visible("i.")
    ))?;
    let mut old = Vec::new();
    for project in projects {
        if old.len() >= limit {
            break;
        }
        for id in st.query_map(params![project, cutoff, (limit - old.len()) as i64], |r| r.get(0))? {
            old.push(id?);
        }
    }
    Ok(old)
}

/// Deletes `selection`, chunk after chunk through the writer, until nothing
/// is left or `progress` (called with the running total after each chunk)
/// breaks; returns the total. A project is then removed with
/// [`finish_project`] (not here: the caller decides, after a full run). Blocking: call it
/// from a thread of its own (the CLI, or `spawn_blocking`).
///
/// It takes at most about half of the writer's time, so that ingest's
/// commits are not held up for long: chunks are sized to take about
/// [`CHUNK_TARGET`] (halved when one takes twice that, doubled when one
/// takes under half), and after each it waits as long as the chunk took.
pub fn delete(store: &crate::Store, selection: Selection, mut progress: impl FnMut(&Deleted) -> std::ops::ControlFlow<()>) -> Result<Deleted> {
    let mut total = Deleted::default();
    let mut rows = CHUNK_ROWS;
    loop {
        let started = std::time::Instant::now();
        let chunk = store.write_blocking(move |c| delete_chunk(c, selection, rows))?;
        let took = started.elapsed();
        tracing::debug!(?selection, rows, ms = took.as_secs_f64() * 1e3, ?chunk, "deletion chunk");
        if chunk.is_empty() {
            return Ok(total);
        }
        total.add(chunk);
        if progress(&total).is_break() {
            return Ok(total);
        }
        if took > 2 * CHUNK_TARGET {
            rows = (rows / 2).max(MIN_CHUNK_ROWS);
        } else if took < CHUNK_TARGET / 2 {
            rows = (rows * 2).min(MAX_CHUNK_ROWS);
        }
        std::thread::sleep(took.max(std::time::Duration::from_millis(1)));
    }
}

/// Deletes an issue whatever its size: starts its deletion (it disappears
/// from the lists, and its hashes go: `query::start_issue_deletion`), then
/// deletes it in paced chunks like [`delete`]. Safe to run again on an issue
/// whose deletion stopped halfway (starting then finds nothing to do).
pub fn delete_issue(store: &crate::Store, issue_id: i64, progress: impl FnMut(&Deleted) -> std::ops::ControlFlow<()>) -> Result<Deleted> {
    match store.write_blocking(move |c| crate::query::start_issue_deletion(c, issue_id)) {
        Ok(()) | Err(crate::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    delete(store, Selection::Issue(issue_id), progress)
}

/// How long one chunk of [`delete`] should hold the writer.
pub const CHUNK_TARGET: std::time::Duration = std::time::Duration::from_millis(10);
const MIN_CHUNK_ROWS: usize = 50;
const MAX_CHUNK_ROWS: usize = 10_000;

/// Deletes a project whole: starts its deletion (its keys go, it is hidden;
/// `accounts::start_project_deletion`), deletes its data like [`delete`],
/// then the project ([`finish_project`]). Safe to run again on a project
/// whose deletion stopped halfway. When `progress` breaks, the project stays
/// hidden and half deleted, for a later run to finish.
pub fn delete_project(store: &crate::Store, project_id: i64, progress: impl FnMut(&Deleted) -> std::ops::ControlFlow<()>) -> Result<Deleted> {
    store.write_blocking(move |c| crate::accounts::start_project_deletion(c, project_id))?;
    let mut broke = false;
    let mut progress = progress;
    let deleted = delete(store, Selection::Project(project_id), |so_far| {
        let flow = progress(so_far);
        broke = flow.is_break();
        flow
    })?;
    if !broke {
        store.write_blocking(move |c| finish_project(c, project_id))?;
    }
    Ok(deleted)
}
