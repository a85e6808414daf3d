//! The durable queue between ingest and digest. Ingest answers 200 only after
//! the row is committed; digest deletes rows in the same transaction that
//! stores their results, so every acknowledged envelope is processed exactly
//! once, whatever crashes in between.

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
}

/// A row taken from the queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: i64,
    pub envelope: QueuedEnvelope,
}

/// An envelope ready to be written: compressed and serialized by the caller,
/// so that the single writer thread does nothing but SQL.
#[derive(Debug, Clone)]
pub struct PreparedEnvelope {
    project_id: i64,
    received: f64,
    meta: String,
    blob: Vec<u8>,
}

impl QueuedEnvelope {
    /// Compresses the body and serializes the metadata (CPU work, off the writer).
    pub fn prepare(&self) -> PreparedEnvelope {
        PreparedEnvelope {
            project_id: self.project_id,
            received: self.received,
            meta: serde_json::to_string(&self.meta).unwrap_or_else(|_| "{}".into()),
            blob: crate::compress(&self.body),
        }
    }
}

/// Appends envelopes to the queue.
pub fn enqueue(conn: &Connection, items: &[PreparedEnvelope]) -> Result<()> {
    let mut st = conn.prepare_cached("INSERT INTO queue (project_id, received, meta, body) VALUES (?, ?, ?, ?)")?;
    for item in items {
        st.execute(params![item.project_id, item.received, item.meta, item.blob])?;
    }
    Ok(())
}

/// Most decompressed bytes in one batch: large events make smaller batches,
/// so memory stays bounded whatever their size (at least one row is returned).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// The oldest rows with an id above `after`, at most `limit` of them and about
/// [`MAX_BATCH_BYTES`] (rows stay in the queue until digested).
pub fn fetch(conn: &Connection, after: i64, limit: usize) -> Result<Vec<QueueRow>> {
    let mut st = conn.prepare_cached("SELECT id, project_id, received, meta, body FROM queue WHERE id > ? ORDER BY id LIMIT ?")?;
    let rows = st.query_map(params![after, limit as i64], |r| {
        let meta: String = r.get(3)?;
        let body: Vec<u8> = r.get(4)?;
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?, meta, body))
    })?;
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in rows {
        if bytes >= MAX_BATCH_BYTES {
            break;
        }
        let (id, project_id, received, meta, body) = row?;
        let body = crate::decompress(&body)?;
        bytes += body.len();
        out.push(QueueRow { id, envelope: QueuedEnvelope { project_id, received, meta: serde_json::from_str(&meta).unwrap_or_default(), body } });
    }
    Ok(out)
}

/// Number of rows waiting.
pub fn len(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?)
}

/// Removes digested rows.
pub fn delete(conn: &Connection, ids: &[i64]) -> Result<()> {
    let mut st = conn.prepare_cached("DELETE FROM queue WHERE id = ?")?;
    for id in ids {
        st.execute([id])?;
    }
    Ok(())
}
