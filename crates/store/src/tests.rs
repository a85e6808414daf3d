use super::*;
use picket_core::process::{process_envelope, Origin};

fn temp_store(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("picket-store-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir.join("db.sqlite3"), Durability::Normal).unwrap();
    (store, dir)
}

fn project(store: &Store) -> i64 {
    store
        .write_blocking(|c| {
            accounts::create_org(c, "acme", "Acme")?;
            Ok(accounts::create_project(c, "acme", "web", "Web", None)?.0.id)
        })
        .unwrap()
}

fn envelope(event_id: &str, event: &str) -> Vec<u8> {
    format!("{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes()
}

/// Processes and prepares one batch of events given as (project, event id,
/// received, payload), as the digest does.
fn prepare_events(store: &Store, events: &[(i64, &str, f64, &str)], post_process: digest::PostProcess) -> Vec<digest::PreparedBatchItem> {
    let processed: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(n, (project_id, id, received, payload))| {
            process_envelope(&Origin { queue_id: n as i64 + 1, project_id: *project_id, received: *received, ..Origin::default() }, &envelope(id, payload))
        })
        .collect();
    digest::prepare(processed, post_process, store.dictionaries())
}

/// Stores one batch of events (see [`prepare_events`]); returns the stored ones' outcomes.
fn digest_events(store: &Store, events: &[(i64, &str, f64, &str)]) -> Vec<digest::EventOutcome> {
    let prepared = prepare_events(store, events, digest::PostProcess::Queue);
    store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap()
}

#[test]
fn a_failing_job_rolls_back_alone() {
    let (store, dir) = temp_store("savepoint");
    // Queue three jobs before the writer can take them, so they share a transaction.
    let ok1 = store.write(|c| accounts::create_org(c, "one", "One"));
    let bad = store.write(|c| {
        accounts::create_org(c, "two", "Two")?;
        Err::<(), _>(StoreError::Invalid("this job fails".into()))
    });
    let ok2 = store.write(|c| accounts::create_org(c, "three", "Three"));
    assert!(block_on(ok1).is_ok());
    assert!(block_on(bad).is_err());
    assert!(block_on(ok2).is_ok());
    let slugs: Vec<String> = store.read(accounts::list_orgs).unwrap().into_iter().map(|o| o.slug).collect();
    assert_eq!(slugs, ["one", "three"]);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_queue_row_that_cannot_be_decoded_does_not_stop_the_digest() {
    let (store, dir) = temp_store("corrupt-row");
    let pid = project(&store);
    let body = envelope(&"cc".repeat(16), r#"{"message": "fine"}"#);
    let mut items = [0, 1].map(|_| queue::QueuedEnvelope { project_id: pid, received: now(), meta: queue::QueueMeta::default(), body: body.clone(), gzipped: None });
    let prepared: Vec<_> = items.iter_mut().map(queue::QueuedEnvelope::prepare).collect();
    let ids = crate::block_on(store.enqueue(prepared)).unwrap();
    let first = ids[0];
    store.write_blocking(move |c| Ok(c.execute("UPDATE queue SET body = x'00ff00ff' WHERE id = ?", [first])?)).unwrap();
    // Failing the batch would retry the same row forever: it comes back empty instead.
    let rows = store.read(|c| queue::fetch(c, 0, 10, &mut |_| None)).unwrap();
    assert!(rows[0].envelope.body.is_empty(), "the corrupt row is read as empty");
    assert_eq!(rows[1].envelope.body, body, "the rows after it are not affected");
    let processed: Vec<_> = rows.iter().map(|r| process_envelope(&Origin { queue_id: r.id, project_id: pid, received: r.envelope.received, ..Origin::default() }, &r.envelope.body)).collect();
    assert_eq!(processed[0].counted, vec![("envelope".to_string(), "invalid")], "counted as an invalid envelope");
    let prepared = digest::prepare(processed, digest::PostProcess::Queue, store.dictionaries());
    let outcomes = store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap();
    assert_eq!(outcomes.len(), 1, "the good row is stored");
    assert_eq!(store.read(queue::len).unwrap(), 0, "both rows leave the queue");
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queue_ids_keep_growing_after_the_queue_empties() {
    let (store, dir) = temp_store("queue-ids");
    let pid = project(&store);
    let body = envelope(&"dd".repeat(16), r#"{"message": "m"}"#);
    let item = || queue::QueuedEnvelope { project_id: pid, received: now(), meta: queue::QueueMeta::default(), body: body.clone(), gzipped: None }.prepare();
    let first = crate::block_on(store.enqueue(vec![item(), item()])).unwrap();
    assert!(first[1] > first[0]);
    let (a, b) = (first[0], first[1]);
    store.write_blocking(move |c| queue::delete_range(c, a, b)).unwrap();
    assert_eq!(store.read(queue::len).unwrap(), 0);
    // SQLite alone would start again at 1 in an empty table, and a reused id
    // could pick up a body kept in memory for the row that had it before.
    let next = crate::block_on(store.enqueue(vec![item()])).unwrap();
    assert!(next[0] > b, "{next:?} after {first:?}");
    // Rows that someone else put in the queue are stepped over.
    store.write_blocking(move |c| Ok(c.execute("INSERT INTO queue (id, project_id, received, meta, body) VALUES (100, ?, 0, '{}', x'')", [pid])?)).unwrap();
    assert_eq!(crate::block_on(store.enqueue(vec![item()])).unwrap(), vec![101]);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queue_round_trip_and_digest_exactly_once() {
    let (store, dir) = temp_store("digest");
    let pid = project(&store);
    let id = "aa".repeat(16);
    let body = envelope(&id, r#"{"message": "User 1 failed", "user": {"id": "1"}, "tags": {"t": "x"}}"#);
    let mut item = queue::QueuedEnvelope { project_id: pid, received: now(), meta: queue::QueueMeta::default(), body: body.clone(), gzipped: None };
    // The same envelope queued twice (an SDK retry), once stored compressed
    // by us and once as the gzip the client sent.
    let mut gzipped = item.clone();
    gzipped.gzipped = Some({
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        gz.finish().unwrap()
    });
    let prepared = [item.prepare(), gzipped.prepare()];
    let ids = crate::block_on(store.enqueue(prepared.into())).unwrap();
    assert_eq!(ids.len(), 2);
    let rows = store.read(|c| queue::fetch(c, 0, 10, &mut |_| None)).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].id, rows[1].id), (ids[0], ids[1]));
    assert_eq!(rows[0].envelope.body, body);
    assert_eq!(rows[1].envelope.body, body, "the client's gzip is decoded");
    // A body still in memory is taken from there, not decoded again.
    let marker = b"from memory".to_vec();
    let second = ids[1];
    let from_memory = store.read(move |c| queue::fetch(c, 0, 10, &mut |id| (id == second).then(|| marker.clone()))).unwrap();
    assert_eq!(from_memory[1].envelope.body, b"from memory");
    let processed: Vec<_> = rows
        .iter()
        .map(|r| process_envelope(&Origin { queue_id: r.id, project_id: pid, received: r.envelope.received, ..Origin::default() }, &r.envelope.body))
        .collect();
    let prepared = digest::prepare(processed, digest::PostProcess::Queue, store.dictionaries());
    let outcomes = store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap();
    assert_eq!(outcomes.len(), 1, "the duplicate is not counted");
    assert!(outcomes[0].is_new);
    assert_eq!(store.read(queue::len).unwrap(), 0, "digested rows leave the queue");
    let issue = store.read(|c| query::issue(c, outcomes[0].issue_id)).unwrap();
    assert_eq!((issue.times_seen, issue.user_count), (1, 1));
    let tags = store.read(|c| query::tag_values(c, issue.id, "t", 10)).unwrap();
    assert_eq!(tags[0].times_seen, 1);

    // Resolve, then a new event of the same issue is a regression.
    store.write_blocking(move |c| query::set_issue_status(c, issue.id, "resolved")).unwrap();
    let next = process_envelope(&Origin { project_id: pid, received: now(), ..Origin::default() }, &envelope(&"bb".repeat(16), r#"{"message": "User 2 failed", "user": {"id": "1"}}"#));
    let prepared = digest::prepare(vec![next], digest::PostProcess::Queue, store.dictionaries());
    let outcomes = store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap();
    assert!(!outcomes[0].is_new && outcomes[0].is_regression);
    let issue = store.read(|c| query::issue(c, issue.id)).unwrap();
    assert_eq!((issue.status.as_str(), issue.substatus.as_deref(), issue.times_seen, issue.user_count), ("unresolved", Some("regressed"), 2, 1));
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn without_post_processing_no_job_is_queued_and_the_event_is_stored_whole() {
    let (store, dir) = temp_store("skip-post-process");
    let queued = project(&store);
    let skipped = store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "api", "API", None)?.0.id)).unwrap();
    let id = "dd".repeat(16);
    let payload = r#"{"logger": "app.jobs", "exception": {"values": [{"type": "KeyError", "value": "'user'"}]}, "tags": {"t": "x"}}"#;
    let digest = |project_id: i64, post_process: digest::PostProcess| {
        let processed = process_envelope(&Origin { queue_id: 1, project_id, received: 1_700_000_000.0, ..Origin::default() }, &envelope(&id, payload));
        let prepared = digest::prepare(vec![processed], post_process, store.dictionaries());
        let (outcomes, prepared) = store.write_blocking(move |c| Ok((digest::apply(c, &prepared)?, prepared))).unwrap();
        let (_, events) = prepared.into_iter().next().unwrap().into_events();
        (outcomes.into_iter().next().unwrap(), events.into_iter().next().unwrap())
    };
    let (with_job, kept) = digest(queued, digest::PostProcess::Queue);
    let (without, freed) = digest(skipped, digest::PostProcess::Skip);
    assert!(with_job.post_process_job.is_some() && without.post_process_job.is_none());
    let jobs: Vec<(i64, i64)> = store.read(|c| Ok(c.prepare("SELECT id, project_id FROM post_process")?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)).unwrap();
    assert_eq!(jobs, vec![(with_job.post_process_job.unwrap(), queued)], "one job, for the project that post-processes");
    assert!(!kept.data.is_empty() && freed.data.is_empty(), "the payload is freed once stored when nothing post-processes it");
    // What is stored does not depend on it: the event and its new issue's fields.
    let read = |project_id: i64, issue_id: i64| {
        let id = id.clone();
        store.read(move |c| Ok((query::event(c, project_id, &id)?.unwrap().data, query::issue(c, issue_id)?))).unwrap()
    };
    let ((kept_data, kept_issue), (freed_data, freed_issue)) = (read(queued, with_job.issue_id), read(skipped, without.issue_id));
    assert_eq!(kept_data, freed_data);
    assert_eq!((freed_issue.logger.as_deref(), &freed_issue.metadata), (Some("app.jobs"), &serde_json::json!({"type": "KeyError", "value": "'user'"})));
    assert_eq!((kept_issue.logger, kept_issue.metadata), (freed_issue.logger, freed_issue.metadata));
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_event_id_is_stored_once_per_project() {
    let (store, dir) = temp_store("duplicates");
    let web = project(&store);
    let api = store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "api", "API", None)?.0.id)).unwrap();
    let (a, b) = ("a1".repeat(16), "b2".repeat(16));
    let digest = |batch: Vec<(i64, &str)>| {
        let events: Vec<_> = batch.into_iter().map(|(pid, id)| (pid, id, now(), r#"{"message": "boom"}"#)).collect();
        digest_events(&store, &events).into_iter().map(|o| (o.project_id, o.event_id)).collect::<Vec<_>>()
    };
    assert_eq!(digest(vec![(web, &a)]), vec![(web, a.clone())]);
    // A later batch: `a` again (an SDK retry), `b` twice in the batch, and
    // `a` in another project, which is a different event.
    let stored = digest(vec![(web, &b), (web, &a), (web, &b), (api, &a)]);
    assert_eq!(stored, vec![(web, b.clone()), (api, a.clone())]);
    let stats = store.read(move |c| query::item_stats(c, web)).unwrap();
    let count = |outcome: &str| stats["items"].as_array().unwrap().iter().find(|i| i["itemType"] == "event" && i["outcome"] == outcome).map(|i| i["count"].as_i64().unwrap());
    assert_eq!((count("accepted"), count("duplicate")), (Some(2), Some(2)));
    assert_eq!(store.read(move |c| query::count_events(c, web)).unwrap(), 2);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tag_counts_add_up_across_batches_and_statement_chunks() {
    let (store, dir) = temp_store("tag-chunks");
    let pid = project(&store);
    // 140 tags an event: more than one multi-row upsert (128 rows) plus a remainder.
    let tags: serde_json::Map<String, serde_json::Value> = (0..140).map(|i| (format!("k{i}"), serde_json::Value::from(format!("v{i}")))).collect();
    let event = serde_json::json!({"message": "boom", "tags": tags}).to_string();
    let (c1, c2, c3) = ("c1".repeat(16), "c2".repeat(16), "c3".repeat(16));
    let first = digest_events(&store, &[(pid, &c1, 1_700_000_000.0, &event), (pid, &c2, 1_700_000_000.0, &event)]);
    digest_events(&store, &[(pid, &c3, 1_700_000_100.0, &event)]);
    let issue = first[0].issue_id;
    for i in [0, 77, 127, 128, 139] {
        let key = format!("k{i}");
        let values = store.read(move |c| query::tag_values(c, issue, &key, 10)).unwrap();
        assert_eq!(values.len(), 1, "k{i}");
        assert_eq!((values[0].value.as_str(), values[0].times_seen), (format!("v{i}").as_str(), 3), "k{i}");
        assert!(values[0].first_seen < values[0].last_seen, "k{i}: first and last seen come from different batches");
    }
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

/// As [`digest_events`], with the batch's tag counts written with
/// `kept_back` (`Some`) or kept back (`None`); returns the kept-back counts.
fn digest_events_tags(store: &Store, events: &[(i64, &str, f64, &str)], write: Option<tags::TagCounts>) -> (Vec<digest::EventOutcome>, tags::TagCounts) {
    let prepared = prepare_events(store, events, digest::PostProcess::Skip);
    store
        .write_blocking(move |c| {
            let mode = match &write {
                Some(kept_back) => tags::TagsInBatch::Write { kept_back },
                None => tags::TagsInBatch::KeepBack,
            };
            digest::apply_with(c, &prepared, mode)
        })
        .unwrap()
}

type TagRow = (i64, String, String, i64, f64, f64);

fn tag_rows(store: &Store) -> Vec<TagRow> {
    store
        .read(|c| {
            let mut st = c.prepare("SELECT issue_id, key, value, times_seen, first_seen, last_seen FROM issue_tag_values ORDER BY issue_id, key, value")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .unwrap()
}

fn uncounted_mark(store: &Store) -> Option<i64> {
    store.read(|c| Ok(c.query_row("SELECT value FROM digest_state WHERE key = 'tags_uncounted_from'", [], |r| r.get(0))?)).unwrap()
}

/// Three batches of events over two issues, with tags that repeat across
/// batches and tags that do not.
fn tag_batches() -> Vec<Vec<(String, f64, String)>> {
    (0..3)
        .map(|b| {
            (0..4)
                .map(|i| {
                    let n = b * 4 + i;
                    let event = serde_json::json!({"message": format!("boom {}", n % 2), "environment": "production", "release": format!("app@{}", n % 3),
                        "tags": {"customer": format!("c{n}"), "region": if n % 2 == 0 { "eu" } else { "us" }}, "user": {"id": (n % 5).to_string()}})
                    .to_string();
                    (format!("{n:032x}"), 1_700_000_000.0 + n as f64, event)
                })
                .collect()
        })
        .collect()
}

fn as_events(batch: &[(String, f64, String)], pid: i64) -> Vec<(i64, &str, f64, &str)> {
    batch.iter().map(|(id, t, ev)| (pid, id.as_str(), *t, ev.as_str())).collect()
}

/// The tag rows of [`tag_batches`] with every batch writing its own counts.
fn tag_rows_written_every_batch(name: &str) -> Vec<TagRow> {
    let (store, dir) = temp_store(name);
    let pid = project(&store);
    for batch in tag_batches() {
        digest_events(&store, &as_events(&batch, pid));
    }
    let rows = tag_rows(&store);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
    rows
}

#[test]
fn tag_counts_kept_back_are_written_once_with_a_later_batch() {
    let reference = tag_rows_written_every_batch("tags-reference");
    assert!(reference.iter().any(|r| r.3 > 1) && reference.iter().any(|r| r.3 == 1), "some values repeat across batches, some do not");
    let (store, dir) = temp_store("tags-kept-back");
    let pid = project(&store);
    let batches = tag_batches();
    let (first, mut kept) = digest_events_tags(&store, &as_events(&batches[0], pid), None);
    assert!(tag_rows(&store).is_empty(), "kept back, not written");
    let first_row: i64 = store.read(|c| Ok(c.query_row("SELECT MIN(id) FROM events", [], |r| r.get(0))?)).unwrap();
    assert_eq!(uncounted_mark(&store), Some(first_row), "the mark points at the first event without counts");
    assert_eq!(first.len(), 4);
    let (_, second) = digest_events_tags(&store, &as_events(&batches[1], pid), None);
    assert_eq!(uncounted_mark(&store), Some(first_row), "a later batch leaves the mark where it is");
    kept.merge(second);
    let (_, left) = digest_events_tags(&store, &as_events(&batches[2], pid), Some(kept));
    assert!(left.is_empty());
    assert_eq!(tag_rows(&store), reference, "the same rows and counts as writing every batch");
    assert_eq!(uncounted_mark(&store), None, "everything is counted");
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn after_a_crash_kept_back_tag_counts_are_recounted_from_the_stored_events() {
    let reference = tag_rows_written_every_batch("tags-recount-reference");
    let (store, dir) = temp_store("tags-recount");
    let pid = project(&store);
    let batches = tag_batches();
    digest_events(&store, &as_events(&batches[0], pid));
    // The next two batches keep their counts back, and the process dies
    // before writing them: the counts are dropped.
    for batch in &batches[1..] {
        drop(digest_events_tags(&store, &as_events(batch, pid), None));
    }
    assert_ne!(tag_rows(&store), reference);
    store.close();
    // The next start.
    let store = Store::open(&dir.join("db.sqlite3"), Durability::Normal).unwrap();
    assert_eq!(store.write_blocking(tags::recount_uncounted).unwrap(), 8, "the events of the two batches");
    assert_eq!(tag_rows(&store), reference, "every stored event counted exactly once");
    assert_eq!(uncounted_mark(&store), None);
    assert_eq!(store.write_blocking(tags::recount_uncounted).unwrap(), 0, "nothing left to count");
    assert_eq!(tag_rows(&store), reference);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

/// One event as a batch of its own: `write` as in [`digest_events_tags`].
fn one_event(store: &Store, pid: i64, id: &str, message: &str, value: &str, write: Option<tags::TagCounts>) -> (Vec<digest::EventOutcome>, tags::TagCounts) {
    let event = format!(r#"{{"message": "{message}", "tags": {{"k": "{value}"}}}}"#);
    digest_events_tags(store, &[(pid, &id.repeat(16), 1_700_000_000.0, &event)], write)
}

fn max_event_row(store: &Store) -> i64 {
    store.read(|c| Ok(c.query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))?)).unwrap()
}

fn k_values(store: &Store, issue: i64) -> Vec<(String, i64)> {
    store.read(move |c| query::tag_values(c, issue, "k", 10)).unwrap().into_iter().map(|v| (v.value, v.times_seen)).collect()
}

/// Issue A with one counted event; issue B, the newest, with one counted
/// event and one kept back; B deleted; then a new issue, which gets B's id,
/// with an event kept back. Returns (A, the new issue, both kept-back counts).
fn delete_the_newest_issue_with_counts_kept_back(store: &Store, pid: i64) -> (i64, i64, tags::TagCounts) {
    let (old, _) = one_event(store, pid, "a1", "old", "v", Some(tags::TagCounts::default()));
    let (doomed, _) = one_event(store, pid, "b1", "doomed", "v", Some(tags::TagCounts::default()));
    let (_, mut kept) = one_event(store, pid, "b2", "doomed", "v", None);
    assert_eq!(uncounted_mark(store), Some(3));
    let doomed = doomed[0].issue_id;
    store.write_blocking(move |c| query::delete_issue(c, doomed)).unwrap();
    // The newest issue stays as an empty row, so that its id is not given out
    // again; retention takes that row once it is old. Taken here, to make
    // the case where ids are reused.
    let status = store.read(move |c| Ok(c.query_row("SELECT status FROM issues WHERE id = ?", [doomed], |r| r.get::<_, String>(0))?)).unwrap();
    assert_eq!(status, query::DELETED);
    store.write_blocking(move |c| Ok(c.execute("DELETE FROM issues WHERE id = ?", [doomed])?)).unwrap();
    // The next event takes row id 2, below the mark, unless the mark comes down.
    assert_eq!(uncounted_mark(store), Some(2), "the highest remaining row id + 1");
    let (new, more) = one_event(store, pid, "c1", "new", "w", None);
    assert_eq!(new[0].issue_id, doomed, "SQLite gives the new issue the deleted one's id");
    assert_eq!(max_event_row(store), 2);
    kept.merge(more);
    (old[0].issue_id, new[0].issue_id, kept)
}

#[test]
fn counts_kept_back_before_an_issue_was_deleted_are_recounted_not_written() {
    let (store, dir) = temp_store("tags-deleted-issue-write");
    let pid = project(&store);
    let (old, new, kept) = delete_the_newest_issue_with_counts_kept_back(&store, pid);
    // The next write: the deleted issue's kept-back "v" must not land on the new issue.
    one_event(&store, pid, "a2", "old", "v", Some(kept));
    assert_eq!(k_values(&store, new), [("w".to_string(), 1)]);
    assert_eq!(k_values(&store, old), [("v".to_string(), 2)]);
    assert_eq!(uncounted_mark(&store), None);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn after_an_issue_deletion_and_a_crash_new_events_are_recounted() {
    let (store, dir) = temp_store("tags-deleted-issue-crash");
    let pid = project(&store);
    let (old, new, kept) = delete_the_newest_issue_with_counts_kept_back(&store, pid);
    drop(kept); // the process dies
    assert_eq!(store.write_blocking(tags::recount_uncounted).unwrap(), 1, "the new event; the deleted ones are gone");
    assert_eq!(k_values(&store, new), [("w".to_string(), 1)]);
    assert_eq!(k_values(&store, old), [("v".to_string(), 1)]);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_mark_left_by_a_crash_is_recounted_by_the_next_write_if_the_start_did_not() {
    let reference = tag_rows_written_every_batch("tags-foreign-mark-reference");
    let (store, dir) = temp_store("tags-foreign-mark");
    let pid = project(&store);
    let batches = tag_batches();
    digest_events(&store, &as_events(&batches[0], pid));
    drop(digest_events_tags(&store, &as_events(&batches[1], pid), None)); // the process dies
    // No recount at the start (it failed): a later batch keeps its counts back
    // too, and then one writes them.
    let (_, kept) = digest_events_tags(&store, &as_events(&batches[2], pid), None);
    store.write_blocking(move |c| tags::write_kept_back(c, &kept)).unwrap();
    assert_eq!(tag_rows(&store), reference, "the crash's events counted once, the later ones once");
    assert_eq!(uncounted_mark(&store), None);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn search_parsing() {
    use query::IssueSearch;
    let s = IssueSearch::parse(r#"is:resolved level:error !browser:"Firefox 1" free "two words""#).unwrap();
    assert_eq!(s.status.as_deref(), Some("resolved"));
    assert_eq!(s.tags, vec![("level".into(), "error".into(), false), ("browser".into(), "Firefox 1".into(), true)]);
    assert_eq!(s.text, vec!["free".to_string(), "two words".to_string()]);
    assert!(IssueSearch::parse("is:nope").is_err());
    assert_eq!(IssueSearch::parse("").unwrap(), IssueSearch::default());
}

#[test]
fn passwords_and_tokens() {
    let (store, dir) = temp_store("accounts");
    let hash = accounts::hash_password("correct horse").unwrap();
    assert!(hash.starts_with("$argon2"));
    assert!(accounts::verify_password("correct horse", &hash));
    assert!(!accounts::verify_password("wrong", &hash));
    let token = store
        .write_blocking(move |c| {
            let (user, _) = accounts::upsert_user(c, "a@example.com", &hash, false)?;
            accounts::create_token(c, user.id)
        })
        .unwrap();
    let user = store.read(|c| accounts::user_for_token(c, &token)).unwrap().unwrap();
    assert_eq!(user.email, "a@example.com");
    assert!(store.read(|c| accounts::user_for_token(c, "pkt_nope")).unwrap().is_none());
    // Only the hash is stored.
    let stored: String = store.read(|c| Ok(c.query_row("SELECT token_hash FROM api_tokens", [], |r| r.get(0))?)).unwrap();
    assert_ne!(stored, token);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn events_are_compressed_with_the_projects_dictionary_once_trained() {
    let (store, dir) = temp_store("dictionary");
    let pid = project(&store);
    let payload = |n: usize| {
        format!(
            r#"{{"exception": {{"values": [{{"type": "ValueError", "value": "bad value {n}", "stacktrace": {{"frames": [{{"module": "app.views", "function": "handle", "lineno": {n}}}]}}}}]}}, "breadcrumbs": [{{"message": "GET /items/{n}", "category": "http"}}], "tags": {{"n": "{n}"}}, "user": {{"id": "{n}"}}}}"#
        )
    };
    let ids: Vec<String> = (0..dictionary::TRAIN_SAMPLES + 50).map(|n| format!("{n:032x}")).collect();
    let batch = |range: std::ops::Range<usize>| -> Vec<(i64, String, String)> { range.map(|n| (pid, ids[n].clone(), payload(n))).collect() };
    let digest_range = |range: std::ops::Range<usize>| {
        let events = batch(range);
        let refs: Vec<(i64, &str, f64, &str)> = events.iter().map(|(p, id, body)| (*p, id.as_str(), now(), body.as_str())).collect();
        digest_events(&store, &refs);
    };
    // Sampling: the first events are stored without a dictionary.
    digest_range(0..dictionary::TRAIN_SAMPLES - 1);
    assert!(store.dictionaries().take_samples().is_none(), "not enough samples yet");
    digest_range(dictionary::TRAIN_SAMPLES - 1..dictionary::TRAIN_SAMPLES);
    let (project_id, samples) = store.dictionaries().take_samples().expect("samples complete");
    assert_eq!((project_id, samples.len()), (pid, dictionary::TRAIN_SAMPLES));
    let dict_id = dictionary::train_and_install(&store, pid, samples).unwrap();
    assert_eq!(store.dictionaries().current(pid), Some(dict_id));
    digest_range(dictionary::TRAIN_SAMPLES..dictionary::TRAIN_SAMPLES + 50);

    let blob_of = |id: &str| {
        let id = id.to_string();
        store.read(move |c| Ok(c.query_row("SELECT data FROM events WHERE event_id = ?", [id], |r| r.get::<_, Vec<u8>>(0))?)).unwrap()
    };
    let (before, after) = (blob_of(&ids[5]), blob_of(&ids[dictionary::TRAIN_SAMPLES + 5]));
    assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&before), None);
    assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&after).map(|d| d.get()), Some(dict_id));
    assert!(after.len() * 2 < before.len(), "a dictionary at least halves these events: {} vs {} bytes", after.len(), before.len());

    // A large event is compressed without it (cheaper at that size), and reads back.
    let large_id = format!("{:032x}", 1u64 << 40);
    let items: Vec<String> = (0..1000).map(|n| format!(r#"{{"sku": "SKU-{n}", "quantity": {}}}"#, n % 7)).collect();
    let large = format!(r#"{{"message": "a large order", "extra": {{"items": [{}]}}}}"#, items.join(","));
    assert!(large.len() > 20 << 10);
    digest_events(&store, &[(pid, large_id.as_str(), now(), large.as_str())]);
    assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&blob_of(&large_id)), None);
    let read_id = large_id.clone();
    let read = store.read(move |c| query::event(c, pid, &read_id)).unwrap().expect("stored");
    assert_eq!(read.data["extra"]["items"][999]["sku"], "SKU-999");

    // Both kinds read back, also after a restart, on a thread that has no
    // dictionary cached (it is loaded from the database).
    store.close();
    let store = Store::open(&dir.join("db.sqlite3"), Durability::Normal).unwrap();
    assert_eq!(store.dictionaries().current(pid), Some(dict_id), "a restarted store compresses with the same dictionary");
    let (reader, id_before, id_after) = (store.clone(), ids[5].clone(), ids[dictionary::TRAIN_SAMPLES + 5].clone());
    let (a, b) = std::thread::spawn(move || {
        let read = |id: String| reader.read(move |c| query::event(c, pid, &id)).unwrap().expect("stored");
        (read(id_before), read(id_after))
    })
    .join()
    .unwrap();
    assert_eq!(a.data["exception"]["values"][0]["value"], "bad value 5");
    assert_eq!(b.data["exception"]["values"][0]["value"], format!("bad value {}", dictionary::TRAIN_SAMPLES + 5));

    // Another project whose dictionary gets the same id (zstd hashes only
    // part of a dictionary) uses the stored one, also after a restart.
    let other = store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "other", "Other", None)?.0.id)).unwrap();
    let used = store.write_blocking(move |c| dictionary::insert(c, other, dict_id, b"a different dictionary".to_vec())).unwrap();
    assert_ne!(used, b"a different dictionary".to_vec(), "the id keeps its first dictionary");
    store.close();
    let store = Store::open(&dir.join("db.sqlite3"), Durability::Normal).unwrap();
    assert_eq!((store.dictionaries().current(pid), store.dictionaries().current(other)), (Some(dict_id), Some(dict_id)));

    // A damaged dictionary row is skipped at open (the project trains anew), not a panic.
    store.write_blocking(|c| Ok(c.execute("UPDATE zstd_dictionaries SET data = x'0badda7a'", [])?)).unwrap();
    store.close();
    let store = Store::open(&dir.join("db.sqlite3"), Durability::Normal).unwrap();
    assert_eq!(store.dictionaries().current(pid), None);
    assert!(!store.dictionaries().compress_event(pid, b"{}").is_empty());

    // A dictionary missing from the database is a clear error, not garbage.
    store.write_blocking(|c| Ok(c.execute("DELETE FROM zstd_dictionaries", [])?)).unwrap();
    let (reader, id_after) = (store.clone(), ids[dictionary::TRAIN_SAMPLES + 5].clone());
    let missing = std::thread::spawn(move || reader.read(move |c| query::event(c, pid, &id_after)).map(|_| ()).unwrap_err().to_string()).join().unwrap();
    assert!(missing.contains(&format!("zstd dictionary {dict_id} is missing")), "{missing}");
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn feedback_transactions_and_user_reports_sent_again_are_stored_once() {
    let (store, dir) = temp_store("resend");
    let pid = project(&store);
    let feedback = b"{\"event_id\":\"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\"}\n{\"type\":\"feedback\"}\n\
{\"contexts\":{\"feedback\":{\"message\":\"the button is broken\",\"contact_email\":\"a@example.com\"}}}\n\
{\"type\":\"transaction\"}\n{\"event_id\":\"1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e\",\"type\":\"transaction\",\"transaction\":\"/checkout\",\"start_timestamp\":1710861500.0,\"timestamp\":1710861501.0}\n"
        .to_vec();
    let report = |comments: &str| format!("{{}}\n{{\"type\":\"user_report\"}}\n{{\"event_id\":\"2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d\",\"name\":\"A\",\"email\":\"a@example.com\",\"comments\":\"{comments}\"}}\n").into_bytes();
    let store_bodies = |bodies: Vec<Vec<u8>>| {
        let processed: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(n, body)| process_envelope(&Origin { queue_id: n as i64 + 1, project_id: pid, received: now(), ..Origin::default() }, body))
            .collect();
        let prepared = digest::prepare(processed, digest::PostProcess::Skip, store.dictionaries());
        store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap();
    };
    // Sent, then sent again twice (in one batch and in the next).
    store_bodies(vec![feedback.clone(), report("first")]);
    store_bodies(vec![feedback.clone(), feedback.clone(), report("second, edited")]);
    let reports = store.read(move |c| query::user_reports(c, pid, None)).unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports.iter().any(|r| r["comments"] == "the button is broken"));
    assert!(reports.iter().any(|r| r["comments"] == "second, edited"), "a legacy report is replaced by the event's next one");
    let transactions: i64 = store.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM transactions", [], |r| r.get(0))?)).unwrap();
    assert_eq!(transactions, 1);
    let counts: Vec<(String, String, i64)> = store
        .read(move |c| {
            let mut st = c.prepare("SELECT item_type, outcome, count FROM item_counts WHERE project_id = ? ORDER BY item_type, outcome")?;
            let rows = st.query_map([pid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .unwrap();
    let count = |ty: &str, outcome: &str| counts.iter().find(|(t, o, _)| t == ty && o == outcome).map_or(0, |c| c.2);
    assert_eq!((count("feedback", "accepted"), count("feedback", "duplicate")), (1, 2), "{counts:?}");
    assert_eq!((count("transaction", "accepted"), count("transaction", "duplicate")), (1, 2), "{counts:?}");
    assert_eq!((count("user_report", "accepted"), count("user_report", "duplicate")), (1, 1), "{counts:?}");
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn issues_are_numbered_per_project_and_numbers_are_not_reused() {
    let (store, dir) = temp_store("short-ids");
    let web = project(&store);
    let api = store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "api", "API", None)?.0.id)).unwrap();
    let event = |n: u32| format!(r#"{{"exception": {{"values": [{{"type": "Error{n}", "value": "x"}}]}}}}"#);
    let ids: Vec<String> = (0..5).map(|n| format!("{n:032x}")).collect();
    let (e0, e1, e2, e3) = (event(0), event(1), event(2), event(3));
    let outcomes = digest_events(&store, &[(web, &ids[0], now(), &e0), (api, &ids[1], now(), &e1), (web, &ids[2], now(), &e2)]);
    let short = |issue_id: i64| store.read(move |c| query::issue(c, issue_id)).unwrap().short_id;
    assert_eq!(outcomes.iter().map(|o| short(o.issue_id)).collect::<Vec<_>>(), [1, 1, 2]);
    // A deleted issue's number stays taken.
    let deleted = outcomes[2].issue_id;
    store.write_blocking(move |c| query::delete_issue(c, deleted)).unwrap();
    let next = digest_events(&store, &[(web, &ids[3], now(), &e3)]);
    assert_eq!(short(next[0].issue_id), 3);
    // So does its id (it was the newest issue: its row stays, emptied), and
    // no lookup shows that row.
    assert!(next[0].issue_id > deleted, "{} reused", next[0].issue_id);
    assert!(matches!(store.read(move |c| query::issue(c, deleted)), Err(StoreError::NotFound(_))));
    let listed = store.read(move |c| query::list_issues(c, web, &query::IssueSearch::default(), query::IssueSort::default(), 0, 10)).unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), [next[0].issue_id, outcomes[0].issue_id]);
    // Deleting the now newest issue takes the older empty row with it.
    let newest = next[0].issue_id;
    store.write_blocking(move |c| query::delete_issue(c, newest)).unwrap();
    let rows = store.read(|c| Ok(c.prepare("SELECT id, status FROM issues ORDER BY id")?.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?.collect::<rusqlite::Result<Vec<_>>>()?)).unwrap();
    assert_eq!(rows, [(outcomes[0].issue_id, "unresolved".to_string()), (outcomes[1].issue_id, "unresolved".to_string()), (newest, query::DELETED.to_string())]);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn retention_deletes_what_is_older_than_the_cutoff_and_issues_left_without_events() {
    let (store, dir) = temp_store("retention");
    let pid = project(&store);
    let day = 86_400.0;
    let (old, new) = (now() - 100.0 * day, now());
    let alpha = r#"{"message": "alpha"}"#;
    let beta = r#"{"message": "beta"}"#;
    let gamma = r#"{"message": "gamma"}"#;
    let tx_old = format!(r#"{{"type": "transaction", "transaction": "/old", "start_timestamp": {}, "timestamp": {}}}"#, old - 1.0, old);
    // In arrival order (row ids grow): three old events, then new ones.
    digest_events(
        &store,
        &[
            (pid, "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", old, alpha),
            (pid, "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2", old + 1.0, alpha),
            (pid, "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1", old + 2.0, beta),
        ],
    );
    let processed = vec![process_envelope(
        &Origin { queue_id: 9, project_id: pid, received: old, ..Origin::default() },
        format!("{{}}\n{{\"type\":\"transaction\"}}\n{tx_old}\n").as_bytes(),
    )];
    let prepared = digest::prepare(processed, digest::PostProcess::Skip, store.dictionaries());
    store.write_blocking(move |c| digest::apply(c, &prepared)).unwrap();
    digest_events(&store, &[(pid, "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", new, beta), (pid, "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1", new, gamma)]);

    // Two rows a chunk, so that the run takes several chunks.
    let cutoff = now() - 30.0 * day;
    let chunks = delete_in_chunks(&store, retention::Selection::OlderThan(cutoff), 2);
    let total = sum(&chunks);
    assert!(chunks.len() < 20, "the run does not end: {total}");
    assert!(chunks.len() + 1 > 2, "{} chunks", chunks.len() + 1);
    assert_eq!((total.events, total.issues, total.transactions), (3, 1, 1), "{total}");
    // Its tag counts and hourly count went first, in chunks of their own.
    assert!(total.counters > 0, "{total:?}");
    assert_eq!(total.to_string(), format!("3 events, 1 issue, 1 transaction, {} tag count and user rows", total.counters));

    let strings = |sql: &'static str| store.read(move |c| Ok(c.prepare(sql)?.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?)).unwrap();
    assert_eq!(strings("SELECT event_id FROM events ORDER BY id"), ["b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2", "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"]);
    assert_eq!(strings("SELECT title FROM issues ORDER BY id"), ["beta", "gamma"], "an issue goes once none of its events is left");
    // The deleted issue's hashes went with it: alpha again is a new issue.
    let outcomes = digest_events(&store, &[(pid, "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3", new, alpha)]);
    assert!(outcomes[0].is_new, "{outcomes:?}");
    // Nothing older than the cutoff is left: another run deletes nothing.
    assert!(store.write_blocking(move |c| retention::delete_chunk(c, retention::Selection::OlderThan(cutoff), 2)).unwrap().is_empty());
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_deleted_project_goes_whole_and_envelopes_queued_for_it_are_dropped() {
    let (store, dir) = temp_store("remove-project");
    let web = project(&store);
    let api = store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "api", "API", None)?.0.id)).unwrap();
    let events: Vec<(i64, String)> = (0..25).map(|n| (if n % 5 == 0 { api } else { web }, format!("{n:032x}"))).collect();
    let rows: Vec<(i64, &str, f64, &str)> = events.iter().map(|(p, id)| (*p, id.as_str(), now(), r#"{"message": "boom"}"#)).collect();
    digest_events(&store, &rows);
    let count = |sql: &'static str, pid: i64| store.read(move |c| Ok(c.query_row(sql, [pid], |r| r.get::<_, i64>(0))?)).unwrap();

    // Started, then stopped halfway (a few chunks), as a stop of the server would leave it.
    store.write_blocking(move |c| accounts::start_project_deletion(c, web)).unwrap();
    assert!(store.read(|c| accounts::project_by_slug(c, "acme", "web")).is_err(), "hidden at once");
    assert_eq!(count("SELECT COUNT(*) FROM project_keys WHERE project_id = ?", web), 0, "its keys go at once");
    assert_eq!(store.read(accounts::projects_being_deleted).unwrap(), [web]);
    // A dictionary whose training finishes now is not made the deleted project's.
    store.write_blocking(move |c| dictionary::insert(c, web, 7, b"trained too late".to_vec())).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM project_dictionaries WHERE project_id = ?", web), 0);
    let mut total = retention::Deleted::default();
    for _ in 0..3 {
        total.add(store.write_blocking(move |c| retention::delete_chunk(c, retention::Selection::Project(web), 3)).unwrap());
    }
    assert_eq!(total.events, 9, "{total}");
    // Resumed: the rest goes, then the project.
    total.add(retention::delete_project(&store, web, |_| std::ops::ControlFlow::Continue(())).unwrap());
    assert_eq!((total.events, total.issues), (20, 1), "{total}");
    assert!(store.read(accounts::projects_being_deleted).unwrap().is_empty());
    // Its slug is free for a new project.
    store.write_blocking(|c| Ok(accounts::create_project(c, "acme", "web", "Web again", None)?.0.id)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM projects WHERE id = ? AND deleting = 2", web), 1, "the row stays, marked deleted: its id is not reused");
    assert_eq!(count("SELECT COUNT(*) FROM project_keys WHERE project_id = ?", web), 0);
    assert_eq!(count("SELECT COUNT(*) FROM item_counts WHERE project_id = ?", web), 0);
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE project_id = ?", api), 5, "the other project keeps its events");
    assert_eq!(count("SELECT COUNT(*) FROM issues WHERE project_id = ?", api), 1);

    // An envelope queued for the deleted project before its keys went: dropped,
    // and the rest of its batch is stored (a failing batch would be retried forever).
    let outcomes = digest_events(&store, &[(web, "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", now(), r#"{"message": "late"}"#), (api, "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1", now(), r#"{"message": "boom"}"#)]);
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].project_id, api);
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE project_id = ?", api), 6);
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE project_id = ?", web), 0);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_large_issue_is_deleted_in_chunks_and_disappears_at_once() {
    let (store, dir) = temp_store("delete-issue");
    let pid = project(&store);
    // The doomed issue: 30 events, each from its own user with its own tag value.
    let doomed: Vec<(String, String)> = (0..30).map(|n| (format!("{n:032x}"), format!(r#"{{"message": "doomed", "user": {{"id": "u{n}"}}, "tags": {{"k": "v{n}"}}}}"#))).collect();
    let rows: Vec<(i64, &str, f64, &str)> = doomed.iter().map(|(id, ev)| (pid, id.as_str(), now(), ev.as_str())).collect();
    let doomed_issue = digest_events(&store, &rows)[0].issue_id;
    let kept = digest_events(&store, &[(pid, "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", now(), r#"{"message": "kept", "tags": {"k": "v1"}}"#)])[0].issue_id;
    let count = |sql: &'static str, id: i64| store.read(move |c| Ok(c.query_row(sql, [id], |r| r.get::<_, i64>(0))?)).unwrap();
    let listed = || store.read(move |c| query::list_issues(c, pid, &query::IssueSearch::default(), query::IssueSort::default(), 0, 10)).unwrap().into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(listed(), [kept, doomed_issue]);

    // Started: gone from every lookup at once, its events still there.
    store.write_blocking(move |c| query::start_issue_deletion(c, doomed_issue)).unwrap();
    assert_eq!(listed(), [kept]);
    assert!(matches!(store.read(move |c| query::issue(c, doomed_issue)), Err(StoreError::NotFound(_))));
    assert_eq!(store.read(query::issues_being_deleted).unwrap(), [doomed_issue]);
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE issue_id = ?", doomed_issue), 30);
    let values = store.read(move |c| plugins::project_tag_values(c, pid, "k", 100)).unwrap();
    assert_eq!(values, [("v1".to_string(), 1)], "the tag filter counts no issue being deleted");
    // A new event like its events opens a new issue: its hashes went.
    let again = digest_events(&store, &[(pid, "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0", now(), r#"{"message": "doomed"}"#)]);
    assert!(again[0].is_new && again[0].issue_id != doomed_issue, "{again:?}");

    // Chunks of 7 rows: events, then tag counts, then users, then the issue.
    let chunks = delete_in_chunks(&store, retention::Selection::Issue(doomed_issue), 7);
    assert!(chunks.len() < 30, "the deletion does not end: {chunks:?}");
    assert_eq!(chunks.iter().map(|d| d.events).collect::<Vec<_>>()[..5], [7, 7, 7, 7, 2]);
    let total = sum(&chunks);
    // 30 tag values of `k`, plus the derived tags (level, user, ...); 30 users.
    assert!(total.counters >= 60, "{total:?}");
    assert!(chunks.iter().all(|d| d.events + d.counters <= 7), "{chunks:?}");
    assert_eq!((total.events, total.issues), (30, 1), "{total}");
    assert_eq!(count("SELECT COUNT(*) FROM issues WHERE id = ?", doomed_issue), 0);
    assert_eq!(count("SELECT COUNT(*) FROM issue_tag_values WHERE issue_id = ?", doomed_issue), 0);
    assert_eq!(count("SELECT COUNT(*) FROM issue_users WHERE issue_id = ?", doomed_issue), 0);
    assert!(store.read(query::issues_being_deleted).unwrap().is_empty());
    // The other issues keep everything.
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE issue_id = ?", kept), 1);
    assert_eq!(count("SELECT times_seen FROM issue_tag_values WHERE issue_id = ? AND key = 'k'", kept), 1);
    // Deleting it again finds nothing, and says so by deleting nothing.
    assert!(retention::delete_issue(&store, doomed_issue, |_| std::ops::ControlFlow::Continue(())).unwrap().is_empty());
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `selection` chunk by chunk, `rows` at a time, to its end.
fn delete_in_chunks(store: &Store, selection: retention::Selection, rows: usize) -> Vec<retention::Deleted> {
    let mut chunks = Vec::new();
    loop {
        let d = store.write_blocking(move |c| retention::delete_chunk(c, selection, rows)).unwrap();
        if d.is_empty() {
            return chunks;
        }
        chunks.push(d);
        assert!(chunks.len() < 200, "the deletion does not end: {chunks:?}");
    }
}

fn sum(chunks: &[retention::Deleted]) -> retention::Deleted {
    chunks.iter().fold(retention::Deleted::default(), |mut t, d| {
        t.add(*d);
        t
    })
}

#[test]
fn a_project_whose_issues_have_many_counters_is_deleted_in_bounded_chunks() {
    let (store, dir) = temp_store("project-counters");
    let web = project(&store);
    // Two issues, each event with its own user and tag value: the issues'
    // counters outnumber their events (here 3 per event: two tags, a user).
    let events: Vec<(String, String)> = (0..24)
        .map(|n| (format!("{n:032x}"), format!(r#"{{"message": "m{}", "user": {{"id": "u{n}"}}, "tags": {{"k": "v{n}"}}}}"#, n % 2)))
        .collect();
    let rows: Vec<(i64, &str, f64, &str)> = events.iter().map(|(id, ev)| (web, id.as_str(), now(), ev.as_str())).collect();
    digest_events(&store, &rows);
    let count = |sql: &'static str| store.read(move |c| Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))?)).unwrap();
    let counters = || count("SELECT (SELECT COUNT(*) FROM issue_tag_values) + (SELECT COUNT(*) FROM issue_users) + (SELECT COUNT(*) FROM issue_hourly)");
    let before = counters();
    assert!(before > 72, "{before} counter rows");

    store.write_blocking(move |c| accounts::start_project_deletion(c, web)).unwrap();
    let chunks = delete_in_chunks(&store, retention::Selection::Project(web), 5);
    // No chunk deletes more than 5 rows of events or counters; the issues go
    // last, once nothing of theirs is left but a few hashes.
    assert!(chunks.iter().all(|d| d.events <= 5 && d.counters <= 5), "{chunks:?}");
    let issues_at = chunks.iter().position(|d| d.issues > 0).expect("the issues go");
    assert_eq!(chunks[issues_at].issues, 2);
    assert!(chunks[..issues_at].iter().all(|d| d.issues == 0) && chunks[issues_at + 1..].is_empty(), "{chunks:?}");
    let total = sum(&chunks);
    assert_eq!((total.events, total.counters), (24, before as u64), "{total:?}");
    assert_eq!(counters(), 0);
    store.write_blocking(move |c| retention::finish_project(c, web)).unwrap();
    // The newest issue was the project's: its id stays taken by an emptied row.
    assert_eq!(count("SELECT COUNT(*) FROM issues WHERE status <> 'deleted'"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM issues WHERE status = 'deleted'"), 1);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn retention_deletes_an_old_issue_in_chunks_hides_it_at_once_and_keeps_its_id() {
    let (store, dir) = temp_store("retention-issue");
    let pid = project(&store);
    let day = 86_400.0;
    let old = now() - 100.0 * day;
    let kept = digest_events(&store, &[(pid, "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1", now(), r#"{"message": "kept"}"#)])[0].issue_id;
    // The newest issue, and an old one: every event received in the past.
    let events: Vec<(String, String)> = (0..12).map(|n| (format!("{n:032x}"), format!(r#"{{"message": "old", "user": {{"id": "u{n}"}}, "tags": {{"k": "v{n}"}}}}"#))).collect();
    let rows: Vec<(i64, &str, f64, &str)> = events.iter().map(|(id, ev)| (pid, id.as_str(), old, ev.as_str())).collect();
    let doomed = digest_events(&store, &rows)[0].issue_id;
    assert!(doomed > kept);
    let count = |sql: &'static str, id: i64| store.read(move |c| Ok(c.query_row(sql, [id], |r| r.get::<_, i64>(0))?)).unwrap();

    // Chunks of 4 rows. The one that deletes its last events hides it at
    // once and takes its hashes.
    let cutoff = now() - 30.0 * day;
    let mut chunks = Vec::new();
    while sum(&chunks).events < 12 {
        chunks.push(store.write_blocking(move |c| retention::delete_chunk(c, retention::Selection::OlderThan(cutoff), 4)).unwrap());
        assert!(chunks.len() < 10, "{chunks:?}");
    }
    assert!(matches!(store.read(move |c| query::issue(c, doomed)), Err(StoreError::NotFound(_))));
    assert_eq!(count("SELECT COUNT(*) FROM group_hashes WHERE issue_id = ?", doomed), 0);
    assert!(count("SELECT COUNT(*) FROM issue_tag_values WHERE issue_id = ?", doomed) > 0, "its counters go in later chunks");
    chunks.extend(delete_in_chunks(&store, retention::Selection::OlderThan(cutoff), 4));
    assert!(chunks.iter().all(|d| d.events <= 4 && d.counters <= 4), "{chunks:?}");
    let total = sum(&chunks);
    // 12 values of `k` and of the derived `user`, 12 users, and a few more.
    assert!(total.counters >= 36, "{total:?}");
    assert_eq!((total.events, total.issues), (12, 1), "{total:?}");
    assert_eq!(count("SELECT COUNT(*) FROM issue_tag_values WHERE issue_id = ?", doomed), 0);
    assert_eq!(count("SELECT COUNT(*) FROM issue_users WHERE issue_id = ?", doomed), 0);
    assert_eq!(count("SELECT COUNT(*) FROM events WHERE issue_id = ?", kept), 1, "newer data stays");
    // It was the newest issue: its id is not given out again.
    let again = digest_events(&store, &[(pid, "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0", now(), r#"{"message": "old"}"#)]);
    assert!(again[0].is_new && again[0].issue_id > doomed, "{again:?}");
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_write_job_larger_than_the_in_memory_statement_journal_commits() {
    // Deleting a large issue, a long-kept-back tag write, a project's last
    // chunk: jobs whose savepoint journal outgrows memory spill to a file.
    let (store, dir) = temp_store("big-job");
    let pid = project(&store);
    let blob = vec![7u8; 1 << 20];
    store
        .write_blocking(move |c| {
            for i in 0..40 {
                c.execute("INSERT INTO attachments (project_id, event_id, name, attachment_type, size, data, created_at) VALUES (?, ?, 'big', 'event.attachment', ?, ?, 0)", rusqlite::params![pid, format!("{i:032x}"), blob.len() as i64, blob])?;
            }
            Ok(())
        })
        .unwrap();
    // Now change all of those pages again in one job: its journal holds them all.
    let other = vec![9u8; 1 << 20];
    let n = store.write_blocking(move |c| Ok(c.execute("UPDATE attachments SET data = ? WHERE project_id = ?", rusqlite::params![other, pid])?)).unwrap();
    assert_eq!(n, 40);
    store.close();
    let _ = std::fs::remove_dir_all(dir);
}
