//! The durable queue between ingest and digest. Ingest answers 200 only after
//! the row is committed; digest deletes rows in the same transaction that
//! stores their results, so every acknowledged envelope is processed exactly
//! once, whatever crashes in between.

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Facts about the request, kept with the queued body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueueMeta {
    /// The client's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// `sentry_client` from the auth information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_client: Option<String>,
}

/// One queued envelope (decompressed, as our own envelope bytes).
#[derive(Debug, Clone)]
pub struct QueuedEnvelope {
    pub project_id: i64,
    pub received: f64,
    pub meta: QueueMeta,
    pub body: Vec<u8>,
    /// The body exactly as it came over the wire, when it is `body` gzipped
    /// (what the SDKs send): stored as it is instead of compressing `body`
    /// again, which costs ingest nothing.
    pub gzipped: Option<Vec<u8>>,
}

/// A row taken from the queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: i64,
    pub envelope: QueuedEnvelope,
}

/// How a queued body is stored (the `encoding` column).
const ZSTD: &str = "zstd";
const GZIP: &str = "gzip";

/// An envelope ready to be written: compressed and serialized by the caller,
/// so that the single writer thread does nothing but SQL.
#[derive(Debug, Clone)]
pub struct PreparedEnvelope {
    project_id: i64,
    received: f64,
    meta: String,
    encoding: &'static str,
    blob: Vec<u8>,
}

impl QueuedEnvelope {
    /// Compresses the body (unless it came gzipped) and serializes the
    /// metadata: CPU work, off the writer.
    pub fn prepare(&mut self) -> PreparedEnvelope {
        let (encoding, blob) = match self.gzipped.take() {
            Some(wire) => (GZIP, wire),
            None => (ZSTD, crate::compress(&self.body)),
        };
        PreparedEnvelope {
            project_id: self.project_id,
            received: self.received,
            meta: serde_json::to_string(&self.meta).unwrap_or_else(|_| "{}".into()),
            encoding,
            blob,
        }
    }
}

/// Hands out queue row ids, which only grow for the life of the process,
/// also when the queue empties. SQLite alone would reuse the ids of deleted
/// rows after the queue empties, and a reused id could match a body the
/// digest takes from memory (`fresh` in the server) that belongs to an
/// earlier row. `AUTOINCREMENT` prevents that too, but rewrites its
/// `sqlite_sequence` page in every commit.
#[derive(Debug, Default)]
pub(crate) struct QueueIds {
    last: AtomicI64,
}

/// Appends envelopes to the queue; returns their row ids, in order.
/// Called on the writer thread, so ids are handed out one job at a time.
pub(crate) fn enqueue(conn: &Connection, ids: &QueueIds, items: &[PreparedEnvelope]) -> Result<Vec<i64>> {
    // Above every row present, also those of an older process (the counter
    // starts at 0) or of another one.
    let present: i64 = conn.prepare_cached("SELECT ifnull(max(id), 0) FROM queue")?.query_row([], |r| r.get(0))?;
    let mut next = ids.last.load(Ordering::Relaxed).max(present);
    let mut st = conn.prepare_cached("INSERT INTO queue (id, project_id, received, meta, encoding, body) VALUES (?, ?, ?, ?, ?, ?)")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        next += 1;
        st.execute(params![next, item.project_id, item.received, item.meta, item.encoding, item.blob])?;
        out.push(next);
    }
    // Also when the transaction rolls back: ids are never handed out twice.
    ids.last.store(next, Ordering::Relaxed);
    Ok(out)
}

/// Most decompressed bytes in one batch: large events make smaller batches,
/// so memory stays bounded whatever their size (at least one row is returned).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The oldest rows with an id above `after`, at most `limit` of them and about
/// [`MAX_BATCH_BYTES`] (rows stay in the queue until digested).
///
/// `in_memory` may give a row's decoded body (ingest keeps recent ones), so
/// that the stored copy need not be decompressed.
pub fn fetch(conn: &Connection, after: i64, limit: usize, in_memory: &mut dyn FnMut(i64) -> Option<Vec<u8>>) -> Result<Vec<QueueRow>> {
    let mut st = conn.prepare_cached("SELECT id, project_id, received, meta, encoding, body FROM queue WHERE id > ? ORDER BY id LIMIT ?")?;
    let mut rows = st.query(params![after, limit as i64])?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        if bytes >= MAX_BATCH_BYTES {
            break;
        }
        let id: i64 = r.get(0)?;
        let body = match in_memory(id) {
            Some(body) => body,
            None => {
                let encoding: String = r.get(4)?;
                let blob = r.get_ref(5)?.as_blob().map_err(rusqlite::Error::from)?;
                // Ingest decoded the same bytes within its envelope limit.
                let decoded = match encoding.as_str() {
                    GZIP => picket_protocol::decompress::gunzip(blob, picket_protocol::limits::MAX_ENVELOPE_SIZE)
                        .map_err(|e| crate::StoreError::Invalid(format!("corrupt queued body: {e}"))),
                    _ => crate::decompress(blob),
                };
                // A row that cannot be decoded never will be: failing the batch
                // would stop the digest for good. It goes through as an empty
                // body, which the digest counts as an invalid envelope.
                decoded.unwrap_or_else(|e| {
                    tracing::error!(queue_id = id, encoding, error = %e, "a queued body cannot be decoded; it is counted as an invalid envelope and dropped");
                    Vec::new()
                })
            }
        };
        bytes += body.len();
        let meta: String = r.get(3)?;
        let envelope = QueuedEnvelope { project_id: r.get(1)?, received: r.get(2)?, meta: serde_json::from_str(&meta).unwrap_or_default(), body, gzipped: None };
        out.push(QueueRow { id, envelope });
    }
    Ok(out)
}

/// Number of rows waiting.
pub fn len(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?)
}

/// Removes digested rows: every row from `first` to `last`. A batch is all
/// the rows in such a range ([`fetch`] reads ids in order, and new rows get
/// higher ids), so one statement does it.
pub fn delete_range(conn: &Connection, first: i64, last: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM queue WHERE id BETWEEN ? AND ?")?.execute([first, last])?;
    Ok(())
}
