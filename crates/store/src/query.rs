//! Reads for the API: issues with search and sort, events, tag values,
//! attachments, and the other stored item types.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use crate::{Result, StoreError};

/// An issue as listed.
#[derive(Debug, Clone)]
pub struct Issue {
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    pub culprit: String,
    pub event_type: String,
    pub level: String,
    pub platform: String,
    pub logger: Option<String>,
    pub status: String,
    pub substatus: Option<String>,
    pub first_seen: f64,
    pub last_seen: f64,
    pub times_seen: i64,
    pub user_count: i64,
    pub first_release: Option<String>,
    pub metadata: Value,
    /// The issue's number in its project (1, 2, ...), as in `WEB-12`.
    pub short_id: i64,
}

const ISSUE_COLUMNS: &str = "id, project_id, title, culprit, event_type, level, platform, logger, status, substatus, first_seen, last_seen, times_seen, user_count, first_release, metadata, short_id";

fn issue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Issue> {
    let metadata: String = r.get(15)?;
    Ok(Issue {
        id: r.get(0)?,
        project_id: r.get(1)?,
        title: r.get(2)?,
        culprit: r.get(3)?,
        event_type: r.get(4)?,
        level: r.get(5)?,
        platform: r.get(6)?,
        logger: r.get(7)?,
        status: r.get(8)?,
        substatus: r.get(9)?,
        first_seen: r.get(10)?,
        last_seen: r.get(11)?,
        times_seen: r.get(12)?,
        user_count: r.get(13)?,
        first_release: r.get(14)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::Null),
        short_id: r.get(16)?,
    })
}

/// Issue statuses.
pub const STATUSES: &[&str] = &["unresolved", "resolved", "ignored"];

/// Sort orders of the issue stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssueSort {
    /// Last seen, newest first.
    #[default]
    Date,
    /// First seen, newest first.
    New,
    /// Times seen, most first.
    Freq,
    /// Distinct users, most first.
    User,
}

impl IssueSort {
    pub fn parse(s: &str) -> Option<IssueSort> {
        match s {
            "date" | "" => Some(IssueSort::Date),
            "new" => Some(IssueSort::New),
            "freq" => Some(IssueSort::Freq),
            "user" => Some(IssueSort::User),
            _ => None,
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            IssueSort::Date => "last_seen DESC, id DESC",
            IssueSort::New => "first_seen DESC, id DESC",
            IssueSort::Freq => "times_seen DESC, id DESC",
            IssueSort::User => "user_count DESC, id DESC",
        }
    }
}

/// A parsed search (`is:unresolved level:error release:1.0 browser:Firefox "free text"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueSearch {
    pub status: Option<String>,
    /// Tag filters: `level`, `release`, `environment` and any tag key; `!key:value` negates.
    pub tags: Vec<(String, String, bool)>,
    pub text: Vec<String>,
    /// Aggregate views the issue must be in (set by the stream's view tab, not by the query text).
    pub views: Vec<String>,
    /// The conditions contradict each other (two different statuses): nothing matches.
    pub contradiction: bool,
}

impl IssueSearch {
    /// Adds a status condition; a different status than one already required matches nothing.
    pub fn require_status(&mut self, status: &str) -> Result<()> {
        if !STATUSES.contains(&status) {
            return Err(StoreError::Invalid(format!("unknown status '{status}': use unresolved, resolved or ignored")));
        }
        match &self.status {
            Some(s) if s != status => self.contradiction = true,
            _ => self.status = Some(status.to_string()),
        }
        Ok(())
    }
}

impl IssueSearch {
    /// Parses a Sentry-style search string. Unknown `is:` values are an error
    /// that says which values exist.
    pub fn parse(q: &str) -> Result<IssueSearch> {
        let mut s = IssueSearch::default();
        for token in tokenize(q) {
            let (negated, token) = match token.strip_prefix('!') {
                Some(t) => (true, t.to_string()),
                None => (false, token),
            };
            match token.split_once(':') {
                Some(("is", v)) => {
                    if !STATUSES.contains(&v) {
                        return Err(StoreError::Invalid(format!("unknown status 'is:{v}': use is:unresolved, is:resolved or is:ignored")));
                    }
                    s.require_status(v)?;
                }
                Some((k, v)) if !k.is_empty() && !v.is_empty() && !k.contains(char::is_whitespace) => {
                    s.tags.push((k.to_string(), v.trim_matches('"').to_string(), negated));
                }
                _ => s.text.push(token.trim_matches('"').to_string()),
            }
        }
        Ok(s)
    }
}

/// Splits on whitespace, keeping `"quoted phrases"` (also `key:"a b"`) together.
fn tokenize(q: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in q.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

/// Lists a project's issues; returns one more row than `limit` when there are more.
pub fn list_issues(conn: &Connection, project_id: i64, search: &IssueSearch, sort: IssueSort, offset: usize, limit: usize) -> Result<Vec<Issue>> {
    let mut sql = format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE project_id = ? AND {}", visible(""));
    let mut args: Vec<SqlValue> = vec![project_id.into()];
    if search.contradiction {
        sql.push_str(" AND 0");
    }
    if let Some(st) = &search.status {
        sql.push_str(" AND status = ?");
        args.push(st.clone().into());
    }
    for (k, v, negated) in &search.tags {
        sql.push_str(if *negated { " AND NOT" } else { " AND" });
        sql.push_str(" EXISTS (SELECT 1 FROM issue_tag_values t WHERE t.issue_id = issues.id AND t.key = ? AND t.value = ?)");
        args.push(k.clone().into());
        args.push(v.clone().into());
    }
    for v in &search.views {
        sql.push_str(" AND EXISTS (SELECT 1 FROM issue_views v WHERE v.issue_id = issues.id AND v.view = ?)");
        args.push(v.clone().into());
    }
    for t in &search.text {
        sql.push_str(" AND search_text LIKE ? ESCAPE '\\'");
        let escaped = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        args.push(format!("%{escaped}%").into());
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT ? OFFSET ?", sort.order_by()));
    args.push((limit as i64 + 1).into());
    args.push((offset as i64).into());
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(args), issue_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// An issue; [`StoreError::NotFound`] also for one being deleted or deleted.
pub fn issue(conn: &Connection, id: i64) -> Result<Issue> {
    conn.prepare_cached(&format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE id = ? AND {}", visible("")))?
        .query_row([id], issue_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("issue {id}")))
}

/// Sets an issue's status; resolving records when, unresolving clears it.
pub fn set_issue_status(conn: &Connection, id: i64, status: &str) -> Result<()> {
    if !STATUSES.contains(&status) {
        return Err(StoreError::Invalid(format!("unknown status '{status}': use unresolved, resolved or ignored")));
    }
    let n = conn.execute(
        "UPDATE issues SET status = ?1, substatus = NULL, resolved_at = CASE WHEN ?1 = 'resolved' THEN ?2 ELSE NULL END WHERE id = ?3",
        params![status, crate::now(), id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("issue {id}")));
    }
    Ok(())
}

/// The status of an issue whose deletion has started
/// ([`start_issue_deletion`], by the API or by retention): no query shows it
/// any more, and `retention::delete_issue` (or retention's next chunks)
/// deletes what is left of it.
pub const PENDING_DELETION: &str = "pending_deletion";

/// Starts deleting an issue, in one short write job however many events it
/// has: it disappears from every list and lookup, and its grouping hashes
/// go, so that new events with them open a new issue instead of joining
/// this one. Its events and counters are then deleted in chunks
/// (`retention::delete_issue`). Not found: no such issue, or one being
/// deleted already.
pub fn start_issue_deletion(conn: &Connection, id: i64) -> Result<()> {
    let n = conn.execute(&format!("UPDATE issues SET status = '{PENDING_DELETION}' WHERE id = ? AND {}", visible("")), [id])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("issue {id}")));
    }
    conn.execute("DELETE FROM group_hashes WHERE issue_id = ?", [id])?;
    conn.execute("DELETE FROM issue_views WHERE issue_id = ?", [id])?;
    Ok(())
}

/// The issues whose deletion was started and not finished (a stop came in
/// between, or retention is deleting them): `picket serve` finishes them.
pub fn issues_being_deleted(conn: &Connection) -> Result<Vec<i64>> {
    let mut st = conn.prepare_cached(&format!("SELECT id FROM issues WHERE status = '{PENDING_DELETION}' ORDER BY id"))?;
    let ids = st.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// The status of what is left of the newest issue once it is deleted: a row
/// with nothing hanging off it, hidden like [`PENDING_DELETION`], that keeps
/// SQLite from giving its id to the next new issue (it gives the highest id
/// plus one). Links to the deleted issue must not open another one.
pub const DELETED: &str = "deleted";

/// The condition on `issues` (its own columns, or the alias `i.`) that hides
/// the issues being deleted and the deleted ones kept as a row.
pub(crate) fn visible(alias: &str) -> String {
    format!("{alias}status NOT IN ('{PENDING_DELETION}', '{DELETED}')")
}

/// Deletes an issue with its events, hashes and counters in one write job:
/// for an issue with few of them (the last step of
/// `retention::delete_issue`, which deletes a large issue in chunks first).
/// The newest issue is put back as an empty row marked [`DELETED`], so that
/// its id is not given out again; that row goes when an issue with a higher
/// id is deleted.
pub fn delete_issue(conn: &Connection, id: i64) -> Result<()> {
    match delete_issues(conn, &[id])? {
        0 => Err(StoreError::NotFound(format!("issue {id}"))),
        _ => Ok(()),
    }
}

/// [`delete_issue`] for several issues at once; how many there were.
pub fn delete_issues(conn: &Connection, ids: &[i64]) -> Result<u64> {
    let newest = conn.prepare_cached("SELECT MAX(id) FROM issues")?.query_row([], |r| r.get::<_, Option<i64>>(0))?;
    // The cascade takes everything that hangs off them. An emptied row is
    // left alone: it is not an issue, and it keeps its id taken.
    let mut delete = conn.prepare_cached(&format!("DELETE FROM issues WHERE id = ? AND status <> '{DELETED}' RETURNING project_id, short_id, first_seen, last_seen"))?;
    let mut deleted = 0;
    let mut highest = 0;
    for &id in ids {
        let Some((project_id, short_id, first_seen, last_seen)) =
            delete.query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, r.get::<_, f64>(3)?))).optional()?
        else {
            continue;
        };
        deleted += 1;
        highest = highest.max(id);
        if Some(id) == newest {
            conn.prepare_cached(&format!(
                "INSERT INTO issues (id, project_id, title, culprit, event_type, level, platform, status, first_seen, last_seen, short_id)
                 VALUES (?, ?, '', '', '', '', '', '{DELETED}', ?, ?, ?)"
            ))?
            .execute(params![id, project_id, first_seen, last_seen, short_id])?;
        }
    }
    if deleted == 0 {
        return Ok(0);
    }
    // An earlier such row is no longer needed: a higher id holds the place.
    // (The partial index `issues_deleted` finds it without a scan.)
    conn.prepare_cached(&format!("DELETE FROM issues INDEXED BY issues_deleted WHERE status = '{DELETED}' AND id < ?"))?.execute([highest])?;
    crate::tags::after_issue_deleted(conn)?;
    Ok(deleted)
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub project_id: i64,
    pub event_id: String,
    pub issue_id: Option<i64>,
    pub timestamp: f64,
    pub received: f64,
    pub data: Value,
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, Option<i64>, f64, f64, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn to_event(conn: &Connection, row: (i64, String, Option<i64>, f64, f64, Vec<u8>)) -> Result<StoredEvent> {
    let (project_id, event_id, issue_id, timestamp, received, blob) = row;
    let data = serde_json::from_slice(&crate::dictionary::decompress(conn, &blob)?).map_err(|e| StoreError::Invalid(format!("corrupt stored event {event_id}: {e}")))?;
    Ok(StoredEvent { project_id, event_id, issue_id, timestamp, received, data })
}

const EVENT_COLUMNS: &str = "project_id, event_id, issue_id, timestamp, received, data";

/// Events of an issue, newest first; one more than `limit` when there are more.
pub fn issue_events(conn: &Connection, issue_id: i64, offset: usize, limit: usize) -> Result<Vec<StoredEvent>> {
    let mut st = conn.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE issue_id = ? ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?"))?;
    let rows = st.query_map(params![issue_id, limit as i64 + 1, offset as i64], event_row)?;
    rows.map(|r| to_event(conn, r?)).collect()
}

pub fn latest_event(conn: &Connection, issue_id: i64) -> Result<Option<StoredEvent>> {
    Ok(issue_events(conn, issue_id, 0, 1)?.into_iter().next())
}

pub fn event(conn: &Connection, project_id: i64, event_id: &str) -> Result<Option<StoredEvent>> {
    let row = conn
        .prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE project_id = ? AND event_id = ?"))?
        .query_row(params![project_id, event_id], event_row)
        .optional()?;
    row.map(|r| to_event(conn, r)).transpose()
}

pub fn count_events(conn: &Connection, project_id: i64) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM events WHERE project_id = ?", [project_id], |r| r.get(0))?)
}

/// A tag value of an issue with its counts.
#[derive(Debug, Clone)]
pub struct TagValue {
    pub key: String,
    pub value: String,
    pub times_seen: i64,
    pub first_seen: f64,
    pub last_seen: f64,
}

pub fn tag_values(conn: &Connection, issue_id: i64, key: &str, limit: usize) -> Result<Vec<TagValue>> {
    let mut st = conn.prepare(
        "SELECT key, value, times_seen, first_seen, last_seen FROM issue_tag_values WHERE issue_id = ? AND key = ? ORDER BY times_seen DESC, value LIMIT ?",
    )?;
    let rows = st.query_map(params![issue_id, key, limit as i64], |r| {
        Ok(TagValue { key: r.get(0)?, value: r.get(1)?, times_seen: r.get(2)?, first_seen: r.get(3)?, last_seen: r.get(4)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tag keys of an issue with their total counts and distinct values.
pub fn tag_keys(conn: &Connection, issue_id: i64) -> Result<Vec<(String, i64, i64)>> {
    let mut st = conn.prepare("SELECT key, SUM(times_seen), COUNT(*) FROM issue_tag_values WHERE issue_id = ? GROUP BY key ORDER BY key")?;
    let rows = st.query_map([issue_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Events per hour of an issue, the last `hours` hours that had any, oldest first.
pub fn hourly_counts(conn: &Connection, issue_id: i64, hours: usize) -> Result<Vec<(i64, i64)>> {
    let mut st = conn.prepare("SELECT hour, count FROM issue_hourly WHERE issue_id = ? ORDER BY hour DESC LIMIT ?")?;
    let mut rows: Vec<(i64, i64)> = st.query_map(params![issue_id, hours as i64], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    rows.reverse();
    Ok(rows)
}

/// An attachment's description (the data is read separately).
#[derive(Debug, Clone)]
pub struct AttachmentInfo {
    pub id: i64,
    pub event_id: String,
    pub name: String,
    pub content_type: Option<String>,
    pub attachment_type: String,
    pub size: i64,
    pub created_at: f64,
}

pub fn attachments(conn: &Connection, project_id: i64, event_id: &str) -> Result<Vec<AttachmentInfo>> {
    let mut st = conn.prepare(
        "SELECT id, event_id, name, content_type, attachment_type, size, created_at FROM attachments WHERE project_id = ? AND event_id = ? ORDER BY id",
    )?;
    let rows = st.query_map(params![project_id, event_id], |r| {
        Ok(AttachmentInfo { id: r.get(0)?, event_id: r.get(1)?, name: r.get(2)?, content_type: r.get(3)?, attachment_type: r.get(4)?, size: r.get(5)?, created_at: r.get(6)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn attachment_data(conn: &Connection, project_id: i64, event_id: &str, id: i64) -> Result<Vec<u8>> {
    conn.query_row("SELECT data FROM attachments WHERE project_id = ? AND event_id = ? AND id = ?", params![project_id, event_id, id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("attachment {id}")))
}

/// User feedback linked to an event (both `user_report` and `feedback` items).
pub fn user_reports(conn: &Connection, project_id: i64, event_id: Option<&str>) -> Result<Vec<Value>> {
    let mut st = conn.prepare(
        "SELECT event_id, kind, name, email, comments, url, created_at FROM user_reports WHERE project_id = ?1 AND (?2 IS NULL OR event_id = ?2) ORDER BY id DESC LIMIT 1000",
    )?;
    let rows = st.query_map(params![project_id, event_id], |r| {
        Ok(serde_json::json!({
            "eventID": r.get::<_, Option<String>>(0)?,
            "kind": r.get::<_, String>(1)?,
            "name": r.get::<_, Option<String>>(2)?,
            "email": r.get::<_, Option<String>>(3)?,
            "comments": r.get::<_, String>(4)?,
            "url": r.get::<_, Option<String>>(5)?,
            "dateCreated": picket_core::normalize::format_timestamp(r.get(6)?),
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn transactions(conn: &Connection, project_id: i64, offset: usize, limit: usize) -> Result<Vec<Value>> {
    let mut st = conn.prepare(
        "SELECT event_id, name, op, status, start_timestamp, timestamp, duration_ms, environment, release FROM transactions WHERE project_id = ? ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?",
    )?;
    let rows = st.query_map(params![project_id, limit as i64 + 1, offset as i64], |r| {
        Ok(serde_json::json!({
            "eventID": r.get::<_, String>(0)?,
            "transaction": r.get::<_, String>(1)?,
            "op": r.get::<_, Option<String>>(2)?,
            "status": r.get::<_, Option<String>>(3)?,
            "startTimestamp": r.get::<_, Option<f64>>(4)?,
            "timestamp": r.get::<_, f64>(5)?,
            "durationMs": r.get::<_, Option<f64>>(6)?,
            "environment": r.get::<_, Option<String>>(7)?,
            "release": r.get::<_, Option<String>>(8)?,
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Release health per release and environment: sessions and crash-free rate.
pub fn session_stats(conn: &Connection, project_id: i64) -> Result<Vec<Value>> {
    let mut st = conn.prepare(
        "SELECT release, environment, total, exited, errored, abnormal, crashed FROM session_aggregates WHERE project_id = ? ORDER BY release, environment",
    )?;
    let rows = st.query_map([project_id], |r| {
        let total: i64 = r.get(2)?;
        let crashed: i64 = r.get(6)?;
        let crash_free = if total > 0 { Some(100.0 * (total - crashed).max(0) as f64 / total as f64) } else { None };
        Ok(serde_json::json!({
            "release": r.get::<_, String>(0)?,
            "environment": r.get::<_, String>(1)?,
            "total": total,
            "exited": r.get::<_, i64>(3)?,
            "errored": r.get::<_, i64>(4)?,
            "abnormal": r.get::<_, i64>(5)?,
            "crashed": crashed,
            "crashFreeRate": crash_free,
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn check_ins(conn: &Connection, project_id: i64, monitor_slug: Option<&str>) -> Result<Vec<Value>> {
    let mut st = conn.prepare(
        "SELECT check_in_id, monitor_slug, status, duration, environment, release, received, updated FROM check_ins WHERE project_id = ?1 AND (?2 IS NULL OR monitor_slug = ?2) ORDER BY received DESC, id DESC LIMIT 1000",
    )?;
    let rows = st.query_map(params![project_id, monitor_slug], |r| {
        Ok(serde_json::json!({
            "checkInId": r.get::<_, String>(0)?,
            "monitorSlug": r.get::<_, String>(1)?,
            "status": r.get::<_, String>(2)?,
            "duration": r.get::<_, Option<f64>>(3)?,
            "environment": r.get::<_, Option<String>>(4)?,
            "release": r.get::<_, Option<String>>(5)?,
            "dateCreated": picket_core::normalize::format_timestamp(r.get(6)?),
            "dateUpdated": picket_core::normalize::format_timestamp(r.get(7)?),
        }))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Counts of received items by type and outcome, and client-reported discards.
pub fn item_stats(conn: &Connection, project_id: i64) -> Result<Value> {
    let mut st = conn.prepare("SELECT item_type, outcome, count FROM item_counts WHERE project_id = ? ORDER BY item_type, outcome")?;
    let items: Vec<Value> = st
        .query_map([project_id], |r| Ok(serde_json::json!({"itemType": r.get::<_, String>(0)?, "outcome": r.get::<_, String>(1)?, "count": r.get::<_, i64>(2)?})))?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare("SELECT reason, category, quantity FROM client_outcomes WHERE project_id = ? ORDER BY reason, category")?;
    let discarded: Vec<Value> = st
        .query_map([project_id], |r| Ok(serde_json::json!({"reason": r.get::<_, String>(0)?, "category": r.get::<_, String>(1)?, "quantity": r.get::<_, i64>(2)?})))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(serde_json::json!({"items": items, "clientDiscarded": discarded}))
}
