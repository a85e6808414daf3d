//! The retention task of `picket serve`: a minute after start and then every
//! hour, deletes what is older than `retention_days` (see
//! `picket_store::retention`), a chunk at a time so that ingest goes on.

use std::ops::ControlFlow;
use std::time::Duration;

use picket_store::{retention, Store};
use tokio::sync::watch;

/// The first run waits this long, so that a start is not slowed by it.
const FIRST_RUN_AFTER: Duration = Duration::from_secs(60);
/// Between the end of one run and the start of the next.
const INTERVAL: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` turns true; `keep` `None` keeps everything.
pub async fn run(store: Store, keep: Option<Duration>, mut shutdown: watch::Receiver<bool>) {
    let Some(keep) = keep else { return };
    let mut wait = FIRST_RUN_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = INTERVAL;
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
