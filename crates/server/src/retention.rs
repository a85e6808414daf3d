//! The retention task of `picket serve`: a minute after start and then every
//! hour, deletes what is older than `retention_days` (see
//! `picket_store::retention`), a chunk at a time so that ingest goes on;
//! and the deletions of projects and issues, which run in the background.

use std::ops::ControlFlow;
use std::time::Duration;

use picket_store::{retention, Store};
use tokio::sync::watch;

/// The first run waits this long, so that a start is not slowed by it.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// Between the end of one run and the start of the next.
const INTERVAL: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` turns true; `keep` `None` keeps everything. Each
/// run also finishes any deletion of a project or an issue left unfinished
/// (by a stop, or a `picket project remove` that was interrupted).
pub async fn run(store: Store, keep: Option<Duration>, mut shutdown: watch::Receiver<bool>) {
    let mut wait = FIRST_RUN_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = INTERVAL;
        resume_deletions(&store).await;
        let Some(keep) = keep else { continue };
        let cutoff = picket_store::now() - keep.as_secs_f64();
        let (store, stop) = (store.clone(), shutdown.clone());
        let started = std::time::Instant::now();
        let run = tokio::task::spawn_blocking(move || {
            retention::delete(&store, retention::Selection::OlderThan(cutoff), |_| if *stop.borrow() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        });
        match run.await {
            Ok(Ok(deleted)) if deleted.is_empty() => tracing::debug!(days = keep.as_secs() / 86_400, "retention: nothing older than the retention period"),
            Ok(Ok(deleted)) => tracing::info!(
                days = keep.as_secs() / 86_400,
                events = deleted.events,
                issues = deleted.issues,
                transactions = deleted.transactions,
                seconds = started.elapsed().as_secs_f64(),
                "retention: deleted {deleted}"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention: deleting old data failed; the next run tries again in an hour"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// What a background deletion deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Doomed {
    Project(i64),
    Issue(i64),
}

/// Deletes a project or an issue in the background, on a blocking thread:
/// what the API's `DELETE` starts, and what a start resumes. If Picket stops
/// meanwhile, it stays hidden and half deleted until the next start
/// finishes it.
pub fn spawn_deletion(store: Store, doomed: Doomed) {
    if !DELETING.lock().unwrap_or_else(|e| e.into_inner()).insert(doomed) {
        return; // this server is deleting it already
    }
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let go_on = |_: &retention::Deleted| ControlFlow::Continue(());
        let (kind, id, deleted) = match doomed {
            Doomed::Project(id) => ("project", id, retention::delete_project(&store, id, go_on)),
            Doomed::Issue(id) => ("issue", id, retention::delete_issue(&store, id, go_on)),
        };
        match deleted {
            Ok(deleted) => tracing::info!(kind, id, seconds = started.elapsed().as_secs_f64(), "deleted the {kind}: {deleted}"),
            Err(picket_store::StoreError::WriterGone) => tracing::info!(kind, id, "stopping: the {kind}'s deletion goes on at the next start"),
            Err(e) => tracing::error!(kind, id, error = %e, "deleting the {kind} failed; it is tried again within the hour"),
        }
        DELETING.lock().unwrap_or_else(|e| e.into_inner()).remove(&doomed);
    });
}

/// The projects and issues this server is deleting now.
static DELETING: std::sync::Mutex<std::collections::BTreeSet<Doomed>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Finishes the deletions a stop (of this server, or of a `picket project
/// remove`) interrupted: at start, and hourly. Projects each on a task of
/// their own (they are few); issues one after another on a single task,
/// since retention can leave thousands hidden and half deleted, and a paced
/// deletion per issue at once would take the whole writer.
pub async fn resume_deletions(store: &Store) {
    let listed = store
        .read_async(|c| Ok((picket_store::accounts::projects_being_deleted(c)?, picket_store::query::issues_being_deleted(c)?)))
        .await;
    let (projects, issues) = match listed {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the projects and issues being deleted; their deletion is tried again within the hour");
            return;
        }
    };
    for id in projects {
        if !is_deleting(Doomed::Project(id)) {
            tracing::info!(project = id, "resuming a project's deletion");
            spawn_deletion(store.clone(), Doomed::Project(id));
        }
    }
    let issues: Vec<i64> = issues.into_iter().filter(|&id| !is_deleting(Doomed::Issue(id))).collect();
    if issues.is_empty() || RESUMING_ISSUES.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return; // nothing to do, or the previous resumption is still at it
    }
    tracing::info!(issues = issues.len(), "resuming the deletion of issues");
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let (started, count) = (std::time::Instant::now(), issues.len());
        for id in issues {
            if !DELETING.lock().unwrap_or_else(|e| e.into_inner()).insert(Doomed::Issue(id)) {
                continue; // the API started it again meanwhile
            }
            let result = retention::delete_issue(&store, id, |_| ControlFlow::Continue(()));
            DELETING.lock().unwrap_or_else(|e| e.into_inner()).remove(&Doomed::Issue(id));
            match result {
                Ok(deleted) => tracing::debug!(issue = id, "deleted the issue: {deleted}"),
                Err(picket_store::StoreError::WriterGone) => break,
                Err(e) => tracing::error!(issue = id, error = %e, "deleting the issue failed; it is tried again within the hour"),
            }
        }
        tracing::info!(issues = count, seconds = started.elapsed().as_secs_f64(), "resumed deletions of issues ended");
        RESUMING_ISSUES.store(false, std::sync::atomic::Ordering::Release);
    });
}

/// Whether a task of this server is deleting it now.
fn is_deleting(doomed: Doomed) -> bool {
    DELETING.lock().unwrap_or_else(|e| e.into_inner()).contains(&doomed)
}

/// Whether the task of [`resume_deletions`] that deletes issues runs.
static RESUMING_ISSUES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
