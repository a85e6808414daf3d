//! The retention task of `picket serve`: a minute after start and then every
//! hour, deletes what is older than `retention_days` (see
//! `picket_store::retention`), a chunk at a time so that ingest goes on;
//! and project deletions, which run in the background.

use std::ops::ControlFlow;
use std::time::Duration;

use picket_store::{retention, Store};
use tokio::sync::watch;

/// The first run waits this long, so that a start is not slowed by it.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// Between the end of one run and the start of the next.
const INTERVAL: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` turns true; `keep` `None` keeps everything. Each
/// run also finishes any project deletion left unfinished (by a `picket
/// project remove` that was interrupted, say).
pub async fn run(store: Store, keep: Option<Duration>, mut shutdown: watch::Receiver<bool>) {
    let mut wait = FIRST_RUN_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = INTERVAL;
        resume_project_deletions(&store).await;
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

/// Deletes a project in the background, on a blocking thread: what the API's
/// `DELETE` starts, and what a start resumes. If Picket stops meanwhile, the
/// project stays hidden and half deleted until the next start finishes it.
pub fn spawn_project_deletion(store: Store, project_id: i64) {
    if !DELETING.lock().unwrap_or_else(|e| e.into_inner()).insert(project_id) {
        return; // this server is deleting it already
    }
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match retention::delete_project(&store, project_id, |_| ControlFlow::Continue(())) {
            Ok(deleted) => tracing::info!(project_id, seconds = started.elapsed().as_secs_f64(), "deleted project: {deleted}"),
            Err(picket_store::StoreError::WriterGone) => tracing::info!(project_id, "stopping: the project's deletion goes on at the next start"),
            Err(e) => tracing::error!(project_id, error = %e, "deleting the project failed; it is tried again within the hour"),
        }
        DELETING.lock().unwrap_or_else(|e| e.into_inner()).remove(&project_id);
    });
}

/// The projects this server is deleting now.
static DELETING: std::sync::Mutex<std::collections::BTreeSet<i64>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Finishes the deletions a stop (of this server, or of a `picket project
/// remove`) interrupted: at start, and hourly.
pub async fn resume_project_deletions(store: &Store) {
    match store.read_async(picket_store::accounts::projects_being_deleted).await {
        Ok(ids) => {
            for id in ids {
                if !DELETING.lock().unwrap_or_else(|e| e.into_inner()).contains(&id) {
                    tracing::info!(project_id = id, "resuming the deletion of a project");
                    spawn_project_deletion(store.clone(), id);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the projects being deleted; their deletion is tried again within the hour"),
    }
}
