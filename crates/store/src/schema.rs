//! Migrations: an ordered list of SQL scripts; `PRAGMA user_version` records
//! how many have run. Append, never edit, a released migration.

use rusqlite::Connection;

use crate::Result;

const MIGRATIONS: &[&str] = &[
    // 1: accounts, queue, issues, events and what hangs off them.
    r#"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        is_superuser INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE TABLE organizations (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE org_members (
        org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        PRIMARY KEY (org_id, user_id)
    );
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
        slug TEXT NOT NULL,
        name TEXT NOT NULL,
        platform TEXT,
        allowed_origins TEXT NOT NULL DEFAULT '*',
        created_at REAL NOT NULL,
        UNIQUE (org_id, slug)
    );
    CREATE TABLE project_keys (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        public_key TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        is_active INTEGER NOT NULL DEFAULT 1,
        rate_limit_count INTEGER,
        rate_limit_window INTEGER,
        created_at REAL NOT NULL
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );

    CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL,
        received REAL NOT NULL,
        meta TEXT NOT NULL,
        body BLOB NOT NULL
    );

    CREATE TABLE issues (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        culprit TEXT NOT NULL,
        event_type TEXT NOT NULL,
        level TEXT NOT NULL,
        platform TEXT NOT NULL,
        logger TEXT,
        status TEXT NOT NULL DEFAULT 'unresolved',
        substatus TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        times_seen INTEGER NOT NULL DEFAULT 0,
        user_count INTEGER NOT NULL DEFAULT 0,
        first_release TEXT,
        resolved_at REAL,
        search_text TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX issues_project_last_seen ON issues(project_id, last_seen DESC);
    CREATE INDEX issues_project_first_seen ON issues(project_id, first_seen DESC);
    CREATE INDEX issues_project_times_seen ON issues(project_id, times_seen DESC);

    CREATE TABLE group_hashes (
        project_id INTEGER NOT NULL,
        hash TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        PRIMARY KEY (project_id, hash)
    );
    CREATE INDEX group_hashes_issue ON group_hashes(issue_id);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL,
        issue_id INTEGER REFERENCES issues(id) ON DELETE CASCADE,
        timestamp REAL NOT NULL,
        received REAL NOT NULL,
        level TEXT NOT NULL,
        title TEXT NOT NULL,
        environment TEXT,
        release TEXT,
        data BLOB NOT NULL,
        UNIQUE (project_id, event_id)
    );
    CREATE INDEX events_issue ON events(issue_id, timestamp DESC);

    CREATE TABLE issue_tag_values (
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        times_seen INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (issue_id, key, value)
    );
    CREATE INDEX issue_tag_values_lookup ON issue_tag_values(key, value);

    CREATE TABLE issue_users (
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        user_key TEXT NOT NULL,
        PRIMARY KEY (issue_id, user_key)
    ) WITHOUT ROWID;

    CREATE TABLE issue_hourly (
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        hour INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (issue_id, hour)
    ) WITHOUT ROWID;

    CREATE TABLE attachments (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL,
        name TEXT NOT NULL,
        content_type TEXT,
        attachment_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX attachments_event ON attachments(project_id, event_id);

    CREATE TABLE user_reports (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event_id TEXT,
        kind TEXT NOT NULL,
        name TEXT,
        email TEXT,
        comments TEXT NOT NULL,
        url TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX user_reports_event ON user_reports(project_id, event_id);

    CREATE TABLE transactions (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL,
        name TEXT NOT NULL,
        op TEXT,
        status TEXT,
        start_timestamp REAL,
        timestamp REAL NOT NULL,
        duration_ms REAL,
        environment TEXT,
        release TEXT,
        data BLOB NOT NULL,
        UNIQUE (project_id, event_id)
    );
    CREATE INDEX transactions_project ON transactions(project_id, timestamp DESC);

    CREATE TABLE sessions (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        sid TEXT NOT NULL,
        release TEXT NOT NULL,
        environment TEXT NOT NULL,
        started REAL NOT NULL,
        status TEXT NOT NULL,
        errors INTEGER NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (project_id, sid)
    );
    CREATE TABLE session_aggregates (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        release TEXT NOT NULL,
        environment TEXT NOT NULL,
        total INTEGER NOT NULL DEFAULT 0,
        exited INTEGER NOT NULL DEFAULT 0,
        errored INTEGER NOT NULL DEFAULT 0,
        abnormal INTEGER NOT NULL DEFAULT 0,
        crashed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project_id, release, environment)
    );

    CREATE TABLE check_ins (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        check_in_id TEXT NOT NULL,
        monitor_slug TEXT NOT NULL,
        status TEXT NOT NULL,
        duration REAL,
        environment TEXT,
        release TEXT,
        received REAL NOT NULL,
        updated REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX check_ins_monitor ON check_ins(project_id, monitor_slug, received DESC);

    CREATE TABLE item_counts (
        project_id INTEGER NOT NULL,
        item_type TEXT NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (project_id, item_type, outcome)
    ) WITHOUT ROWID;

    CREATE TABLE client_outcomes (
        project_id INTEGER NOT NULL,
        reason TEXT NOT NULL,
        category TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (project_id, reason, category)
    ) WITHOUT ROWID;
    "#,
    // 2: the extension system.
    r#"
    CREATE TABLE plugin_options (
        scope TEXT NOT NULL,
        scope_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL DEFAULT 0,
        plugin TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, scope_id, user_id, plugin, key)
    ) WITHOUT ROWID;

    CREATE TABLE issue_meta (
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        plugin TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (issue_id, plugin, key)
    ) WITHOUT ROWID;

    CREATE TABLE issue_views (
        issue_id INTEGER NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
        view TEXT NOT NULL,
        PRIMARY KEY (issue_id, view)
    ) WITHOUT ROWID;
    CREATE INDEX issue_views_view ON issue_views(view, issue_id);

    CREATE TABLE post_process (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL,
        issue_id INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        is_new INTEGER NOT NULL,
        is_regression INTEGER NOT NULL,
        plugin TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX post_process_due ON post_process(next_attempt, id);

    CREATE TABLE plugin_failures (
        plugin TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_hook TEXT NOT NULL,
        last_error TEXT NOT NULL,
        last_at REAL NOT NULL
    );
    "#,
    // 3: queued bodies may be kept in the gzip the client sent.
    r#"
    ALTER TABLE queue ADD COLUMN encoding TEXT NOT NULL DEFAULT 'zstd';
    "#,
    // 4: zstd dictionaries that stored events are compressed with (see
    // `dictionary.rs`), by the id in each zstd frame's header, and the one
    // each project compresses new events with. No foreign keys: projects
    // may share a dictionary, and dictionaries outlive projects.
    r#"
    CREATE TABLE zstd_dictionaries (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE project_dictionaries (
        project_id INTEGER PRIMARY KEY,
        dictionary_id INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    "#,
    // 5: the queue without AUTOINCREMENT, which rewrote the `sqlite_sequence`
    // page in every ingest commit (a tenth of the WAL under load). Row ids
    // still only grow: `queue::QueueIds` hands them out.
    r#"
    CREATE TABLE queue_new (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL,
        received REAL NOT NULL,
        meta TEXT NOT NULL,
        body BLOB NOT NULL,
        encoding TEXT NOT NULL DEFAULT 'zstd'
    );
    INSERT INTO queue_new (id, project_id, received, meta, body, encoding)
        SELECT id, project_id, received, meta, body, encoding FROM queue;
    DROP TABLE queue;
    ALTER TABLE queue_new RENAME TO queue;
    "#,
    // 6: the digest's own state (see `tags.rs`). `tags_uncounted_from`: when
    // set, stored events from this row id on may lack their tag counts;
    // `issues_deleted`: how many issues were ever deleted.
    r#"
    CREATE TABLE digest_state (
        key TEXT PRIMARY KEY,
        value INTEGER
    ) WITHOUT ROWID;
    INSERT INTO digest_state (key, value) VALUES ('tags_uncounted_from', NULL), ('issues_deleted', 0);
    "#,
    // 7: user feedback stored once however often it is sent (SDKs resend
    // what they could not deliver). A `feedback` item is an event: its own
    // id, `source_id`, identifies it. A legacy `user_report` has no id of
    // its own; there is one per event, as in Sentry, the latest kept.
    r#"
    ALTER TABLE user_reports ADD COLUMN source_id TEXT;
    DELETE FROM user_reports WHERE kind = 'user_report' AND event_id IS NOT NULL AND id NOT IN
        (SELECT MAX(id) FROM user_reports WHERE kind = 'user_report' AND event_id IS NOT NULL GROUP BY project_id, event_id);
    CREATE UNIQUE INDEX user_reports_source ON user_reports(project_id, source_id) WHERE source_id IS NOT NULL;
    CREATE UNIQUE INDEX user_reports_legacy ON user_reports(project_id, event_id) WHERE kind = 'user_report' AND event_id IS NOT NULL;
    "#,
    // 8: issues numbered per project (`WEB-12`), as Sentry's short ids; the
    // counter never goes back, so a deleted issue's number is not reused.
    r#"
    ALTER TABLE issues ADD COLUMN short_id INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE projects ADD COLUMN issue_counter INTEGER NOT NULL DEFAULT 0;
    UPDATE issues SET short_id = numbered.n
        FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY project_id ORDER BY id) AS n FROM issues) AS numbered
        WHERE issues.id = numbered.id;
    UPDATE projects SET issue_counter = (SELECT IFNULL(MAX(short_id), 0) FROM issues WHERE issues.project_id = projects.id);
    CREATE UNIQUE INDEX issues_short_id ON issues(project_id, short_id);
    "#,
    // 9: deleted projects. 1: being deleted, in chunks beside ingest
    // (`retention.rs`; a start resumes what a stop interrupted); 2: deleted,
    // the row kept so that the id is never reused. Either way hidden from
    // every lookup, with no keys and a free slug.
    r#"
    ALTER TABLE projects ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;
    "#,
    // 10: issues being deleted (status `pending_deletion`, deleted in
    // chunks beside ingest), found at start without a scan of every issue.
    // Partial: the index holds only those, and updates that leave the status
    // alone (the digest's counters) never touch it.
    r#"
    CREATE INDEX issues_pending_deletion ON issues(id) WHERE status = 'pending_deletion';
    "#,
    // 11: the emptied row kept for the newest deleted issue (status
    // `deleted`, `query::delete_issues`), found without a scan each time an
    // issue is deleted. It holds a row or none.
    r#"
    CREATE INDEX issues_deleted ON issues(id) WHERE status = 'deleted';
    "#,
];

/// The page size of new databases.
const PAGE_SIZE: i64 = 8192;

/// Brings the schema up to date.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current == 0 {
        // A new database, in 8 KiB pages. Every commit writes each page it
        // touched to the WAL, and the indexes on random keys (event ids)
        // and on many issues touch about one page per event whatever its
        // size, so larger pages write more: 16 KiB pages wrote 7.9 GB for
        // 200,000 5 KB events, 8 KiB 4.8 GB, 4 KiB 3.4 GB. Smaller pages
        // waste more around stored events: a 2.3 KB blob (a 50 KB event)
        // fills a 4 KiB page alone, and 4 KiB pages took 70% more space for
        // those events than 16 KiB ones; 8 KiB pages 13% more (BENCHMARKS.md).
        // Only possible before the first table is created; older databases
        // keep their page size.
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        conn.execute_batch("VACUUM")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

/// The schema version of an open database and the newest this build knows.
pub fn versions(conn: &Connection) -> Result<(usize, usize)> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((current as usize, MIGRATIONS.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_5_keeps_the_queued_rows_and_their_ids() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute("INSERT INTO queue (id, project_id, received, meta, body, encoding) VALUES (7, 1, 2.5, '{}', x'01', 'gzip')", []).unwrap();
        migrate(&mut conn).unwrap();
        let row: (i64, i64, f64, String, Vec<u8>, String) = conn
            .query_row("SELECT id, project_id, received, meta, body, encoding FROM queue", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap();
        assert_eq!(row, (7, 1, 2.5, "{}".to_string(), vec![1], "gzip".to_string()));
        let sql: String = conn.query_row("SELECT sql FROM sqlite_schema WHERE name = 'queue'", [], |r| r.get(0)).unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
        assert_eq!(versions(&conn).unwrap(), (MIGRATIONS.len(), MIGRATIONS.len()));
    }

    #[test]
    fn versions_7_and_8_number_old_issues_per_project_and_keep_one_report_per_event() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        conn.execute_batch(
            "INSERT INTO organizations (id, slug, name, created_at) VALUES (1, 'acme', 'Acme', 0);
             INSERT INTO projects (id, org_id, slug, name, created_at) VALUES (1, 1, 'web', 'Web', 0), (2, 1, 'api', 'API', 0);",
        )
        .unwrap();
        for (id, project) in [(10, 1), (11, 2), (12, 1), (13, 1), (14, 2)] {
            conn.execute(
                "INSERT INTO issues (id, project_id, title, culprit, event_type, level, platform, status, first_seen, last_seen, times_seen, search_text, metadata)
                 VALUES (?, ?, 't', '', 'error', 'error', 'python', 'unresolved', 0, 0, 1, '', '{}')",
                [id, project],
            )
            .unwrap();
        }
        for comments in ["first", "second"] {
            conn.execute("INSERT INTO user_reports (project_id, event_id, kind, comments, created_at) VALUES (1, 'e1', 'user_report', ?, 0)", [comments]).unwrap();
        }
        migrate(&mut conn).unwrap();
        let numbers: Vec<(i64, i64)> = conn.prepare("SELECT id, short_id FROM issues ORDER BY id").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(numbers, [(10, 1), (11, 1), (12, 2), (13, 3), (14, 2)]);
        let counters: Vec<i64> = conn.prepare("SELECT issue_counter FROM projects ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(counters, [3, 2]);
        let reports: Vec<String> = conn.prepare("SELECT comments FROM user_reports").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(reports, ["second"], "the latest report of the event is kept");
    }
}
