//! The digest worker: takes queued envelopes in batches, processes them (CPU
//! work, off the async threads), and stores each batch in one transaction that
//! also deletes its queue rows.

use std::sync::atomic::Ordering;
use std::time::Duration;

use picket_core::process::{process_envelope, Origin};
use picket_store::queue;

use crate::AppState;

/// Runs until `shutdown` resolves; finishes the batch in hand first.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut after = 0i64;
    loop {
        if *shutdown.borrow() {
            break;
        }
        match digest_batch(&state, after).await {
            Ok(Some(last)) => {
                after = last;
                continue;
            }
            Ok(None) => {
                // Nothing waiting: sleep until something is queued (or a
                // while, to pick up rows queued by another process).
                after = 0;
                tokio::select! {
                    _ = state.queued.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "digest batch failed; retrying in 1s");
                after = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Digests one batch; returns the last queue id handled, or `None` when the queue was empty.
pub async fn digest_batch(state: &AppState, after: i64) -> picket_store::Result<Option<i64>> {
    let limit = state.settings.digest_batch;
    let rows = state.store.read_async(move |c| queue::fetch(c, after, limit)).await?;
    let Some(last) = rows.last().map(|r| r.id) else { return Ok(None) };
    let n = rows.len();
    let started = std::time::Instant::now();
    let prepared = tokio::task::spawn_blocking(move || {
        let processed = rows
            .iter()
            .map(|row| {
                let origin = Origin {
                    queue_id: row.id,
                    project_id: row.envelope.project_id,
                    received: row.envelope.received,
                    client_ip: row.envelope.meta.client_ip.clone(),
                    sdk_client: row.envelope.meta.sdk_client.clone(),
                };
                process_envelope(&origin, &row.envelope.body)
            })
            .collect::<Vec<_>>();
        picket_store::digest::prepare(processed)
    })
    .await
    .map_err(|e| picket_store::StoreError::Invalid(format!("digest task failed: {e}")))?;
    let outcomes = state.store.write(move |c| picket_store::digest::apply(c, &prepared)).await?;
    state.queue_len.fetch_sub(n as i64, Ordering::Relaxed);
    let new_issues = outcomes.iter().filter(|o| o.is_new).count();
    let regressions = outcomes.iter().filter(|o| o.is_regression).count();
    tracing::debug!(envelopes = n, events = outcomes.len(), new_issues, regressions, elapsed_ms = started.elapsed().as_millis() as u64, "digested batch");
    Ok(Some(last))
}
