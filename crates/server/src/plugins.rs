//! The plugin host: what the server does for the extension system.
//!
//! - [`PluginHost`] keeps each project's enabled plugins and options, cached
//!   for [`STATE_TTL`] (a change made through this process's API takes effect
//!   at once; one made by another process within the TTL).
//! - [`run_post_process`] drains the durable post-process queue the digest
//!   fills: after an event is committed, every enabled plugin's
//!   `post_process` runs here, off the ingest path; a retryable failure is
//!   retried with exponential backoff, up to [`MAX_ATTEMPTS`] tries.
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
/// Post-process jobs taken per round.
const JOBS_PER_ROUND: usize = 64;

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
        picket_plugin_api::registry::set_failure_observer(move |f| {
            tracing::warn!(plugin = %f.slug, hook = f.hook, panicked = f.panicked, error = %f.message, "plugin hook failed; skipped");
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

    /// [`PluginHost::project_blocking`] from async code.
    pub async fn project(&self, state: &AppState, project_id: i64) -> picket_store::Result<Arc<ProjectPlugins>> {
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

/// Everything a round of post-processing needs about one job, read at once.
struct JobInput {
    job: PostProcessJob,
    project: Project,
    issue: Issue,
    event: Option<Event>,
    plugins: Arc<ProjectPlugins>,
    members: Vec<(i64, String, String)>,
}

/// Runs the plugins' `post_process` for queued events until `shutdown`.
pub async fn run_post_process(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let worked = match round(&state).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::error!(error = %e, "post-processing failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        };
        if !worked {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// One round: take due jobs, run them, record the outcome. Returns the jobs done.
async fn round(state: &AppState) -> picket_store::Result<usize> {
    let st = state.clone();
    let inputs: Vec<JobInput> = state
        .store
        .read_async(move |c| {
            let mut out = Vec::new();
            for job in stored::due_post_process(c, JOBS_PER_ROUND)? {
                // The issue may have been deleted since: nothing to do then.
                let Ok(issue) = query::issue(c, job.issue_id) else {
                    out.push(JobInput { project: accounts::project_by_id(c, job.project_id)?, issue: placeholder_issue(&job), event: None, plugins: st.plugins.project_blocking(c, job.project_id)?, members: vec![], job });
                    continue;
                };
                let project = accounts::project_by_id(c, job.project_id)?;
                let event = query::event(c, job.project_id, &job.event_id)?
                    .map(|e| Event::from_data(job.project_id, e.data.as_object().cloned().unwrap_or_default()));
                let members = stored::org_members(c, project.org_id)?;
                let plugins = st.plugins.project_blocking(c, job.project_id)?;
                out.push(JobInput { job, project, issue, event, plugins, members });
            }
            Ok(out)
        })
        .await?;
    if inputs.is_empty() {
        return Ok(0);
    }
    let n = inputs.len();
    let st = state.clone();
    let outcomes = tokio::task::spawn_blocking(move || inputs.into_iter().map(|input| run_job(&st, input)).collect::<Vec<_>>())
        .await
        .map_err(|e| picket_store::StoreError::Invalid(format!("post-process task failed: {e}")))?;
    state
        .store
        .write(move |c| {
            for (job, retries) in &outcomes {
                stored::finish_post_process(c, job, retries)?;
            }
            Ok(())
        })
        .await?;
    Ok(n)
}

fn placeholder_issue(job: &PostProcessJob) -> Issue {
    Issue {
        id: job.issue_id,
        project_id: job.project_id,
        title: String::new(),
        culprit: String::new(),
        event_type: String::new(),
        level: String::new(),
        platform: String::new(),
        logger: None,
        status: String::new(),
        substatus: None,
        first_seen: 0.0,
        last_seen: 0.0,
        times_seen: 0,
        user_count: 0,
        first_release: None,
        metadata: serde_json::Value::Null,
    }
}

/// Runs one job's plugins; returns the retries to schedule as (slug, attempts, when, error).
fn run_job(state: &AppState, input: JobInput) -> (PostProcessJob, Vec<(String, u32, f64, String)>) {
    let JobInput { job, project, issue, event, plugins, members } = input;
    let mut retries = Vec::new();
    let Some(event) = event else { return (job, retries) };
    let attempt = job.attempts + 1;
    let issue_ref = issue_ref(&state.settings.url_prefix, &issue, &project);
    for (p, options) in &plugins.enabled {
        if job.plugin.as_deref().is_some_and(|slug| slug != p.slug()) {
            continue;
        }
        let site_options = plugins.site.get(p.slug()).cloned().unwrap_or_default();
        let member_list = match state.store.read(|c| {
            let user_specs = p.call("user_options", |pl| Ok(pl.user_options())).unwrap_or_default();
            let mut list = Vec::new();
            for (id, email, role) in &members {
                let options = if user_specs.is_empty() {
                    OptionValues::default()
                } else {
                    scoped_options(c, Scope::User { project_id: project.id, user_id: *id }, p.slug(), &user_specs)?
                };
                list.push(Member::new(UserRef::new(*id, email, Some(role)), options));
            }
            Ok(list)
        }) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(plugin = p.slug(), error = %e, "cannot read plugin options for post_process; will retry");
                retries.push((p.slug().to_string(), job.attempts, picket_store::now() + 5.0, e.to_string()));
                continue;
            }
        };
        let mut ctx = PostProcessContext::new(project_ref(&project), issue_ref.clone(), event.clone(), job.is_new, job.is_regression, options.clone());
        ctx.site_options = site_options;
        ctx.members = member_list;
        ctx.attempt = attempt;
        if let Err(e) = p.try_call("post_process", |pl| pl.post_process(&ctx)) {
            if e.retryable() && attempt < MAX_ATTEMPTS {
                // 2 s, 8 s, 32 s, 128 s.
                let delay = 2f64 * 4f64.powi(attempt as i32 - 1);
                retries.push((p.slug().to_string(), attempt, picket_store::now() + delay, e.message().to_string()));
            } else {
                tracing::error!(plugin = p.slug(), event_id = %job.event_id, attempts = attempt, error = %e, "post_process gave up");
            }
        }
    }
    (job, retries)
}
