//! The Acme plugins: a complete example of extending Picket without touching
//! its core (see `docs/plugins.md`). Acme runs background jobs; its SDK
//! integration sends a `job` object with each event:
//!
//! ```json
//! {"job": {"queue": "emails", "name": "SendWelcome", "attempt": 3}}
//! ```
//!
//! What this crate adds:
//! - a Data Interface for `job` ([`JobInterface`]): validated, rendered, searchable,
//!   and grouping by queue and job name (it outranks exceptions);
//! - an Aggregate View "Jobs" ([`JobsView`]);
//! - a plugin ([`AcmePlugin`]) with a tag (`acme_queue`, `acme_team`), an event
//!   preprocessor (drops configured `extra` keys), a rate limit switch, a
//!   filter for the queue, a widget, an action, a panel with its own page,
//!   a permission veto, and a `post_process` hook that appends to a journal file;
//! - a plugin that fails in every hook ([`ChaosPlugin`]), to show that Picket
//!   isolates failures.

use std::io::Write as _;

use picket_plugin_api::{
    register_interface, register_plugin, register_view, AggregateView, Choice, Condition, Event, EventContext, EventFilter, FilterContext, HookResult, Html,
    Interface, IssueContext, Link, NormalizeContext, OptionKind, OptionSpec, PermContext, Permission, Plugin, PluginError, PluginMeta, PostProcessContext,
    ProjectContext, Template, ViewContext, ViewResponse,
};
use serde_json::{json, Map, Value};

/// Call from `main` so the linker keeps this crate.
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}

// ------------------------------------------------------------ the interface

/// `job`: the background job an event happened in.
#[derive(Default)]
pub struct JobInterface;
register_interface!(JobInterface);

impl Interface for JobInterface {
    fn key(&self) -> &'static str {
        "job"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["acme.interfaces.Job"]
    }
    fn title(&self) -> &'static str {
        "Job"
    }
    /// Above exceptions (2000): a failing job is one issue, whatever it raised.
    fn score(&self) -> i32 {
        3000
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        let obj = value.as_object_mut().ok_or("job must be an object")?;
        let queue = obj.get("queue").and_then(Value::as_str).map(str::trim).filter(|q| !q.is_empty()).ok_or("job.queue must be a non-empty string")?;
        let queue = queue.to_ascii_lowercase();
        obj.insert("queue".into(), json!(queue));
        match obj.get("attempt") {
            None => {
                obj.insert("attempt".into(), json!(1));
            }
            Some(Value::Number(n)) if n.as_u64().is_some() => {}
            Some(_) => return Err("job.attempt must be a positive integer".into()),
        }
        Ok(())
    }
    fn grouping_component(&self, value: &Value, _ctx: &picket_plugin_api::GroupingContext<'_>) -> Option<String> {
        let queue = value.get("queue")?.as_str()?;
        let name = value.get("name").and_then(Value::as_str).unwrap_or("");
        Some(format!("acme-job\u{1e}{queue}\u{1e}{name}"))
    }
    fn to_html(&self, value: &Value) -> Html {
        job_template().render(&json!({"job": value})).unwrap_or_else(|e| Html::text(&e.to_string()))
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        Some(format!("{} on queue {}", value.get("name")?.as_str()?, value.get("queue")?.as_str()?))
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        ["queue", "name"].iter().filter_map(|k| value.get(*k).and_then(Value::as_str)).map(str::to_string).collect()
    }
}

fn job_template() -> &'static Template {
    static T: std::sync::OnceLock<Template> = std::sync::OnceLock::new();
    T.get_or_init(|| Template::new("acme/job.html", include_str!("../templates/job.html")).expect("the job template compiles"))
}

// ----------------------------------------------------------------- the view

/// Issues from background jobs.
#[derive(Default)]
pub struct JobsView;
register_view!(JobsView);

impl AggregateView for JobsView {
    fn slug(&self) -> &'static str {
        "jobs"
    }
    fn name(&self) -> &'static str {
        "Job"
    }
    fn name_plural(&self) -> &'static str {
        "Jobs"
    }
    fn should_store(&self, event: &Event) -> bool {
        event.interface("job").is_some()
    }
}

// --------------------------------------------------------------- the filter

/// The stream filter for a job's queue, offered by [`AcmePlugin::get_filters`].
pub struct QueueFilter;

impl EventFilter for QueueFilter {
    fn query_param(&self) -> String {
        "acme_queue".into()
    }
    fn label(&self) -> String {
        "Job queue".into()
    }
    fn choices(&self, ctx: &FilterContext<'_>) -> HookResult<Vec<Choice>> {
        Ok(ctx.data.tag_values("acme_queue", 50).into_iter().map(|(v, n)| Choice::new(v.clone(), format!("queue {v}"), Some(n))).collect())
    }
    fn condition(&self, value: &str) -> Option<Condition> {
        Some(Condition::Tag { key: "acme_queue".into(), value: value.to_string() })
    }
}

// --------------------------------------------------------------- the plugin

/// Acme's integration.
#[derive(Default)]
pub struct AcmePlugin;
register_plugin!(AcmePlugin);

impl Plugin for AcmePlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Acme Jobs")
            .slug("acme")
            .description("Tags, filters and pages for Acme's background jobs.")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Acme Corp", Some("https://acme.example/"))
            .resource_link("Source", "https://acme.example/picket-acme")
            .enabled_by_default()
    }

    fn project_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("team", "Owning team", OptionKind::Text).default_value("platform"),
            OptionSpec::new("redact_extra", "Drop these extra keys", OptionKind::List),
            OptionSpec::new("paused", "Refuse new events", OptionKind::Bool),
            OptionSpec::new("journal_delay_ms", "Journal delay (ms)", OptionKind::Number { min: Some(0.0), max: Some(60_000.0) })
                .help("Wait this long before each journal line (to show that post-processing survives a crash)."),
        ]
    }

    /// Where events are journaled is the operator's choice (a site option):
    /// a project admin must not be able to make the server write any file.
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![OptionSpec::new("journal", "Journal file", OptionKind::Text).help("post_process appends one JSON line per event here.")]
    }

    fn preprocess_event(&self, ctx: &ProjectContext, event: &mut Map<String, Value>) -> HookResult<()> {
        let drop = ctx.options.list("redact_extra");
        if let Some(Value::Object(extra)) = event.get_mut("extra") {
            for k in drop {
                extra.remove(&k);
            }
        }
        Ok(())
    }

    fn get_tags(&self, ctx: &EventContext<'_>) -> HookResult<Vec<(String, String)>> {
        let mut tags = vec![("acme_team".to_string(), ctx.options.str("team").unwrap_or("platform").to_string())];
        if let Some(q) = ctx.event.interface("job").and_then(|j| j.get("queue")).and_then(Value::as_str) {
            tags.push(("acme_queue".into(), q.into()));
        }
        Ok(tags)
    }

    fn is_rate_limited(&self, ctx: &ProjectContext) -> HookResult<bool> {
        Ok(ctx.options.bool("paused"))
    }

    fn get_filters(&self, _ctx: &ProjectContext) -> HookResult<Vec<Box<dyn EventFilter>>> {
        Ok(vec![Box::new(QueueFilter)])
    }

    fn tags(&self, ctx: &IssueContext) -> HookResult<Vec<Html>> {
        Ok(vec![Html::text(&format!("team:{}", ctx.options.str("team").unwrap_or("platform")))])
    }

    fn widget(&self, ctx: &IssueContext) -> HookResult<Option<Html>> {
        // The team name is user input: Html::text escapes it.
        Ok(Some(Html::trusted(format!("<p class=\"acme-owner\">Owned by {}</p>", Html::text(ctx.options.str("team").unwrap_or("platform"))))))
    }

    fn actions(&self, ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Ok(vec![Link::new("Retry job", ctx.plugin_url.clone())])
    }

    fn panels(&self, ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Ok(vec![Link::new("Job", ctx.plugin_url.clone())])
    }

    fn view(&self, ctx: &ViewContext) -> HookResult<Option<ViewResponse>> {
        let issue = &ctx.issue;
        let job = issue.event.as_ref().and_then(|e| e.interface("job")).cloned().unwrap_or(json!({}));
        if ctx.method == "POST" {
            let at = format!("{}", issue.issue.last_seen as i64);
            return Ok(Some(ViewResponse::redirect(issue.plugin_url.clone()).set_meta("retried", Some(&at))));
        }
        let html = job_template().render(&json!({"job": job, "retried": issue.meta.get("retried")}))?;
        Ok(Some(ViewResponse::page("Job", html)))
    }

    /// Contractors may look at issues but not act on them: a veto. They may
    /// not configure plugins either, or they could switch this one off and
    /// with it the veto. For everyone else `None` leaves the decision to
    /// Picket's role rule.
    fn has_perm(&self, ctx: &PermContext) -> HookResult<Option<bool>> {
        let vetoed = matches!(ctx.perm, Permission::AdminEvent | Permission::ConfigureProjectPlugin);
        Ok((vetoed && ctx.user.email.ends_with("@contractor.example")).then_some(false))
    }

    fn post_process(&self, ctx: &PostProcessContext) -> HookResult<()> {
        let Some(path) = ctx.site_options.str("journal") else { return Ok(()) };
        if let Some(ms) = ctx.options.number("journal_delay_ms") {
            std::thread::sleep(std::time::Duration::from_millis(ms as u64));
        }
        let line = json!({
            "event_id": ctx.event.event_id,
            "issue_id": ctx.issue.id,
            "is_new": ctx.is_new,
            "is_regression": ctx.is_regression,
            "attempt": ctx.attempt,
            "queue": ctx.event.tag("acme_queue"),
        });
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| PluginError::new(format!("cannot open journal '{path}': {e}")))?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}

// ---------------------------------------------------------- the bad citizen

/// Fails in every hook, by panicking or by returning an error. Off by
/// default; enable it in a project to see Picket carry on.
#[derive(Default)]
pub struct ChaosPlugin;
register_plugin!(ChaosPlugin);

impl Plugin for ChaosPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Chaos").description("Fails in every hook, to demonstrate isolation.").version("0.0.1").author("Acme Corp", None)
    }
    fn preprocess_event(&self, _ctx: &ProjectContext, event: &mut Map<String, Value>) -> HookResult<()> {
        event.insert("chaos_was_here".into(), json!(true));
        panic!("chaos in preprocess_event")
    }
    fn get_tags(&self, _ctx: &EventContext<'_>) -> HookResult<Vec<(String, String)>> {
        panic!("chaos in get_tags")
    }
    fn is_rate_limited(&self, _ctx: &ProjectContext) -> HookResult<bool> {
        Err(PluginError::new("chaos in is_rate_limited"))
    }
    fn get_filters(&self, _ctx: &ProjectContext) -> HookResult<Vec<Box<dyn EventFilter>>> {
        panic!("chaos in get_filters")
    }
    fn tags(&self, _ctx: &IssueContext) -> HookResult<Vec<Html>> {
        Err(PluginError::new("chaos in tags"))
    }
    fn widget(&self, _ctx: &IssueContext) -> HookResult<Option<Html>> {
        panic!("chaos in widget")
    }
    fn actions(&self, _ctx: &IssueContext) -> HookResult<Vec<Link>> {
        panic!("chaos in actions")
    }
    fn panels(&self, _ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Err(PluginError::new("chaos in panels"))
    }
    fn view(&self, _ctx: &ViewContext) -> HookResult<Option<ViewResponse>> {
        panic!("chaos in view")
    }
    fn has_perm(&self, _ctx: &PermContext) -> HookResult<Option<bool>> {
        Err(PluginError::new("chaos in has_perm"))
    }
    fn post_process(&self, _ctx: &PostProcessContext) -> HookResult<()> {
        Err(PluginError::permanent("chaos in post_process"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_plugin_api::{OptionValues, ProjectRef};

    #[test]
    fn the_job_interface_normalizes_and_groups_by_queue_and_name() {
        let i = JobInterface;
        let mut v = json!({"queue": " Emails ", "name": "SendWelcome"});
        i.normalize(&mut v, &NormalizeContext::default()).unwrap();
        assert_eq!(v, json!({"queue": "emails", "name": "SendWelcome", "attempt": 1}));
        assert!(i.normalize(&mut json!({"name": "x"}), &NormalizeContext::default()).unwrap_err().contains("job.queue"));
        let event = Map::new();
        let key = i.grouping_component(&v, &picket_plugin_api::GroupingContext::new("python", true, &event)).unwrap();
        assert_eq!(key, "acme-job\u{1e}emails\u{1e}SendWelcome");
    }

    #[test]
    fn the_job_page_escapes_event_data() {
        let html = JobInterface.to_html(&json!({"queue": "<script>alert(1)</script>", "name": "x", "attempt": 1}));
        assert!(html.as_str().contains("&lt;script&gt;"), "{html}");
        assert!(!html.as_str().contains("<script>"));
    }

    #[test]
    fn tags_come_from_the_job_and_the_options() {
        let event = Event::from_data(1, json!({"job": {"queue": "emails"}}).as_object().unwrap().clone());
        let project = ProjectRef::new(1, "acme", "web", "Web");
        let tags = AcmePlugin.get_tags(&EventContext::new(&project, &OptionValues::default(), &event)).unwrap();
        assert_eq!(tags, vec![("acme_team".into(), "platform".into()), ("acme_queue".into(), "emails".into())]);
    }
}
