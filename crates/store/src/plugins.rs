//! What the extension system stores: plugin options and enablement (per
//! site, project and user, under the plugin's slug), what plugins keep about
//! issues, which aggregate views an issue is in, the durable post-process
//! queue, and the failures of plugins' hooks.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};
use serde_json::Value;

use crate::{now, Result};

/// Where an option applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole installation.
    Site,
    /// One project.
    Project(i64),
    /// One user in one project (notification preferences).
    User {
        /// The project.
        project_id: i64,
        /// The user.
        user_id: i64,
    },
}

impl Scope {
    fn columns(self) -> (&'static str, i64, i64) {
        match self {
            Scope::Site => ("site", 0, 0),
            Scope::Project(p) => ("project", p, 0),
            Scope::User { project_id, user_id } => ("user", project_id, user_id),
        }
    }
}

/// The option key that records whether a plugin is on for a project.
pub const ENABLED_KEY: &str = "enabled";

/// The stored options of a plugin in a scope (without `enabled`).
pub fn options(conn: &Connection, scope: Scope, plugin: &str) -> Result<BTreeMap<String, Value>> {
    let (kind, scope_id, user_id) = scope.columns();
    let mut st = conn.prepare_cached("SELECT key, value FROM plugin_options WHERE scope = ? AND scope_id = ? AND user_id = ? AND plugin = ? AND key != 'enabled'")?;
    let rows = st.query_map(params![kind, scope_id, user_id, plugin], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, serde_json::from_str(&v).unwrap_or(Value::String(v)));
    }
    Ok(out)
}

/// Stores option values; `None` removes one.
pub fn set_options(conn: &Connection, scope: Scope, plugin: &str, values: &[(String, Option<Value>)]) -> Result<()> {
    let (kind, scope_id, user_id) = scope.columns();
    for (key, value) in values {
        match value {
            Some(v) => {
                conn.prepare_cached(
                    "INSERT INTO plugin_options (scope, scope_id, user_id, plugin, key, value) VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (scope, scope_id, user_id, plugin, key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![kind, scope_id, user_id, plugin, key, v.to_string()])?;
            }
            None => {
                conn.prepare_cached("DELETE FROM plugin_options WHERE scope = ? AND scope_id = ? AND user_id = ? AND plugin = ? AND key = ?")?
                    .execute(params![kind, scope_id, user_id, plugin, key])?;
            }
        }
    }
    Ok(())
}

/// Removes every option of a plugin in a scope (the classic "reset configuration"), enablement included.
pub fn reset_options(conn: &Connection, scope: Scope, plugin: &str) -> Result<()> {
    let (kind, scope_id, user_id) = scope.columns();
    conn.execute("DELETE FROM plugin_options WHERE scope = ? AND scope_id = ? AND user_id = ? AND plugin = ?", params![kind, scope_id, user_id, plugin])?;
    Ok(())
}

/// Records a project's choice for a plugin (`None`: back to the plugin's default).
pub fn set_enabled(conn: &Connection, project_id: i64, plugin: &str, enabled: Option<bool>) -> Result<()> {
    set_options(conn, Scope::Project(project_id), plugin, &[(ENABLED_KEY.to_string(), enabled.map(Value::Bool))])
}

/// Everything the digest needs about a project's plugins, read in one query:
/// the stored on/off choices and each plugin's project options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProjectPluginState {
    /// Slug → stored choice.
    pub choices: BTreeMap<String, bool>,
    /// Slug → key → value.
    pub options: BTreeMap<String, BTreeMap<String, Value>>,
}

/// Reads a project's plugin state.
pub fn project_state(conn: &Connection, project_id: i64) -> Result<ProjectPluginState> {
    let mut st = conn.prepare_cached("SELECT plugin, key, value FROM plugin_options WHERE scope = 'project' AND scope_id = ? AND user_id = 0")?;
    let rows = st.query_map([project_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut state = ProjectPluginState::default();
    for row in rows {
        let (plugin, key, value) = row?;
        let v: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
        if key == ENABLED_KEY {
            if let Some(b) = v.as_bool() {
                state.choices.insert(plugin, b);
            }
        } else {
            state.options.entry(plugin).or_default().insert(key, v);
        }
    }
    Ok(state)
}

/// Every plugin's site-wide options: slug → key → value.
pub fn site_options_all(conn: &Connection) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
    let mut st = conn.prepare_cached("SELECT plugin, key, value FROM plugin_options WHERE scope = 'site' AND scope_id = 0 AND user_id = 0")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for row in rows {
        let (plugin, key, value) = row?;
        out.entry(plugin).or_default().insert(key, serde_json::from_str(&value).unwrap_or(Value::String(value)));
    }
    Ok(out)
}

/// What a plugin stored about each of several issues: issue id → key → value.
pub fn issue_meta_bulk(conn: &Connection, issue_ids: &[i64], plugin: &str) -> Result<BTreeMap<i64, BTreeMap<String, String>>> {
    let mut out: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    if issue_ids.is_empty() {
        return Ok(out);
    }
    let marks = vec!["?"; issue_ids.len()].join(",");
    let mut st = conn.prepare(&format!("SELECT issue_id, key, value FROM issue_meta WHERE plugin = ? AND issue_id IN ({marks})"))?;
    let mut args: Vec<rusqlite::types::Value> = vec![plugin.to_string().into()];
    args.extend(issue_ids.iter().map(|i| rusqlite::types::Value::from(*i)));
    let rows = st.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    for row in rows {
        let (id, k, v) = row?;
        out.entry(id).or_default().insert(k, v);
    }
    Ok(out)
}

/// Projects where each plugin has a stored choice: slug → (project "org/slug", on).
pub fn choices_by_plugin(conn: &Connection) -> Result<BTreeMap<String, Vec<(String, bool)>>> {
    let mut st = conn.prepare(
        "SELECT o.plugin, g.slug || '/' || p.slug, o.value FROM plugin_options o JOIN projects p ON p.id = o.scope_id JOIN organizations g ON g.id = p.org_id
         WHERE o.scope = 'project' AND o.key = 'enabled' ORDER BY 1, 2",
    )?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for row in rows {
        let (plugin, project, value) = row?;
        out.entry(plugin).or_default().push((project, value == "true"));
    }
    Ok(out)
}

/// What a plugin stored about an issue.
pub fn issue_meta(conn: &Connection, issue_id: i64, plugin: &str) -> Result<BTreeMap<String, String>> {
    let mut st = conn.prepare_cached("SELECT key, value FROM issue_meta WHERE issue_id = ? AND plugin = ?")?;
    let rows = st.query_map(params![issue_id, plugin], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stores (or, with `None`, deletes) values about an issue for a plugin.
pub fn set_issue_meta(conn: &Connection, issue_id: i64, plugin: &str, updates: &[(String, Option<String>)]) -> Result<()> {
    for (k, v) in updates {
        match v {
            Some(v) => conn
                .prepare_cached("INSERT INTO issue_meta (issue_id, plugin, key, value) VALUES (?, ?, ?, ?) ON CONFLICT (issue_id, plugin, key) DO UPDATE SET value = excluded.value")?
                .execute(params![issue_id, plugin, k, v])?,
            None => conn.prepare_cached("DELETE FROM issue_meta WHERE issue_id = ? AND plugin = ? AND key = ?")?.execute(params![issue_id, plugin, k])?,
        };
    }
    Ok(())
}

/// Issues per aggregate view in a project.
pub fn view_counts(conn: &Connection, project_id: i64) -> Result<BTreeMap<String, i64>> {
    let mut st = conn.prepare_cached("SELECT v.view, COUNT(*) FROM issue_views v JOIN issues i ON i.id = v.issue_id WHERE i.project_id = ? GROUP BY v.view")?;
    let rows = st.query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Values of a tag across a project's issues, with the number of issues having each.
pub fn project_tag_values(conn: &Connection, project_id: i64, key: &str, limit: usize) -> Result<Vec<(String, i64)>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT t.value, COUNT(*) FROM issue_tag_values t JOIN issues i ON i.id = t.issue_id WHERE i.project_id = ? AND {} AND t.key = ?
         GROUP BY t.value ORDER BY COUNT(*) DESC, t.value LIMIT ?",
        crate::query::visible("i.")
    ))?;
    let rows = st.query_map(params![project_id, key, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tag keys seen in a project, most used first.
pub fn project_tag_keys(conn: &Connection, project_id: i64) -> Result<Vec<String>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT t.key FROM issue_tag_values t JOIN issues i ON i.id = t.issue_id WHERE i.project_id = ? AND {} GROUP BY t.key ORDER BY SUM(t.times_seen) DESC, t.key LIMIT 100",
        crate::query::visible("i.")
    ))?;
    let rows = st.query_map([project_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Issues per status in a project.
pub fn status_counts(conn: &Connection, project_id: i64) -> Result<Vec<(String, i64)>> {
    let mut st = conn.prepare_cached(&format!("SELECT status, COUNT(*) FROM issues WHERE project_id = ? AND {} GROUP BY status ORDER BY status", crate::query::visible("")))?;
    let rows = st.query_map([project_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A post-process job: run the plugins' `post_process` for one stored event.
/// `plugin` is `None` for the first run (every enabled plugin) and names the
/// plugin for a retry.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcessJob {
    /// Row id.
    pub id: i64,
    /// Project.
    pub project_id: i64,
    /// Issue the event went to.
    pub issue_id: i64,
    /// The event.
    pub event_id: String,
    /// The event created the issue.
    pub is_new: bool,
    /// The event reopened a resolved issue.
    pub is_regression: bool,
    /// The plugin to retry, or every plugin.
    pub plugin: Option<String>,
    /// Tries so far.
    pub attempts: u32,
}

/// How long the first run of a job is left to the in-memory path before the
/// queue scan takes it (a crash or a full hand-off channel lost it).
pub const FIRST_RUN_GRACE_SECS: f64 = 30.0;

/// Queues the first post-process run of an event (in the digest's
/// transaction); returns the job's id. The server normally runs it at once
/// from the event in memory and deletes the row; the row comes due for the
/// queue scan only [`FIRST_RUN_GRACE_SECS`] later, if that never happened.
/// `insert` is [`INSERT_FIRST_POST_PROCESS`], prepared.
pub(crate) fn enqueue_post_process(insert: &mut rusqlite::Statement<'_>, project_id: i64, issue_id: i64, event_id: &str, is_new: bool, is_regression: bool) -> Result<i64> {
    Ok(insert.insert(params![project_id, issue_id, event_id, is_new, is_regression, now() + FIRST_RUN_GRACE_SECS])?)
}

/// The statement of [`enqueue_post_process`], which the digest prepares once per batch.
pub(crate) const INSERT_FIRST_POST_PROCESS: &str =
    "INSERT INTO post_process (project_id, issue_id, event_id, is_new, is_regression, plugin, attempts, next_attempt) VALUES (?, ?, ?, ?, ?, NULL, 0, ?)";

/// Makes first runs that a previous process left behind due now (at startup,
/// nothing of this process can be in flight yet). Returns how many.
pub fn reclaim_first_runs(conn: &Connection) -> Result<usize> {
    Ok(conn.execute("UPDATE post_process SET next_attempt = 0 WHERE plugin IS NULL AND next_attempt > ?", [now()])?)
}

/// Jobs due now, oldest first.
pub fn due_post_process(conn: &Connection, limit: usize) -> Result<Vec<PostProcessJob>> {
    let mut st = conn.prepare_cached(
        "SELECT id, project_id, issue_id, event_id, is_new, is_regression, plugin, attempts FROM post_process WHERE next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
    )?;
    let rows = st.query_map(params![now(), limit as i64], |r| {
        Ok(PostProcessJob {
            id: r.get(0)?,
            project_id: r.get(1)?,
            issue_id: r.get(2)?,
            event_id: r.get(3)?,
            is_new: r.get(4)?,
            is_regression: r.get(5)?,
            plugin: r.get(6)?,
            attempts: r.get::<_, i64>(7)? as u32,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The outcome of running a job: it is removed, and failed plugins get a retry row each.
pub fn finish_post_process(conn: &Connection, job: &PostProcessJob, retries: &[(String, u32, f64, String)]) -> Result<()> {
    conn.prepare_cached("DELETE FROM post_process WHERE id = ?")?.execute([job.id])?;
    for (plugin, attempts, next_attempt, error) in retries {
        conn.prepare_cached(
            "INSERT INTO post_process (project_id, issue_id, event_id, is_new, is_regression, plugin, attempts, next_attempt, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![job.project_id, job.issue_id, job.event_id, job.is_new, job.is_regression, plugin, attempts, next_attempt, error])?;
    }
    Ok(())
}

/// Records a hook failure (kept per plugin: count, last hook, last error).
pub fn record_failure(conn: &Connection, plugin: &str, hook: &str, error: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO plugin_failures (plugin, failures, last_hook, last_error, last_at) VALUES (?1, ?4, ?2, ?3, ?5)
         ON CONFLICT (plugin) DO UPDATE SET failures = failures + ?4, last_hook = ?2, last_error = ?3, last_at = ?5",
    )?
    .execute(params![plugin, hook, error, 1, now()])?;
    Ok(())
}

/// Recorded failures per plugin: slug → (count, last hook, last error, when).
pub fn failures(conn: &Connection) -> Result<BTreeMap<String, (i64, String, String, f64)>> {
    let mut st = conn.prepare("SELECT plugin, failures, last_hook, last_error, last_at FROM plugin_failures")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Issues by id (those that still exist).
pub fn issues_by_id(conn: &Connection, ids: &[i64]) -> Result<BTreeMap<i64, crate::query::Issue>> {
    let mut out = BTreeMap::new();
    for id in ids {
        if !out.contains_key(id) {
            if let Ok(i) = crate::query::issue(conn, *id) {
                out.insert(*id, i);
            }
        }
    }
    Ok(out)
}

/// Members of an organization with their user ids, emails and roles.
pub fn org_members(conn: &Connection, org_id: i64) -> Result<Vec<(i64, String, String)>> {
    let mut st = conn.prepare_cached("SELECT u.id, u.email, m.role FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY u.email")?;
    let rows = st.query_map([org_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
