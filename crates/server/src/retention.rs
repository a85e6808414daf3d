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
/// remove`) interrupted: at start, and hourly.
pub async fn resume_deletions(store: &Store) {
    let listed = store
        .read_async(|c| {
            let projects = picket_store::accounts::projects_being_deleted(c)?.into_iter().map(Doomed::Project);
            let issues = picket_store::query::issues_being_deleted(c)?.into_iter().map(Doomed::Issue);
            Ok(projects.chain(issues).collect::<Vec<_>>())
        })
        .await;
    match listed {
        Ok(doomed) => {
            for d in doomed {
                if !DELETING.lock().unwrap_or_else(|e| e.into_inner()).contains(&d) {
                    tracing::info!(what = ?d, "resuming a deletion");
                    spawn_deletion(store.clone(), d);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the projects and issues being deleted; their deletion is tried again within the hour"),
    }
}
