//! Storage for Picket: accounts, the durable ingest queue, events, issues and
//! their counters. The back end is SQLite in WAL mode: one writer thread that
//! commits jobs in groups (one transaction, one savepoint per job, so a failing
//! job rolls back alone) and a small pool of reader connections.
//!
//! Every write goes through [`Store::write`]; every read through [`Store::read`].
//! The domain operations live in the modules below and are plain functions of
//! a connection, so that a PostgreSQL back end can later provide the same
//! operations behind one trait (see `docs/scaling.md`).
//!
//! - [`schema`]: the migrations.
//! - [`accounts`]: users, organizations, projects, keys, API tokens.
//! - [`queue`]: the durable queue between ingest and digest.
//! - [`digest`]: applying a processed batch (events, issues, counters) atomically.
//! - [`dictionary`]: per-project zstd dictionaries for stored events.
//! - [`tags`]: tag-value counts per issue, kept back across batches under load.
//! - [`query`]: reads for the API (issues with search, events, tags).
//! - [`retention`]: deleting what is older than the retention period.
//! - [`plugins`]: plugin options and enablement, issue meta, views, and the
//!   post-process queue.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::Connection;

pub mod accounts;
pub mod dictionary;
pub mod digest;
pub mod plugins;
pub mod query;
pub mod queue;
pub mod retention;
pub mod schema;
pub mod tags;


/// A storage error. The message says what failed and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0} not found")]
    NotFound(String),
    /// Not found, with what to do about it.
    #[error("{what} not found; {fix}")]
    Missing { what: String, fix: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("the database writer has stopped; restart picket")]
    WriterGone,
    #[error("cannot open database '{path}': {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard the database syncs to disk on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Survives a process crash and a power loss (fsync on every group commit).
    #[default]
    Full,
    /// Survives a process crash; a power loss may lose the last commits.
    Normal,
}

type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// A write job: run in the writer's transaction (`Some`), or told that the
/// transaction could not begin (`None`); returns what to do after the commit.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// The handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dictionaries: Arc<dictionary::Dictionaries>,
    queue_ids: Arc<queue::QueueIds>,
}

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 512;
const MAX_IDLE_READERS: usize = 4;
/// The WAL size (bytes) after which a commit checkpoints it. SQLite counts
/// 1,000 pages, whatever their size: 16 MiB with the 16 KiB pages of older
/// databases, but 8 MiB with the 8 KiB pages of new ones. Each checkpoint
/// rewrites the pages that every commit touches (the queue's, the events
/// table's last) and holds up the ingest commits queued behind it: with
/// 4 KiB pages, 1,000-page checkpoints wrote 4.2 GB for 200,000 events,
/// 16 MiB ones 3.4 GB.
const WAL_CHECKPOINT_BYTES: i64 = 16 << 20;
/// Page cache of the writer (KiB): it touches the hot indexes of every batch.
const WRITER_CACHE_KIB: i64 = 16_000;
/// Page cache of each reader (KiB): API reads are small and many readers add up.
const READER_CACHE_KIB: i64 = 8_000;

/// A handle that does not keep the database open (for callbacks that may
/// outlive the server: the database closes when the last [`Store`] goes).
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    /// The store, if it is still open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl Store {
    /// A handle that does not keep the database open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Invalid(format!("cannot create data directory '{}': {e}", dir.display())))?;
            }
        }
        let mut conn = open_connection(path)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // The digest alone uses about 25 statement texts (rusqlite keeps 16 by default).
        conn.set_prepared_statement_cache_capacity(64);
        conn.pragma_update(None, "synchronous", match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        })?;
        schema::migrate(&mut conn)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_BYTES / page_size.max(512))?;
        let dictionaries = Arc::new(dictionary::Dictionaries::load(&conn)?);
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("picket-db-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Invalid(format!("cannot start the database writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                jobs: Mutex::new(Some(tx)),
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(handle)),
                dictionaries,
                queue_ids: Arc::default(),
            }),
        })
    }

    /// Appends envelopes to the queue; resolves to their row ids, in order,
    /// once they are committed.
    pub fn enqueue(&self, items: Vec<queue::PreparedEnvelope>) -> impl std::future::Future<Output = Result<Vec<i64>>> + Send + 'static {
        let ids = self.inner.queue_ids.clone();
        self.write(move |c| queue::enqueue(c, &ids, &items))
    }

    /// The zstd dictionaries new events are compressed with.
    pub fn dictionaries(&self) -> &Arc<dictionary::Dictionaries> {
        &self.inner.dictionaries
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's transaction; resolves after the commit.
    pub fn write<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(StoreError::Invalid("the write transaction could not begin; see the server log".into())),
            };
            Box::new(move |commit: Result<()>| {
                let _ = tx.send(commit.and(outcome));
            })
        });
        let sent = self.inner.jobs.lock().expect("jobs lock").as_ref().map(|s| s.send(job).is_ok()).unwrap_or(false);
        async move {
            if !sent {
                return Err(StoreError::WriterGone);
            }
            rx.await.unwrap_or(Err(StoreError::WriterGone))
        }
    }

    /// [`Store::write`] for code outside an async runtime (the CLI).
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let fut = self.write(f);
        block_on(fut)
    }

    /// Runs `f` on a reader connection (blocking; call from `spawn_blocking` in async code).
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.inner.readers.lock().expect("readers lock").pop() {
            Some(c) => c,
            None => {
                let c = open_connection(&self.inner.path)?;
                c.pragma_update(None, "query_only", true)?;
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c
            }
        };
        let result = f(&conn);
        let mut readers = self.inner.readers.lock().expect("readers lock");
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Runs `f` on a reader connection from async code.
    pub async fn read_async<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read(f)).await.unwrap_or_else(|e| Err(StoreError::Invalid(format!("read task failed: {e}"))))
    }

    /// Stops the writer after the jobs already sent, and waits for it.
    pub fn close(&self) {
        self.inner.jobs.lock().expect("jobs lock").take();
        if let Some(h) = self.inner.writer.lock().expect("writer lock").take() {
            let _ = h.join();
        }
    }
}

fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// The writer: takes every job that is waiting (up to [`MAX_GROUP`]), runs them
/// in one transaction, commits once, then tells each job how the commit went.
fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Nothing ran; tell every caller why (e.g. the disk is full or the
            // database is locked by another program for too long).
            tracing::error!(error = %e, jobs = jobs.len(), "cannot begin a write transaction");
            for job in jobs {
                job(None)(Err(StoreError::Invalid(format!("cannot begin a write transaction: {e}"))));
            }
            continue;
        }
        let completions: Vec<Completion> = jobs.into_iter().map(|job| job(Some(&conn))).collect();
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for c in completions {
            c(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Invalid(format!("commit failed: {e}"))),
            });
        }
    }
}

/// Statement journals stay in memory, whatever their size (-1). Every write
/// job runs in a savepoint, and SQLite first copies each page the savepoint
/// modifies into a statement journal, which spills to a temporary file past
/// 64 KiB by default: about 50 KB of write() per stored event. Until session
/// 12 this was 16 MiB, and a job whose journal outgrew it failed with
/// "database or disk is full" on every retry, on a disk with room to spare
/// (seen with SQLite 3.50.2; where SQLite's spill goes wrong was not pinned
/// down): a tag-count write kept back with tens of thousands of issues
/// stopped the digest for good (test: `a_write_job_larger_than_...`). In memory, a large job (deleting a
/// large issue) takes memory for the pages it changes, and gives it back
/// at its end; the writer's instructions per event rose 1.4%.
const STATEMENT_JOURNAL_IN_MEMORY: std::os::raw::c_int = -1;

/// Process-wide SQLite settings, once, before SQLite's first use:
/// - statement journals in memory ([`STATEMENT_JOURNAL_IN_MEMORY`]);
/// - no allocation statistics: with them on, every `sqlite3_malloc` and
///   `free` (about 200 per stored event) takes a global mutex to keep counts
///   that Picket never reads.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rusqlite::ffi;
        // SAFETY: sqlite3_config is only valid before sqlite3_initialize;
        // this runs before the first connection opens (it answers
        // SQLITE_MISUSE, harmlessly, if someone else initialized SQLite).
        // Both options take one int.
        let settings = [(ffi::SQLITE_CONFIG_STMTJRNL_SPILL, STATEMENT_JOURNAL_IN_MEMORY, "statement journal spill size"), (ffi::SQLITE_CONFIG_MEMSTATUS, 0, "allocation statistics")];
        for (option, value, what) in settings {
            let rc = unsafe { ffi::sqlite3_config(option, value) };
            if rc != ffi::SQLITE_OK {
                tracing::debug!(rc, setting = what, "SQLite was initialized already; this setting keeps its default");
            }
        }
    });
}

fn open_connection(path: &Path) -> Result<Connection> {
    configure_sqlite();
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Minimal executor for the CLI: the writer resolves the future from another thread.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

thread_local! {
    /// zstd contexts are costly to create (they were 8% of the hot path):
    /// one of each per thread, reused.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// What `picket check` reports of a database, read without changing it.
#[derive(Debug, Clone)]
pub struct DatabaseReport {
    /// The schema version of the file, and the one this build migrates to.
    pub schema_version: (usize, usize),
    /// `ok`, or what SQLite's quick check found.
    pub integrity: String,
    /// Users and queued envelopes; `None` while the schema is older than this build's.
    pub users: Option<i64>,
    pub queued: Option<i64>,
    /// Projects whose deletion was started and not finished.
    pub being_deleted: Option<usize>,
}

/// Reads a database file without creating, migrating or writing it (as
/// [`Store::open`] would): for checking what is there.
pub fn inspect(path: &Path) -> Result<DatabaseReport> {
    use rusqlite::OpenFlags;
    if !path.exists() {
        return Err(StoreError::Invalid(format!("no database at '{}'", path.display())));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    let schema_version = schema::versions(&conn)?;
    let integrity: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    let current = schema_version.0 == schema_version.1;
    let users = if current { Some(accounts::count_users(&conn)?) } else { None };
    let queued = if current { Some(queue::len(&conn)?) } else { None };
    let being_deleted = if current { Some(accounts::projects_being_deleted(&conn)?.len()) } else { None };
    Ok(DatabaseReport { schema_version, integrity, users, queued, being_deleted })
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Bytes of the backup file.
    pub bytes: u64,
    /// `PRAGMA quick_check` of the backup: `ok`, or what is wrong.
    pub check: String,
}

/// Writes a consistent, compacted copy of the database at `path` to `to`
/// (`VACUUM INTO`), beside a serving Picket: it reads one snapshot and does
/// not hold up the writer. `to` must not exist. The copy is then checked;
/// one that fails the check (or the copy) is removed.
pub fn backup(path: &Path, to: &Path) -> Result<BackupReport> {
    if to.exists() {
        return Err(StoreError::Invalid(format!("'{}' exists already: give a new file (a backup never overwrites)", to.display())));
    }
    if !path.exists() {
        return Err(StoreError::Invalid(format!("no database at '{}': check data_dir or database_url", path.display())));
    }
    // Read-write, though it only reads: a read-only connection cannot open a
    // WAL database whose shared-memory file is not there yet.
    let conn = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = to.to_str().ok_or_else(|| StoreError::Invalid(format!("'{}' is not a UTF-8 path", to.display())))?;
    let written = conn.execute("VACUUM INTO ?", [target]).map_err(StoreError::from).and_then(|_| {
        let copy = Connection::open_with_flags(to, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| StoreError::Open { path: to.to_path_buf(), source })?;
        let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        Ok(check)
    });
    match written {
        Ok(check) if check == "ok" => Ok(BackupReport { bytes: std::fs::metadata(to).map(|m| m.len()).unwrap_or(0), check }),
        // A copy that is not whole must not pass for a backup, nor stop the next try.
        Ok(check) => {
            let _ = std::fs::remove_file(to);
            Ok(BackupReport { bytes: 0, check })
        }
        Err(e) => {
            let _ = std::fs::remove_file(to);
            Err(e)
        }
    }
}

/// Compresses stored blobs (events, queued envelopes) with zstd level 1:
/// level 3 costs ~15% more CPU for a few percent of disk.
pub fn compress(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let compressor = c.get_or_insert_with(|| zstd::bulk::Compressor::new(1).expect("zstd compressor"));
        compressor.compress(data).expect("zstd compression of an in-memory buffer")
    })
}

/// The decompressed size a stored blob's zstd frame declares (every blob
/// Picket writes has one).
fn content_size(data: &[u8]) -> Result<usize> {
    zstd::zstd_safe::get_frame_content_size(data)
        .ok()
        .flatten()
        .map(|size| size as usize)
        .ok_or_else(|| StoreError::Invalid("corrupt stored blob: no content size".into()))
}

/// Decompresses a stored blob.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let size = content_size(data)?;
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let decompressor = d.get_or_insert_with(|| zstd::bulk::Decompressor::new().expect("zstd decompressor"));
        decompressor.decompress(data, size).map_err(|e| StoreError::Invalid(format!("corrupt stored blob: {e}")))
    })
}

/// Current time as Unix seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
