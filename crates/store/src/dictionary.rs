//! Per-project zstd dictionaries for stored events.
//!
//! Events of one project share most of their shape: key names, SDK and
//! context blocks, frames of the same stack traces. Compressed one by one,
//! each event pays for all of it again, and zstd builds fresh entropy tables
//! for every few kilobytes. A dictionary trained on the project's own events
//! holds the shared parts once: on the benchmark's 5 KB events, blobs are
//! about a quarter of the size and compress about 2.5 times faster.
//!
//! The life of a dictionary:
//! 1. A project without one has the JSON of its next [`TRAIN_SAMPLES`]
//!    events kept in memory as samples (its events are compressed without a
//!    dictionary meanwhile, and while training runs). Samples are not
//!    persisted: a restart starts sampling again.
//! 2. The digest takes the full sample set ([`Dictionaries::take_samples`]),
//!    trains a dictionary off the digest thread ([`train`]), stores it
//!    ([`insert`]) and only after that commit installs it
//!    ([`Dictionaries::install`]): no event refers to a dictionary that is
//!    not in the database.
//! 3. Each zstd frame names its dictionary (the dictionary id in the frame
//!    header), so [`decompress`] finds it for any blob, old or new; blobs
//!    without one decompress as before.
//!
//! Dictionaries are never deleted: they are small. zstd chooses the id, a
//! hash of the dictionary's content section; two projects may get the same
//! id, for the same or (with nearly identical events) a slightly different
//! dictionary. The first one stored keeps the id and both projects use it
//! (`project_dictionaries` says which project compresses with which).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, StoreError};

/// Events sampled before a project's dictionary is trained.
pub const TRAIN_SAMPLES: usize = 1000;
/// A sample longer than this is cut: the start of an event holds its shape.
const MAX_SAMPLE_BYTES: usize = 8 << 10;
/// Sample bytes held for all projects together. Once full, the project
/// with the most samples trains on what it has (at least
/// [`MIN_TRAIN_SAMPLES`]), freeing its share for the others.
const SAMPLE_BUDGET: usize = 64 << 20;
/// The fewest samples a project trains on when the budget is full.
const MIN_TRAIN_SAMPLES: usize = 100;
/// Dictionary size. 16 KiB did as well as 64 and 110 KiB on the benchmark
/// events, and a small dictionary is quick to load and to copy per frame.
const DICTIONARY_BYTES: usize = 16 << 10;
/// Events whose JSON is longer than this are compressed without the
/// dictionary. The dictionary is trained on the start of events (see
/// [`MAX_SAMPLE_BYTES`]); a large event repeats itself enough for zstd to
/// learn within it, and matching against a dictionary costs more per byte
/// than matching within the event: on the benchmark's events, 16 KB ones
/// are 15% faster and 15% smaller with the dictionary, 24 KB ones 14%
/// slower and the same size, and 50 KB ones 24% slower and 3% smaller
/// (`BENCHMARKS.md`, session 11).
const MAX_DICTIONARY_EVENT_BYTES: usize = 20 << 10;
/// The compression level of stored blobs (see [`crate::compress`]).
const LEVEL: i32 = 1;
/// Compressors with a dictionary loaded, kept on the digest thread (one per
/// project compressing with a dictionary; beyond it, one is dropped).
const MAX_CACHED_COMPRESSORS: usize = 64;
/// Decompressors with a dictionary loaded, kept per reading thread.
const MAX_CACHED_DECOMPRESSORS: usize = 8;

/// A trained dictionary.
struct Dictionary {
    id: u32,
    data: Vec<u8>,
}

enum ProjectState {
    /// Gathering samples (the JSON of events as stored).
    Sampling(Vec<Vec<u8>>),
    /// Samples taken for training; events go on without a dictionary.
    Training,
    Ready(Arc<Dictionary>),
}

/// The dictionary each project compresses new events with, and the samples
/// of projects that have none yet. Shared by the digest thread, which
/// compresses, and the training task.
#[derive(Default)]
pub struct Dictionaries {
    state: Mutex<State>,
}

struct State {
    projects: HashMap<i64, ProjectState>,
    /// Sample bytes held by projects that are sampling.
    sampled_bytes: usize,
    /// [`SAMPLE_BUDGET`] (smaller in tests).
    budget: usize,
}

impl Default for State {
    fn default() -> State {
        State { projects: HashMap::new(), sampled_bytes: 0, budget: SAMPLE_BUDGET }
    }
}

impl Dictionaries {
    /// The dictionary each project compresses with, from the database. One
    /// that zstd cannot load (a damaged row) is skipped with a warning: the
    /// project then samples and trains a new one.
    pub fn load(conn: &Connection) -> Result<Dictionaries> {
        let mut st = conn.prepare("SELECT p.project_id, d.id, d.data FROM project_dictionaries p JOIN zstd_dictionaries d ON d.id = p.dictionary_id")?;
        let mut projects = HashMap::new();
        for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?)))? {
            let (project_id, id, data) = row?;
            let usable = zstd::zstd_safe::get_dict_id_from_dict(&data).map(|d| i64::from(d.get())) == Some(id) && zstd::bulk::Compressor::with_dictionary(LEVEL, &data).is_ok();
            if !usable {
                tracing::warn!(project_id, dictionary = id, "a stored zstd dictionary is unusable; the project will train a new one");
                continue;
            }
            projects.insert(project_id, ProjectState::Ready(Arc::new(Dictionary { id: id as u32, data })));
        }
        Ok(Dictionaries { state: Mutex::new(State { projects, ..State::default() }) })
    }

    /// Compresses an event's JSON for storage: with the project's dictionary
    /// when it has one (and the event is at most
    /// [`MAX_DICTIONARY_EVENT_BYTES`]); otherwise without, keeping the JSON
    /// as a sample while the project has no dictionary.
    pub fn compress_event(&self, project_id: i64, json: &[u8]) -> Vec<u8> {
        let dictionary = {
            let mut state = self.state.lock().expect("dictionaries lock");
            let State { projects, sampled_bytes, budget } = &mut *state;
            match projects.entry(project_id).or_insert_with(|| ProjectState::Sampling(Vec::new())) {
                ProjectState::Ready(d) => (json.len() <= MAX_DICTIONARY_EVENT_BYTES).then(|| d.clone()),
                ProjectState::Sampling(samples) => {
                    let len = json.len().min(MAX_SAMPLE_BYTES);
                    if samples.len() < TRAIN_SAMPLES && *sampled_bytes + len <= *budget {
                        samples.push(json[..len].to_vec());
                        *sampled_bytes += len;
                    }
                    None
                }
                ProjectState::Training => None,
            }
        };
        dictionary.and_then(|d| compress_with(&d, json)).unwrap_or_else(|| crate::compress(json))
    }

    /// A project whose samples are complete, with its samples; the project
    /// waits for [`Dictionaries::install`] or [`Dictionaries::training_failed`].
    /// When the sample budget is full, the project with the most samples
    /// counts as complete (if it has [`MIN_TRAIN_SAMPLES`]). `None` while
    /// another project trains.
    pub fn take_samples(&self) -> Option<(i64, Vec<Vec<u8>>)> {
        let mut state = self.state.lock().expect("dictionaries lock");
        // One training at a time: each keeps a core busy for a while, and
        // many projects may complete their samples at once after a restart.
        if state.projects.values().any(|s| matches!(s, ProjectState::Training)) {
            return None;
        }
        let budget_full = state.sampled_bytes + MAX_SAMPLE_BYTES > state.budget;
        let count = |s: &ProjectState| if let ProjectState::Sampling(v) = s { v.len() } else { 0 };
        let (&project_id, project) = match state.projects.iter_mut().find(|(_, s)| count(s) >= TRAIN_SAMPLES) {
            Some(found) => found,
            None if budget_full => state.projects.iter_mut().max_by_key(|(_, s)| count(s)).filter(|(_, s)| count(s) >= MIN_TRAIN_SAMPLES)?,
            None => return None,
        };
        let ProjectState::Sampling(samples) = std::mem::replace(project, ProjectState::Training) else { unreachable!("counted as sampling") };
        state.sampled_bytes -= samples.iter().map(Vec::len).sum::<usize>();
        Some((project_id, samples))
    }

    /// Compresses the project's new events with `data` (stored as `id`).
    pub fn install(&self, project_id: i64, id: u32, data: Vec<u8>) {
        self.state.lock().expect("dictionaries lock").set(project_id, ProjectState::Ready(Arc::new(Dictionary { id, data })));
    }

    /// Training did not give a dictionary: sample again from scratch.
    pub fn training_failed(&self, project_id: i64) {
        self.state.lock().expect("dictionaries lock").set(project_id, ProjectState::Sampling(Vec::new()));
    }

    /// The id of the dictionary the project compresses with, if any.
    #[cfg(test)]
    pub(crate) fn current(&self, project_id: i64) -> Option<u32> {
        match self.state.lock().expect("dictionaries lock").projects.get(&project_id) {
            Some(ProjectState::Ready(d)) => Some(d.id),
            _ => None,
        }
    }
}

impl State {
    fn set(&mut self, project_id: i64, new: ProjectState) {
        if let Some(ProjectState::Sampling(samples)) = self.projects.insert(project_id, new) {
            self.sampled_bytes -= samples.iter().map(Vec::len).sum::<usize>();
        }
    }
}

/// Trains a dictionary on samples (CPU-heavy: a few hundred milliseconds
/// for a thousand 5 KB events). Returns the dictionary and its id.
pub fn train(samples: &[Vec<u8>]) -> Result<(u32, Vec<u8>)> {
    let data = zstd::dict::from_samples(samples, DICTIONARY_BYTES).map_err(|e| StoreError::Invalid(format!("training a zstd dictionary failed: {e}")))?;
    let id = zstd::zstd_safe::get_dict_id_from_dict(&data).ok_or_else(|| StoreError::Invalid("the trained zstd dictionary has no id".into()))?;
    Ok((id.get(), data))
}

/// Stores a dictionary and makes it the project's. If a dictionary with the
/// same id is stored already (the same, or one trained on nearly identical
/// events: the id hashes only part of it), the project uses that one: frames
/// name dictionaries by id, so one id has one dictionary. Returns the
/// dictionary the project now compresses with.
pub fn insert(conn: &Connection, project_id: i64, id: u32, data: Vec<u8>) -> Result<Vec<u8>> {
    let existing: Option<Vec<u8>> = conn.query_row("SELECT data FROM zstd_dictionaries WHERE id = ?", [id as i64], |r| r.get(0)).optional()?;
    let data = match existing {
        Some(stored) => stored,
        None => {
            conn.execute("INSERT INTO zstd_dictionaries (id, created_at, data) VALUES (?, ?, ?)", params![id as i64, crate::now(), data])?;
            data
        }
    };
    // Not for a project deleted while its dictionary was trained: the
    // deletion has taken its row already and would not see a new one.
    conn.execute(
        "INSERT INTO project_dictionaries (project_id, dictionary_id, created_at)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM projects WHERE id = ?1 AND NOT deleting)
         ON CONFLICT (project_id) DO UPDATE SET dictionary_id = excluded.dictionary_id, created_at = excluded.created_at",
        params![project_id, id as i64, crate::now()],
    )?;
    Ok(data)
}

thread_local! {
    /// Compressors with a dictionary loaded, by dictionary id. Loading a
    /// dictionary costs more than compressing an event with it.
    static COMPRESSORS: RefCell<HashMap<u32, zstd::bulk::Compressor<'static>>> = RefCell::new(HashMap::new());
    /// Decompressors with a dictionary loaded, by database file and id.
    static DECOMPRESSORS: RefCell<HashMap<(String, u32), zstd::bulk::Decompressor<'static>>> = RefCell::new(HashMap::new());
}

/// `None` if zstd refuses the dictionary (the caller compresses without).
fn compress_with(d: &Dictionary, json: &[u8]) -> Option<Vec<u8>> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.contains_key(&d.id) {
            let compressor = zstd::bulk::Compressor::with_dictionary(LEVEL, &d.data).ok()?;
            make_room(&mut c, MAX_CACHED_COMPRESSORS);
            c.insert(d.id, compressor);
        }
        c.get_mut(&d.id)?.compress(json).ok()
    })
}

/// Drops one entry of a full cache (any: they cost the same to rebuild).
fn make_room<K: Clone + Eq + std::hash::Hash, V>(cache: &mut HashMap<K, V>, max: usize) {
    if cache.len() >= max {
        if let Some(k) = cache.keys().next().cloned() {
            cache.remove(&k);
        }
    }
}

/// Decompresses a stored event blob, with the dictionary its frame names.
pub fn decompress(conn: &Connection, blob: &[u8]) -> Result<Vec<u8>> {
    let Some(id) = zstd::zstd_safe::get_dict_id_from_frame(blob) else {
        return crate::decompress(blob);
    };
    let id = id.get();
    let size = crate::content_size(blob)?;
    let key = (conn.path().unwrap_or_default().to_string(), id);
    DECOMPRESSORS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(&key) {
            let data: Vec<u8> = conn
                .query_row("SELECT data FROM zstd_dictionaries WHERE id = ?", [id as i64], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::Invalid(format!("corrupt stored blob: zstd dictionary {id} is missing from the database (the zstd_dictionaries table was edited; restore it from a backup to read this event)")))?;
            let decompressor = zstd::bulk::Decompressor::with_dictionary(&data).map_err(|e| StoreError::Invalid(format!("zstd dictionary {id} is damaged ({e}); restore the zstd_dictionaries table from a backup to read this event")))?;
            make_room(&mut cache, MAX_CACHED_DECOMPRESSORS);
            cache.insert(key.clone(), decompressor);
        }
        let decompressor = cache.get_mut(&key).expect("inserted above");
        decompressor.decompress(blob, size).map_err(|e| StoreError::Invalid(format!("corrupt stored blob: {e}")))
    })
}

/// Trains a dictionary on a project's samples, stores it and installs it
/// (blocking, and CPU-heavy: run it off the async runtime and the digest
/// thread). On failure the project samples again.
pub fn train_and_install(store: &crate::Store, project_id: i64, samples: Vec<Vec<u8>>) -> Result<u32> {
    let stored = train(&samples).and_then(|(id, data)| {
        drop(samples);
        let data = store.write_blocking(move |c| insert(c, project_id, id, data))?;
        Ok((id, data))
    });
    match stored {
        Ok((id, data)) => {
            store.dictionaries().install(project_id, id, data);
            Ok(id)
        }
        Err(e) => {
            store.dictionaries().training_failed(project_id);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_stay_within_the_budget_and_are_freed_when_taken() {
        let dicts = Dictionaries::default();
        dicts.state.lock().unwrap().budget = 10 * MAX_SAMPLE_BYTES;
        let big = vec![b'x'; MAX_SAMPLE_BYTES * 3];
        for project in 0..20 {
            let blob = dicts.compress_event(project, &big);
            assert_eq!(crate::decompress(&blob).unwrap(), big, "compressed without a dictionary meanwhile");
        }
        let state = dicts.state.lock().unwrap();
        assert_eq!(state.sampled_bytes, 10 * MAX_SAMPLE_BYTES, "samples are cut to MAX_SAMPLE_BYTES and stop at the budget");
        let held: usize = state.projects.values().map(|s| if let ProjectState::Sampling(v) = s { v.len() } else { 0 }).sum();
        assert_eq!(held, 10);
        drop(state);
        // A project that completes its samples gives their bytes back.
        let dicts = Dictionaries::default();
        for _ in 0..TRAIN_SAMPLES + 5 {
            dicts.compress_event(1, b"{}");
        }
        let (project, samples) = dicts.take_samples().unwrap();
        assert_eq!((project, samples.len()), (1, TRAIN_SAMPLES));
        assert_eq!(dicts.state.lock().unwrap().sampled_bytes, 0);
        assert!(dicts.take_samples().is_none(), "a project trains once at a time");
        for _ in 0..TRAIN_SAMPLES {
            dicts.compress_event(2, b"{}");
        }
        assert!(dicts.take_samples().is_none(), "one training at a time, whichever the project");
        let failed = train(&samples[..1]).unwrap_err().to_string();
        assert!(failed.contains("training a zstd dictionary failed"), "too little to learn from: {failed}");
        dicts.training_failed(1);
        assert_eq!(dicts.take_samples().map(|(p, _)| p), Some(2), "the next project trains once the first is done");
        dicts.training_failed(2);
        dicts.compress_event(1, b"{}");
        assert_eq!(dicts.state.lock().unwrap().sampled_bytes, 2, "after a failure it samples again");
    }

    #[test]
    fn a_full_budget_trains_the_project_with_the_most_samples() {
        let dicts = Dictionaries::default();
        dicts.state.lock().unwrap().budget = 3 * MIN_TRAIN_SAMPLES * MAX_SAMPLE_BYTES;
        let event = vec![b'x'; MAX_SAMPLE_BYTES];
        // Three projects share the budget; none reaches TRAIN_SAMPLES.
        for n in 0..3 * MIN_TRAIN_SAMPLES + 10 {
            dicts.compress_event([1, 2, 2][n % 3], &event);
        }
        assert!(dicts.state.lock().unwrap().sampled_bytes + MAX_SAMPLE_BYTES > 3 * MIN_TRAIN_SAMPLES * MAX_SAMPLE_BYTES, "the budget is full");
        let (project, samples) = dicts.take_samples().expect("the fullest project trains on what it has");
        assert_eq!(project, 2);
        assert_eq!(samples.len(), 2 * MIN_TRAIN_SAMPLES);
        assert!(dicts.take_samples().is_none(), "the budget has room again");
        dicts.compress_event(1, &event);
        assert_eq!(dicts.state.lock().unwrap().sampled_bytes, (MIN_TRAIN_SAMPLES + 1) * MAX_SAMPLE_BYTES, "project 1 samples on");
    }
}
