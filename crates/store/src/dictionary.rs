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
//! 1. A project without one has its first [`TRAIN_SAMPLES`] events' JSON
//!    kept in memory as samples (its events are compressed without a
//!    dictionary meanwhile).
//! 2. The digest takes the full sample set ([`Dictionaries::take_samples`]),
//!    trains a dictionary off the digest thread ([`train`]), stores it
//!    ([`insert`]) and only after that commit installs it
//!    ([`Dictionaries::install`]): no event refers to a dictionary that is
//!    not in the database.
//! 3. Each zstd frame names its dictionary (the dictionary id in the frame
//!    header), so [`decompress`] finds it for any blob, old or new; blobs
//!    without one decompress as before.
//!
//! Dictionaries are never deleted: they are small, and an id is the hash of
//! the dictionary's content (zstd's own choice), so two projects that trained
//! the same dictionary share one row.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Result, StoreError};

/// Events sampled before a project's dictionary is trained.
pub const TRAIN_SAMPLES: usize = 1000;
/// A sample longer than this is cut: the start of an event holds its shape.
const MAX_SAMPLE_BYTES: usize = 8 << 10;
/// Sample bytes held for all projects together; past it, projects sample
/// more slowly (those that finish free their share).
const SAMPLE_BUDGET: usize = 64 << 20;
/// Dictionary size. 16 KiB did as well as 64 and 110 KiB on the benchmark
/// events, and a small dictionary is quick to load and to copy per frame.
const DICTIONARY_BYTES: usize = 16 << 10;
/// The compression level of stored blobs (see [`crate::compress`]).
const LEVEL: i32 = 1;
/// Decompressors with a dictionary loaded, kept per thread.
const MAX_CACHED_DECOMPRESSORS: usize = 32;

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
    /// Each project's newest dictionary from the database.
    pub fn load(conn: &Connection) -> Result<Dictionaries> {
        let mut st = conn.prepare(
            "SELECT d.project_id, d.id, d.data FROM zstd_dictionaries d
             WHERE d.created_at = (SELECT MAX(created_at) FROM zstd_dictionaries WHERE project_id = d.project_id)",
        )?;
        let mut projects = HashMap::new();
        for row in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?)))? {
            let (project_id, id, data) = row?;
            projects.insert(project_id, ProjectState::Ready(Arc::new(Dictionary { id: id as u32, data })));
        }
        Ok(Dictionaries { state: Mutex::new(State { projects, ..State::default() }) })
    }

    /// Compresses an event's JSON for storage: with the project's dictionary
    /// when it has one; otherwise without, keeping the JSON as a sample.
    pub fn compress_event(&self, project_id: i64, json: &[u8]) -> Vec<u8> {
        let dictionary = {
            let mut state = self.state.lock().expect("dictionaries lock");
            let State { projects, sampled_bytes, budget } = &mut *state;
            match projects.entry(project_id).or_insert_with(|| ProjectState::Sampling(Vec::new())) {
                ProjectState::Ready(d) => Some(d.clone()),
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
        match dictionary {
            Some(d) => compress_with(&d, json),
            None => crate::compress(json),
        }
    }

    /// A project whose samples are complete, with its samples; the project
    /// waits for [`Dictionaries::install`] or [`Dictionaries::training_failed`].
    pub fn take_samples(&self) -> Option<(i64, Vec<Vec<u8>>)> {
        let mut state = self.state.lock().expect("dictionaries lock");
        let (&project_id, project) = state.projects.iter_mut().find(|(_, s)| matches!(s, ProjectState::Sampling(v) if v.len() >= TRAIN_SAMPLES))?;
        let ProjectState::Sampling(samples) = std::mem::replace(project, ProjectState::Training) else { unreachable!("matched as sampling") };
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
    pub fn current(&self, project_id: i64) -> Option<u32> {
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

/// Stores a dictionary for a project. Fails if a different dictionary
/// already has its id (a hash collision: the caller then does without); the
/// same dictionary trained by another project is shared.
pub fn insert(conn: &Connection, project_id: i64, id: u32, data: &[u8]) -> Result<()> {
    let existing: Option<Vec<u8>> = conn.query_row("SELECT data FROM zstd_dictionaries WHERE id = ?", [id as i64], |r| r.get(0)).optional()?;
    match existing {
        Some(other) if other != data => Err(StoreError::Invalid(format!("zstd dictionary id {id} is taken by a different dictionary"))),
        Some(_) => Ok(()),
        None => {
            conn.execute("INSERT INTO zstd_dictionaries (id, project_id, created_at, data) VALUES (?, ?, ?, ?)", params![id as i64, project_id, crate::now(), data])?;
            Ok(())
        }
    }
}

thread_local! {
    /// Compressors with a dictionary loaded, by dictionary id. Loading a
    /// dictionary costs more than compressing an event with it.
    static COMPRESSORS: RefCell<HashMap<u32, zstd::bulk::Compressor<'static>>> = RefCell::new(HashMap::new());
    /// Decompressors with a dictionary loaded, by database file and id.
    static DECOMPRESSORS: RefCell<HashMap<(String, u32), zstd::bulk::Decompressor<'static>>> = RefCell::new(HashMap::new());
}

fn compress_with(d: &Dictionary, json: &[u8]) -> Vec<u8> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.contains_key(&d.id) && c.len() >= MAX_CACHED_DECOMPRESSORS {
            c.clear();
        }
        let compressor = c.entry(d.id).or_insert_with(|| zstd::bulk::Compressor::with_dictionary(LEVEL, &d.data).expect("zstd compressor with a trained dictionary"));
        compressor.compress(json).expect("zstd compression of an in-memory buffer")
    })
}

/// Decompresses a stored event blob, with the dictionary its frame names.
pub fn decompress(conn: &Connection, blob: &[u8]) -> Result<Vec<u8>> {
    let Some(id) = zstd::zstd_safe::get_dict_id_from_frame(blob) else {
        return crate::decompress(blob);
    };
    let id = id.get();
    let size = zstd::zstd_safe::get_frame_content_size(blob)
        .ok()
        .flatten()
        .ok_or_else(|| StoreError::Invalid("corrupt stored blob: no content size".into()))?;
    let key = (conn.path().unwrap_or_default().to_string(), id);
    DECOMPRESSORS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(&key) {
            let data: Vec<u8> = conn
                .query_row("SELECT data FROM zstd_dictionaries WHERE id = ?", [id as i64], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::Invalid(format!("corrupt stored blob: zstd dictionary {id} is missing from the database")))?;
            let decompressor = zstd::bulk::Decompressor::with_dictionary(&data).map_err(|e| StoreError::Invalid(format!("zstd dictionary {id} is unusable: {e}")))?;
            if cache.len() >= MAX_CACHED_DECOMPRESSORS {
                cache.clear();
            }
            cache.insert(key.clone(), decompressor);
        }
        let decompressor = cache.get_mut(&key).expect("inserted above");
        decompressor.decompress(blob, size as usize).map_err(|e| StoreError::Invalid(format!("corrupt stored blob: {e}")))
    })
}

/// Trains a dictionary on a project's samples, stores it and installs it
/// (blocking, and CPU-heavy: run it off the async runtime and the digest
/// thread). On failure the project samples again.
pub fn train_and_install(store: &crate::Store, project_id: i64, samples: Vec<Vec<u8>>) -> Result<u32> {
    let stored = train(&samples).and_then(|(id, data)| {
        let copy = data.clone();
        store.write_blocking(move |c| insert(c, project_id, id, &copy))?;
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
        let failed = train(&samples[..1]).unwrap_err().to_string();
        assert!(failed.contains("training a zstd dictionary failed"), "too little to learn from: {failed}");
        dicts.training_failed(1);
        dicts.compress_event(1, b"{}");
        assert_eq!(dicts.state.lock().unwrap().sampled_bytes, 2, "after a failure it samples again");
    }
}
