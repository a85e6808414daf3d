//! The plugin host: what the server does for the extension system.
//!
//! - [`PluginHost`] keeps each project's enabled plugins and options, cached
//!   for [`STATE_TTL`] (a change made through this process's API takes effect
//!   at once; one made by another process within the TTL).
//! - [`run_post_process`] runs every enabled plugin's `post_process` after an
//!   event is committed, off the ingest path. The digest writes a durable job
//!   row with each event (unless no plugin enabled in the project has the
//!   hook) and hands the event over in memory; the row is
//!   deleted once the plugins ran, and a scan of the queue takes up retries
//!   (exponential backoff, up to [`MAX_ATTEMPTS`] tries) and first runs the
//!   hand-off lost (a crash), so delivery is at least once.
//! - Hook failures are logged with the plugin's slug and recorded in the
//!   database, where `picket plugins list` and the API show them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picket_core::plugins::ProjectPlugins;
use picket_plugin_api::{Event, IssueRef, Member, OptionValues, PostProcessContext, ProjectRef, Registry, UserRef};
use picket_store::accounts::{self, Project};
use picket_store::plugins::{self as stored, PostProcessJob, Scope};
use picket_store::query::{self, Issue};
use picket_store::Store;
use rusqlite::Connection;

use crate::AppState;

/// How long a project's plugin state is cached.
pub const STATE_TTL: Duration = Duration::from_secs(2);
/// Tries of a failing `post_process` before it is given up (logged and recorded).
pub const MAX_ATTEMPTS: u32 = 5;

/// The registry and the per-project state of its plugins.
pub struct PluginHost {
    /// Everything registered in this binary.
    pub registry: &'static Registry,
    cache: Mutex<HashMap<i64, (Instant, Arc<ProjectPlugins>)>>,
}

impl PluginHost {
    /// A host for a registry; reports hook failures to the log and the database.
    pub fn new(registry: &'static Registry, store: Store) -> PluginHost {
        for problem in registry.problems() {
            tracing::error!(problem = %problem, "plugin registration refused");
        }
        // The observer is process-wide and outlives any one server: it writes to
        // the newest host's store, without keeping that store open.
        static FAILURE_SINK: Mutex<Option<picket_store::WeakStore>> = Mutex::new(None);
        *FAILURE_SINK.lock().expect("failure sink") = Some(store.downgrade());
        picket_plugin_api::registry::set_failure_observer(|f| {
            tracing::warn!(plugin = %f.slug, hook = f.hook, panicked = f.panicked, error = %f.message, "plugin hook failed; skipped");
            let Some(store) = FAILURE_SINK.lock().ok().and_then(|s| s.as_ref().and_then(picket_store::WeakStore::upgrade)) else { return };
            let (slug, hook, message) = (f.slug.clone(), f.hook, f.message.clone());
            // Sent to the writer now; nothing waits for it.
            drop(store.write(move |c| stored::record_failure(c, &slug, hook, &message)));
        });
        PluginHost { registry, cache: Mutex::new(HashMap::new()) }
    }

    /// The project's enabled plugins, from the cache or the database.
    pub fn project_blocking(&self, conn: &Connection, project_id: i64) -> picket_store::Result<Arc<ProjectPlugins>> {
        if let Some((at, p)) = self.cache.lock().expect("plugin cache").get(&project_id) {
            if at.elapsed() < STATE_TTL {
                return Ok(p.clone());
            }
        }
        let project = accounts::project_by_id(conn, project_id)?;
        let state = stored::project_state(conn, project_id)?;
        let site = stored::site_options_all(conn)?;
        let p = Arc::new(ProjectPlugins::new(self.registry, project_ref(&project), &state.choices, &state.options, &site));
        let mut cache = self.cache.lock().expect("plugin cache");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(project_id, (Instant::now(), p.clone()));
        Ok(p)
    }

    /// [`PluginHost::project_blocking`] from async code; answers from the cache without a thread hop.
    pub async fn project(&self, state: &AppState, project_id: i64) -> picket_store::Result<Arc<ProjectPlugins>> {
        if let Some((at, p)) = self.cache.lock().expect("plugin cache").get(&project_id) {
            if at.elapsed() < STATE_TTL {
                return Ok(p.clone());
            }
        }
        let st = state.clone();
        state.store.read_async(move |c| st.plugins.project_blocking(c, project_id)).await
    }

    /// Forgets a project's cached state (after its options changed).
    pub fn invalidate(&self, project_id: i64) {
        self.cache.lock().expect("plugin cache").remove(&project_id);
    }

    /// Forgets every project's cached state (after site options changed).
    pub fn invalidate_all(&self) {
        self.cache.lock().expect("plugin cache").clear();
    }
}

/// The plugin API's view of a project.
pub fn project_ref(p: &Project) -> ProjectRef {
    ProjectRef::new(p.id, &p.org_slug, &p.slug, &p.name)
}

/// The plugin API's view of an issue, with its link in the web interface.
pub fn issue_ref(url_prefix: &str, i: &Issue, p: &Project) -> IssueRef {
    let mut r = IssueRef::new(i.id, i.project_id, &i.title);
    r.culprit = i.culprit.clone();
    r.level = i.level.clone();
    r.status = i.status.clone();
    r.logger = i.logger.clone();
    r.times_seen = i.times_seen;
    r.first_seen = i.first_seen;
    r.last_seen = i.last_seen;
    r.url = format!("{}/organizations/{}/issues/{}/", url_prefix.trim_end_matches('/'), p.org_slug, i.id);
    r
}

/// Options of a plugin in a scope, with the schema's defaults.
pub fn scoped_options(conn: &Connection, scope: Scope, slug: &str, specs: &[picket_plugin_api::OptionSpec]) -> picket_store::Result<OptionValues> {
    Ok(OptionValues::with_defaults(specs, stored::options(conn, scope, slug)?))
}

/// An event handed from the digest to post-processing after its commit,
/// so that the event is not read back from the database.
pub struct Handoff {
    /// The durable job row, deleted once the plugins have run.
    pub job: PostProcessJob,
    /// The event as stored.
    pub event: Event,
}

/// Events in memory waiting for post-processing. When full, hand-offs are
/// dropped: their durable rows come due for the queue scan instead.
const HANDOFF_CAPACITY: usize = 512;
/// Jobs run per batch.
const JOBS_PER_BATCH: usize = 128;
/// How long a batch waits for more hand-offs, so that a trickle of events
/// does not cost a commit each.
const COALESCE: Duration = Duration::from_millis(50);
/// How often the durable queue is scanned for retries and lost first runs.
const SCAN_EVERY: Duration = Duration::from_secs(2);

/// The hand-off channel between the digest and post-processing.
pub struct HandoffChannel {
    tx: tokio::sync::mpsc::Sender<Handoff>,
    rx: Mutex<Option<tokio::sync::mpsc::Receiver<Handoff>>>,
}

impl Default for HandoffChannel {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(HANDOFF_CAPACITY);
        HandoffChannel { tx, rx: Mutex::new(Some(rx)) }
    }
}

impl HandoffChannel {
    /// Hands an event over; never waits (a full channel leaves the job to the scan).
    pub fn send(&self, h: Handoff) {
        let _ = self.tx.try_send(h);
    }
}

/// A job with its event, if already in memory.
struct Work {
    job: PostProcessJob,
    event: Option<Event>,
}

/// A project with its enabled plugins and its organization's members (id, e-mail, role).
type ProjectInput = (Project, Arc<ProjectPlugins>, Arc<Vec<(i64, String, String)>>);

/// Everything a batch needs about one job, read at once.
struct JobInput {
    /// The event came from the digest's hand-off (built on the digest thread).
    handed_off: bool,
    job: PostProcessJob,
    project: Project,
    issue: Issue,
    event: Event,
    plugins: Arc<ProjectPlugins>,
    members: Arc<Vec<(i64, String, String)>>,
}

/// Runs the plugins' `post_process` until `shutdown`: events handed over by
/// the digest at once, and every [`SCAN_EVERY`] the durable queue's due rows
/// (retries, and first runs that the hand-off lost).
pub async fn run_post_process(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(mut rx) = state.handoff.rx.lock().expect("handoff lock").take() else {
        tracing::error!("post-processing is already running");
        return;
    };
    // Jobs a previous process committed but did not finish (it crashed or was
    // killed): run them now rather than after the grace period.
    match state.store.write(stored::reclaim_first_runs).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "post-processing what the previous run left unfinished"),
        Err(e) => tracing::error!(error = %e, "cannot reclaim unfinished post-process jobs; the scan takes them later"),
    }
    let mut scan = tokio::time::interval(SCAN_EVERY);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut batch: Vec<Work> = Vec::new();
        tokio::select! {
            h = rx.recv() => match h {
                Some(h) => batch.push(Work { job: h.job, event: Some(h.event) }),
                None => break,
            },
            _ = scan.tick() => {
                match state.store.read_async(|c| stored::due_post_process(c, JOBS_PER_BATCH)).await {
                    Ok(jobs) => batch.extend(jobs.into_iter().map(|job| Work { job, event: None })),
                    Err(e) => tracing::error!(error = %e, "reading the post-process queue failed"),
                }
            }
            _ = shutdown.changed() => break,
        }
        if batch.is_empty() {
            continue;
        }
        // Take what else is waiting, a little longer when it trickles in.
        let deadline = tokio::time::Instant::now() + COALESCE;
        while batch.len() < JOBS_PER_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(h)) => batch.push(Work { job: h.job, event: Some(h.event) }),
                _ => break,
            }
        }
        if let Err(e) = run_batch(&state, batch).await {
            // The jobs stay queued; the scan takes them up again.
            tracing::error!(error = %e, "post-processing a batch failed; its jobs stay queued");
        }
    }
}

/// Runs a batch of jobs and records their outcome in one transaction.
async fn run_batch(state: &AppState, batch: Vec<Work>) -> picket_store::Result<()> {
    let st = state.clone();
    let (inputs, gone) = state
        .store
        .read_async(move |c| {
            let issue_ids: Vec<i64> = batch.iter().map(|w| w.job.issue_id).collect();
            let mut issues = stored::issues_by_id(c, &issue_ids)?;
            let mut projects: HashMap<i64, ProjectInput> = HashMap::new();
            let (mut inputs, mut gone) = (Vec::new(), Vec::new());
            for Work { job, event } in batch {
                // The issue or event may have been deleted since: nothing to run then.
                let handed_off = event.is_some();
                let event = match event {
                    Some(e) => Some(e),
                    None => query::event(c, job.project_id, &job.event_id)?.map(|e| Event::from_data(job.project_id, e.data.as_object().cloned().unwrap_or_default())),
                };
                let (Some(issue), Some(event)) = (issues.get(&job.issue_id).cloned(), event) else {
                    gone.push(job);
                    continue;
                };
                let (project, plugins, members) = match projects.entry(job.project_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        // A project deleted (or being deleted) since: its jobs are gone
                        // too, not a failure of the whole batch.
                        let project = match accounts::project_by_id(c, job.project_id) {
                            Ok(p) => p,
                            Err(picket_store::StoreError::NotFound(_)) => {
                                gone.push(job);
                                continue;
                            }
                            Err(e) => return Err(e),
                        };
                        let members = Arc::new(stored::org_members(c, project.org_id)?);
                        let plugins = st.plugins.project_blocking(c, job.project_id)?;
                        slot.insert((project, plugins, members)).clone()
                    }
                };
                inputs.push(JobInput { handed_off, job, project, issue, event, plugins, members });
            }
            issues.clear();
            Ok((inputs, gone))
        })
        .await?;
    let st = state.clone();
    let (mut outcomes, events): (Vec<_>, Vec<Event>) = tokio::task::spawn_blocking(move || {
        let mut events = Vec::new();
        let outcomes = inputs
            .into_iter()
            .map(|input| {
                let handed_off = input.handed_off;
                let (outcome, event) = run_job(&st, input);
                // Events read back by the scan were built here: free them here.
                if handed_off {
                    events.push(event);
                }
                outcome
            })
            .collect();
        (outcomes, events)
    })
    .await
    .map_err(|e| picket_store::StoreError::Invalid(format!("post-process task failed: {e}")))?;
    state.digest_thread.release(events);
    outcomes.extend(gone.into_iter().map(|job| (job, Vec::new())));
    state
        .store
        .write(move |c| {
            for (job, retries) in &outcomes {
                stored::finish_post_process(c, job, retries)?;
            }
            Ok(())
        })
        .await
}

/// Runs one job's plugins; returns the retries to schedule as (slug, attempts,
/// when, error), and the event, to be freed where it was built.
fn run_job(state: &AppState, input: JobInput) -> ((PostProcessJob, Vec<(String, u32, f64, String)>), Event) {
    let JobInput { handed_off: _, job, project, issue, event, plugins, members } = input;
    let mut retries = Vec::new();
    let attempt = job.attempts + 1;
    // One context for every plugin: only the plugin's own parts change between calls.
    let mut ctx = PostProcessContext::new(project_ref(&project), issue_ref(&state.settings.url_prefix, &issue, &project), event, job.is_new, job.is_regression, OptionValues::default());
    ctx.attempt = attempt;
    let plain_members: Vec<Member> = members.iter().map(|(id, email, role)| Member::new(UserRef::new(*id, email, Some(role)), OptionValues::default())).collect();
    for (p, options) in &plugins.enabled {
        if job.plugin.as_deref().is_some_and(|slug| slug != p.slug()) || !p.may_post_process() {
            continue;
        }
        let user_specs = p.call("user_options", |pl| Ok(pl.user_options())).unwrap_or_default();
        ctx.members = if user_specs.is_empty() {
            plain_members.clone()
        } else {
            let read = state.store.read(|c| {
                let mut list = Vec::new();
                for (id, email, role) in members.iter() {
                    let options = scoped_options(c, Scope::User { project_id: project.id, user_id: *id }, p.slug(), &user_specs)?;
                    list.push(Member::new(UserRef::new(*id, email, Some(role)), options));
                }
                Ok(list)
            });
            match read {
                Ok(list) => list,
                Err(e) => {
                    tracing::error!(plugin = p.slug(), error = %e, "cannot read members' options for post_process; will retry");
                    retries.push((p.slug().to_string(), job.attempts, picket_store::now() + 5.0, e.to_string()));
                    continue;
                }
            }
        };
        ctx.options = options.clone();
        ctx.site_options = plugins.site_options(p.slug());
        if let Err(e) = p.post_process(&ctx) {
            if e.retryable() && attempt < MAX_ATTEMPTS {
                // 2 s, 8 s, 32 s, 128 s.
                let delay = 2f64 * 4f64.powi(attempt as i32 - 1);
                retries.push((p.slug().to_string(), attempt, picket_store::now() + delay, e.message().to_string()));
            } else {
                tracing::error!(plugin = p.slug(), event_id = %job.event_id, attempts = attempt, error = %e, "post_process gave up");
            }
        }
    }
    ((job, retries), ctx.event)
}
