//! Tag-value counts per issue (`issue_tag_values`): how often each value of
//! each tag was seen on an issue, and when first and last.
//!
//! Writing them was the largest part of the writer's work per event: a
//! batch of 200 events over 90 issues upserts about a thousand rows, nearly
//! all of them the same `level`, `release`, `os` and `browser` values the
//! previous batch wrote. So under sustained load the digest keeps a batch's
//! counts back in memory ([`TagCounts`]) and writes those of many batches
//! at once, about once a second ([`TagsInBatch::KeepBack`]). Below
//! saturation every batch writes its own, as before.
//!
//! Kept-back counts live in memory only. What makes that safe is a mark in
//! the database, `digest_state.tags_uncounted_from`: when set, events with
//! that row id or a higher one may be stored without their tags counted;
//! every event below it is counted. The first batch that keeps counts back
//! sets it, in its own transaction; the transaction that writes them clears
//! it. After a crash, [`recount_uncounted`] counts the tags of the events
//! from the mark on (read back from the stored events) before the digest
//! starts, so every stored event is counted exactly once.
//!
//! Kept-back counts are only written as they are when the mark is the one
//! their first batch set and no issue was deleted since they were taken
//! (`digest_state.issues_deleted`): SQLite gives a new issue the highest id
//! plus one, so a deleted issue's id may already belong to a new issue.
//! Otherwise the write counts every event from the mark on again instead,
//! its own batch's included.

use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::digest::{AddSeen, Seen};
use crate::Result;

/// Counts of tag values for a set of stored events, by issue, key and value.
#[derive(Debug, Default)]
pub struct TagCounts {
    rows: hashbrown::HashMap<(i64, String, String), Seen, foldhash::fast::RandomState>,
    /// When the oldest of these counts was taken.
    since: Option<Instant>,
    /// Kept back: the row id of the first event of the oldest batch, and
    /// `issues_deleted` when that batch was stored.
    kept_from: Option<(i64, i64)>,
}

impl TagCounts {
    /// Distinct (issue, key, value) rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How long the oldest of these counts has waited (zero when empty).
    pub fn age(&self) -> Duration {
        self.since.map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: TagCounts) {
        if other.is_empty() {
            return;
        }
        if self.rows.is_empty() {
            *self = other;
            return;
        }
        self.since = match (self.since, other.since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The oldest batch's deletion count is the smallest (it only grows),
        // and without deletions in between so is its first row id.
        self.kept_from = match (self.kept_from, other.kept_from) {
            (Some((row_a, deleted_a)), Some((row_b, deleted_b))) => Some((row_a.min(row_b), deleted_a.min(deleted_b))),
            (a, b) => a.or(b),
        };
        for (key, seen) in other.rows {
            self.rows.entry(key).or_insert((0, seen.1, seen.2)).absorb(seen);
        }
    }

    /// After the transaction of a batch stored with these as `kept_back`
    /// committed: if it wrote the tag counts, these are forgotten; if it
    /// kept its own back, `batch` (what [`crate::digest::apply_with`]
    /// returned) joins these. A batch that failed changes nothing.
    pub fn committed(&mut self, wrote: bool, batch: TagCounts) {
        if wrote {
            self.clear();
        } else {
            self.merge(batch);
        }
    }

    /// Forgets every count (after they are committed).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.since = None;
        self.kept_from = None;
    }

    /// Counts one tag value seen on an event of an issue at `timestamp`.
    pub fn add(&mut self, issue_id: i64, key: &str, value: &str, timestamp: f64) {
        self.since.get_or_insert_with(Instant::now);
        // Most values were seen earlier in the batch: look them up without
        // allocating, and copy the strings only for a new row.
        let seen = match self.rows.get_mut(&RowRef(issue_id, key, value)) {
            Some(seen) => seen,
            None => self.rows.entry((issue_id, key.to_string(), value.to_string())).or_insert((0, timestamp, timestamp)),
        };
        seen.add(timestamp);
    }

    /// Upserts the rows, summed into what is stored.
    fn upsert(&self, conn: &Connection) -> Result<()> {
        let rows: Vec<_> = self.rows.iter().collect();
        let mut rest = &rows[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rows_per_statement(rest.len()));
            let values = chunk.iter().flat_map(|((issue_id, k, v), (n, first, last))| -> [&dyn rusqlite::ToSql; 6] { [issue_id, k, v, n, first, last] });
            conn.prepare_cached(&upsert_sql(chunk.len()))?.execute(rusqlite::params_from_iter(values))?;
            rest = tail;
        }
        Ok(())
    }
}

/// A row's key, borrowed: hashes as the owned `(i64, String, String)` does
/// (a tuple hashes its fields in order, a `String` as its `str`).
struct RowRef<'a>(i64, &'a str, &'a str);

impl std::hash::Hash for RowRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
        self.2.hash(state);
    }
}

impl hashbrown::Equivalent<(i64, String, String)> for RowRef<'_> {
    fn equivalent(&self, key: &(i64, String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1 && self.2 == key.2
    }
}

/// What [`crate::digest::apply_with`] does with a batch's tag counts.
#[derive(Debug, Clone, Copy)]
pub enum TagsInBatch<'a> {
    /// Writes them in the batch's transaction, with `kept_back` (the counts
    /// of earlier batches that were kept back; they may be empty).
    Write { kept_back: &'a TagCounts },
    /// Returns them instead, for a later batch to write, and sets the mark
    /// that makes a crash before then recoverable.
    KeepBack,
}

const MARK: &str = "tags_uncounted_from";
const ISSUES_DELETED: &str = "issues_deleted";

/// The mark, and how many issues were ever deleted.
fn state(conn: &Connection) -> Result<(Option<i64>, i64)> {
    let read = |key: &str| -> Result<Option<i64>> { Ok(conn.prepare_cached("SELECT value FROM digest_state WHERE key = ?")?.query_row([key], |r| r.get(0)).optional()?.flatten()) };
    Ok((read(MARK)?, read(ISSUES_DELETED)?.unwrap_or(0)))
}

fn clear_mark(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE digest_state SET value = NULL WHERE key = ?")?.execute([MARK])?;
    Ok(())
}

/// Stores a batch's tag counts as `mode` says; returns them when kept back
/// (and an empty set when written). Runs in the batch's transaction, after
/// its events are stored; `first_event_id` is the row id its first event got,
/// when it stored events with tags.
pub(crate) fn finish_batch(conn: &Connection, mut counts: TagCounts, first_event_id: Option<i64>, mode: TagsInBatch<'_>) -> Result<TagCounts> {
    match mode {
        TagsInBatch::Write { kept_back } => {
            let (mark, deletions) = state(conn)?;
            match mark {
                Some(mark) if kept_back.kept_from == Some((mark, deletions)) => {
                    kept_back.upsert(conn)?;
                    counts.upsert(conn)?;
                    clear_mark(conn)?;
                }
                // A mark these counts' first batch did not set (a crash's, which the
                // start could not recount), or counts from before an issue was
                // deleted: the events from the mark on, this batch's included,
                // are counted again from what is stored.
                Some(mark) => {
                    recount_from(conn, mark)?;
                }
                None => {
                    if !kept_back.is_empty() {
                        // Not reachable by this digest: only its own writes clear the mark.
                        tracing::error!(rows = kept_back.len(), "kept-back tag counts without their mark in the database; they are dropped (another process is digesting this database?)");
                    }
                    counts.upsert(conn)?;
                }
            }
            Ok(TagCounts::default())
        }
        TagsInBatch::KeepBack => {
            if let Some(first) = first_event_id {
                let (mark, deletions) = state(conn)?;
                if mark.is_none() {
                    conn.prepare_cached("UPDATE digest_state SET value = ? WHERE key = ?")?.execute(params![first, MARK])?;
                }
                counts.kept_from = Some((first, deletions));
            }
            Ok(counts)
        }
    }
}

/// Writes counts kept back from earlier batches in a transaction of their
/// own (when the digest stops), and clears the mark.
pub fn write_kept_back(conn: &Connection, kept_back: &TagCounts) -> Result<()> {
    finish_batch(conn, TagCounts::default(), None, TagsInBatch::Write { kept_back })?;
    Ok(())
}

/// Counts the tags of the events stored from the mark on, whose kept-back
/// counts were lost (the process stopped before writing them), and clears
/// the mark; returns how many events it counted. Call it before the digest
/// starts, in a transaction, and only where the digest runs: in another
/// process the same events would be counted twice.
pub fn recount_uncounted(conn: &Connection) -> Result<usize> {
    match state(conn)?.0 {
        Some(mark) => recount_from(conn, mark),
        None => Ok(0),
    }
}

/// Counts the tags of the stored events from row id `from` on, and clears the mark.
fn recount_from(conn: &Connection, from: i64) -> Result<usize> {
    let mut counts = TagCounts::default();
    let mut events = 0;
    let mut st = conn.prepare_cached("SELECT id, issue_id, timestamp, data FROM events WHERE id >= ? AND issue_id IS NOT NULL ORDER BY id")?;
    let mut rows = st.query([from])?;
    while let Some(row) = rows.next()? {
        let (id, issue_id, timestamp): (i64, i64, f64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let blob = row.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
        // A stored event that cannot be read back has no tags to count; reading
        // it through the API reports the same error.
        let data = match crate::dictionary::decompress(conn, blob).and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).map_err(|e| crate::StoreError::Invalid(e.to_string()))) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!(event_row = id, error = %e, "a stored event cannot be read back; its tags are not counted");
                continue;
            }
        };
        // Stored as [key, value] pairs (see `picket_core::normalize`).
        for pair in data.get("tags").and_then(serde_json::Value::as_array).into_iter().flatten() {
            if let Some([serde_json::Value::String(k), serde_json::Value::String(v)]) = pair.as_array().map(Vec::as_slice) {
                counts.add(issue_id, k, v, timestamp);
            }
        }
        events += 1;
    }
    drop(rows);
    counts.upsert(conn)?;
    clear_mark(conn)?;
    Ok(events)
}

/// After an issue is deleted: kept-back counts taken before are not written
/// as they are (the issue's id may go to a new issue), and the mark comes
/// down to at most the next event id (SQLite gives a new row the highest id
/// plus one, so deleting the newest events would otherwise let new,
/// uncounted events take ids below the mark).
pub(crate) fn after_issue_deleted(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE digest_state SET value = value + 1 WHERE key = ?")?.execute([ISSUES_DELETED])?;
    after_events_deleted(conn)
}

/// After events are deleted (no issue): only the mark needs to come down,
/// for the same reason as in [`after_issue_deleted`].
pub(crate) fn after_events_deleted(conn: &Connection) -> Result<()> {
    conn.prepare_cached(
        "UPDATE digest_state SET value = (SELECT IFNULL(MAX(id), 0) + 1 FROM events)
         WHERE key = ?1 AND value > (SELECT IFNULL(MAX(id), 0) + 1 FROM events)",
    )?
    .execute([MARK])?;
    Ok(())
}

/// Tag values go in as multi-row upserts: the bind-step-reset round trip of
/// a statement per tag value was a good part of the writer's time. Chunks
/// are powers of two up to this, so that a handful of statement texts
/// serve every batch (and stay in the prepared-statement cache).
const MAX_ROWS_PER_STATEMENT: usize = 128;

fn rows_per_statement(remaining: usize) -> usize {
    if remaining >= MAX_ROWS_PER_STATEMENT {
        MAX_ROWS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

fn upsert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen) VALUES {values}
         ON CONFLICT (issue_id, key, value) DO UPDATE SET times_seen = times_seen + excluded.times_seen,
         first_seen = MIN(first_seen, excluded.first_seen), last_seen = MAX(last_seen, excluded.last_seen)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn a_borrowed_row_key_hashes_as_the_owned_one() {
        let hasher = foldhash::fast::RandomState::default();
        let owned = (42i64, "browser".to_string(), "Firefox 128.0".to_string());
        assert_eq!(hasher.hash_one(RowRef(42, "browser", "Firefox 128.0")), hasher.hash_one(&owned));
        let mut counts = TagCounts::default();
        counts.add(42, "browser", "Firefox 128.0", 1.0);
        counts.add(42, "browser", "Firefox 128.0", 3.0);
        counts.add(42, "browser", "Firefox", 2.0);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts.rows.get(&owned), Some(&(2, 1.0, 3.0)));
    }
}
