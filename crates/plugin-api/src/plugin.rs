//! The [`Plugin`] trait: metadata, options, and hooks with a default for each.
//!
//! Every hook takes one context struct. Contexts are `#[non_exhaustive]`, so
//! Picket can add fields (and new hooks, with defaults) without breaking any
//! plugin: the Rust form of the classic rule "every hook accepts `**kwargs`".
//!
//! Hooks are synchronous and may block (an HTTP call in `post_process` is
//! fine): Picket calls them off its async threads. A hook that returns an
//! error or panics is logged with the plugin's slug, counted in the plugin's
//! health, and skipped; the request or pipeline goes on.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::filter::EventFilter;
use crate::html::Html;
use crate::model::{Event, IssueRef, Link, ProjectRef, UserRef};
use crate::options::{OptionSpec, OptionValues};
use crate::perm::Permission;

thread_local! {
    /// Set by the default [`Plugin::post_process`] to the type whose default
    /// ran: how the registry learns, on the first call, that a plugin has no
    /// hook of its own (Rust cannot tell an overridden trait method from the
    /// default otherwise). The type, not a flag, so that a plugin whose own
    /// hook calls another plugin's default still counts as having a hook.
    pub(crate) static DEFAULT_POST_PROCESS_RAN: std::cell::Cell<Option<std::any::TypeId>> = const { std::cell::Cell::new(None) };
}

/// Describes a plugin: shown in `picket plugins list`, the API and the web UI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginMeta {
    /// Shown everywhere; plugins are listed in title order.
    pub title: String,
    /// URL and storage key; derived from the title when not set (`"My Plugin"` → `my-plugin`).
    pub slug: String,
    /// What the plugin does, one paragraph.
    pub description: String,
    /// The plugin's version (usually `env!("CARGO_PKG_VERSION")`).
    pub version: String,
    /// Who wrote it.
    pub author: String,
    /// Where the author or the plugin lives.
    pub author_url: Option<String>,
    /// Documentation, source, issue tracker.
    pub resource_links: Vec<Link>,
    /// What sort of plugin this is (`notification`, `tag`, `issue-tracking`, ...); informational.
    pub plugin_type: String,
    /// Whether a project may turn it off (false for plugins the core relies on).
    pub can_disable: bool,
    /// Whether it is switched per project (false: it is always on, site-wide).
    pub can_enable_for_projects: bool,
    /// Whether it is on in a project that has not chosen.
    pub project_default_enabled: bool,
}

impl PluginMeta {
    /// Metadata with a title; the slug is derived from it.
    pub fn new(title: &str) -> PluginMeta {
        PluginMeta {
            title: title.into(),
            slug: slugify(title),
            description: String::new(),
            version: String::new(),
            author: String::new(),
            author_url: None,
            resource_links: Vec::new(),
            plugin_type: "default".into(),
            can_disable: true,
            can_enable_for_projects: true,
            project_default_enabled: false,
        }
    }

    /// Sets the slug (lowercase letters, digits, `-` and `_`).
    pub fn slug(mut self, slug: &str) -> Self {
        self.slug = slugify(slug);
        self
    }
    /// Sets the description.
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }
    /// Sets the version.
    pub fn version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    /// Sets the author and, optionally, a link.
    pub fn author(mut self, name: &str, url: Option<&str>) -> Self {
        self.author = name.into();
        self.author_url = url.map(str::to_string);
        self
    }
    /// Adds a resource link.
    pub fn resource_link(mut self, label: &str, url: &str) -> Self {
        self.resource_links.push(Link::new(label, url));
        self
    }
    /// Sets the plugin type.
    pub fn plugin_type(mut self, t: &str) -> Self {
        self.plugin_type = t.into();
        self
    }
    /// On in projects that have not chosen.
    pub fn enabled_by_default(mut self) -> Self {
        self.project_default_enabled = true;
        self
    }
    /// Always on, site-wide: no per-project switch, cannot be disabled.
    pub fn always_on(mut self) -> Self {
        self.can_enable_for_projects = false;
        self.can_disable = false;
        self.project_default_enabled = true;
        self
    }
}

/// `"My Plugin"` → `"my-plugin"`.
pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c.to_ascii_lowercase());
        } else if c.is_whitespace() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Why a hook failed. Shown in logs and in the plugin's health; for
/// `post_process`, [`PluginError::retryable`] decides whether Picket tries again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    message: String,
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Transient,
    Permanent,
    User,
}

impl PluginError {
    /// A failure that may go away (a timeout, a 503): `post_process` is retried.
    pub fn new(message: impl fmt::Display) -> PluginError {
        PluginError { message: message.to_string(), kind: ErrorKind::Transient }
    }

    /// A failure that will not go away by retrying (bad configuration, a 4xx).
    pub fn permanent(message: impl fmt::Display) -> PluginError {
        PluginError { message: message.to_string(), kind: ErrorKind::Permanent }
    }

    /// The request was wrong, not the plugin (a missing form field on its
    /// page): the user gets a 400 with the message, and the plugin's health
    /// does not count it.
    pub fn user(message: impl fmt::Display) -> PluginError {
        PluginError { message: message.to_string(), kind: ErrorKind::User }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    /// Whether the user's request was at fault ([`PluginError::user`]).
    pub fn is_user_error(&self) -> bool {
        self.kind == ErrorKind::User
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for PluginError {
    fn from(e: E) -> PluginError {
        PluginError::new(e)
    }
}

/// The result of a hook.
pub type HookResult<T> = Result<T, PluginError>;

/// Context of hooks about a project with no event or issue at hand
/// (`is_rate_limited`, `get_filters`, `preprocess_event`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProjectContext {
    /// The project.
    pub project: ProjectRef,
    /// The plugin's options for this project.
    pub options: OptionValues,
    /// The plugin's site-wide options.
    pub site_options: OptionValues,
}

impl ProjectContext {
    /// A context (for Picket and for tests).
    pub fn new(project: ProjectRef, options: OptionValues) -> ProjectContext {
        ProjectContext { project, options, site_options: OptionValues::default() }
    }
}

/// Context of `get_tags`: an event on its way in, before it is grouped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EventContext<'a> {
    /// The project.
    pub project: &'a ProjectRef,
    /// The plugin's options for this project.
    pub options: &'a OptionValues,
    /// The normalized event.
    pub event: &'a Event,
}

impl<'a> EventContext<'a> {
    /// A context (for Picket and for tests).
    pub fn new(project: &'a ProjectRef, options: &'a OptionValues, event: &'a Event) -> EventContext<'a> {
        EventContext { project, options, event }
    }
}

/// Context of the request-time hooks on an issue's page (`widget`, `panels`,
/// `actions`, `tags`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssueContext {
    /// The project.
    pub project: ProjectRef,
    /// The issue shown.
    pub issue: IssueRef,
    /// Who is looking.
    pub user: UserRef,
    /// The plugin's options for this project.
    pub options: OptionValues,
    /// The plugin's site-wide options.
    pub site_options: OptionValues,
    /// What the plugin stored about this issue (see [`ViewResponse::set_meta`]).
    pub meta: BTreeMap<String, String>,
    /// Path of the plugin's own page for this issue (its [`Plugin::view`]).
    pub plugin_url: String,
    /// The latest event of the issue, when there is one.
    pub event: Option<Event>,
}

impl IssueContext {
    /// A context (for Picket and for tests).
    pub fn new(project: ProjectRef, issue: IssueRef, user: UserRef, options: OptionValues, plugin_url: String) -> IssueContext {
        IssueContext { project, issue, user, options, site_options: OptionValues::default(), meta: BTreeMap::new(), plugin_url, event: None }
    }
}

/// Context of `before_events`: a list of issues about to be shown.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssueListContext {
    /// The project.
    pub project: ProjectRef,
    /// The issues, in display order.
    pub issues: Vec<IssueRef>,
    /// The plugin's options for this project.
    pub options: OptionValues,
}

impl IssueListContext {
    /// A context (for Picket and for tests).
    pub fn new(project: ProjectRef, issues: Vec<IssueRef>, options: OptionValues) -> IssueListContext {
        IssueListContext { project, issues, options }
    }
}

/// Context of [`Plugin::view`]: a request to the plugin's own page under an issue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ViewContext {
    /// Everything the issue's page hooks get.
    pub issue: IssueContext,
    /// `GET` or `POST`.
    pub method: String,
    /// Submitted fields (a form or a JSON object); empty for `GET`.
    pub form: Map<String, Value>,
    /// Whether the user may act on the issue (`admin_event`).
    pub can_admin: bool,
}

impl ViewContext {
    /// A context (for Picket and for tests).
    pub fn new(issue: IssueContext, method: &str, form: Map<String, Value>, can_admin: bool) -> ViewContext {
        ViewContext { issue, method: method.into(), form, can_admin }
    }
}

/// What a plugin's page answers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ViewResponse {
    /// The answer itself.
    pub body: ViewBody,
    /// Values to store about the issue (`None` deletes), visible to later hooks in
    /// [`IssueContext::meta`]: e.g. the id of an external ticket.
    pub meta_updates: Vec<(String, Option<String>)>,
}

/// The body of a [`ViewResponse`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ViewBody {
    /// A page shown as a tab of the issue, with a title.
    Page {
        /// Tab and page title.
        title: String,
        /// The page's content.
        html: Html,
    },
    /// Go somewhere else (back to the issue, to an external ticket).
    Redirect(String),
    /// Data for scripts (autocomplete and the like).
    Json(Value),
}

impl ViewResponse {
    /// A page.
    pub fn page(title: impl Into<String>, html: Html) -> ViewResponse {
        ViewResponse { body: ViewBody::Page { title: title.into(), html }, meta_updates: Vec::new() }
    }
    /// A redirect.
    pub fn redirect(url: impl Into<String>) -> ViewResponse {
        ViewResponse { body: ViewBody::Redirect(url.into()), meta_updates: Vec::new() }
    }
    /// JSON.
    pub fn json(v: Value) -> ViewResponse {
        ViewResponse { body: ViewBody::Json(v), meta_updates: Vec::new() }
    }
    /// Stores a value about the issue once the response is sent.
    pub fn set_meta(mut self, key: &str, value: Option<&str>) -> Self {
        self.meta_updates.push((key.into(), value.map(str::to_string)));
        self
    }
}

/// A member of the project's organization, for notifications.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Member {
    /// The user.
    pub user: UserRef,
    /// The user's own options for this plugin in this project (see [`Plugin::user_options`]).
    pub options: OptionValues,
}

impl Member {
    /// A member (for Picket and for tests).
    pub fn new(user: UserRef, options: OptionValues) -> Member {
        Member { user, options }
    }
}

/// Context of `post_process`: an event that has been stored and grouped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostProcessContext {
    /// The project.
    pub project: ProjectRef,
    /// The issue the event went to, as it is after the event.
    pub issue: IssueRef,
    /// The event.
    pub event: Event,
    /// The event created the issue.
    pub is_new: bool,
    /// The event reopened a resolved issue.
    pub is_regression: bool,
    /// The event was not stored (sampled out); always false in Picket today.
    pub is_sample: bool,
    /// The plugin's options for this project.
    pub options: OptionValues,
    /// The plugin's site-wide options.
    pub site_options: OptionValues,
    /// Members of the project's organization with their options for this plugin.
    pub members: Vec<Member>,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
}

impl PostProcessContext {
    /// A context (for Picket and for tests).
    pub fn new(project: ProjectRef, issue: IssueRef, event: Event, is_new: bool, is_regression: bool, options: OptionValues) -> PostProcessContext {
        PostProcessContext { project, issue, event, is_new, is_regression, is_sample: false, options, site_options: OptionValues::default(), members: Vec::new(), attempt: 1 }
    }
}

/// Context of `has_perm`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PermContext {
    /// Who asks.
    pub user: UserRef,
    /// What for.
    pub perm: Permission,
    /// The organization concerned.
    pub org_slug: Option<String>,
    /// The project concerned, if any.
    pub project: Option<ProjectRef>,
    /// The issue concerned (`admin_event`).
    pub issue_id: Option<i64>,
    /// The plugin concerned (`configure_project_plugin`).
    pub plugin: Option<String>,
    /// The asked plugin's options in the project concerned (empty for site-wide permissions).
    pub options: OptionValues,
}

impl PermContext {
    /// A context (for Picket and for tests).
    pub fn new(user: UserRef, perm: Permission) -> PermContext {
        PermContext { user, perm, org_slug: None, project: None, issue_id: None, plugin: None, options: OptionValues::default() }
    }
}

/// A plugin. Implement [`Plugin::meta`] and the hooks you need; register it
/// with [`register_plugin!`](crate::register_plugin).
///
/// Picket creates one instance and shares it between threads: keep state in
/// options, in issue meta, or behind a lock.
pub trait Plugin: std::any::Any + Send + Sync {
    /// Title, slug, version, author, and how the plugin is enabled.
    fn meta(&self) -> PluginMeta;

    /// The per-project configuration form. Values are validated against it,
    /// stored under the plugin's slug, and passed back in every context.
    fn project_options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    /// The site-wide configuration form (set by a superuser).
    fn site_options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    /// Per-user options in each project (the classic notification forms):
    /// e.g. "e-mail me about this project". Passed to `post_process` in [`Member::options`].
    fn user_options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    /// Checks a submitted project configuration as a whole, after each field
    /// passed its own validation (e.g. "a secret is needed with this URL").
    fn validate_project_options(&self, _options: &OptionValues) -> Result<(), String> {
        Ok(())
    }

    /// Called once before a list of issues is shown; a place to prefetch
    /// what [`Plugin::tags`] will need. Its result is ignored.
    fn before_events(&self, _ctx: &IssueListContext) -> HookResult<()> {
        Ok(())
    }

    /// Short HTML labels shown next to the issue's title, in the stream and on
    /// its page (e.g. a link to the external ticket). Return the labels to add.
    fn tags(&self, _ctx: &IssueContext) -> HookResult<Vec<Html>> {
        Ok(Vec::new())
    }

    /// Links in the issue's "Actions" menu, shown to users who may act on the
    /// issue (`admin_event`). Usually `Link::new("Create ticket", ctx.plugin_url)`.
    fn actions(&self, _ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Ok(Vec::new())
    }

    /// Extra tabs on the issue's page, after "Details" and "Events".
    /// Usually `Link::new(title, ctx.plugin_url)`, which opens [`Plugin::view`].
    fn panels(&self, _ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Ok(Vec::new())
    }

    /// A box in the issue page's sidebar.
    fn widget(&self, _ctx: &IssueContext) -> HookResult<Option<Html>> {
        Ok(None)
    }

    /// The plugin's own page under an issue (`/api/0/issues/{id}/plugins/{slug}/`).
    /// `None` sends the user back to the issue. A `POST` is only passed on for
    /// users who may act on the issue (`admin_event`); the meta updates of the
    /// response are stored before it is sent.
    fn view(&self, _ctx: &ViewContext) -> HookResult<Option<ViewResponse>> {
        Ok(None)
    }

    /// Changes an event after normalization and before grouping (scrub a
    /// field, add context, rewrite a fingerprint). Runs on the digest path:
    /// keep it fast. If it fails, the changes it made before failing stay:
    /// make them at the end, once nothing can fail.
    fn preprocess_event(&self, _ctx: &ProjectContext, _event: &mut Map<String, Value>) -> HookResult<()> {
        Ok(())
    }

    /// Tags to add to an event before it is grouped (the classic TagPlugin):
    /// they are stored, counted per issue and searchable like the SDK's own.
    /// `ctx.event.tags` holds the SDK's and Picket's tags, not other plugins'.
    /// A key the event already has keeps its value: a plugin adds tags, it
    /// does not replace them (and the first plugin to add a key wins).
    fn get_tags(&self, _ctx: &EventContext<'_>) -> HookResult<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// `true` refuses new events for the project with HTTP 429. Asked on
    /// the ingest path for every envelope: answer from memory.
    fn is_rate_limited(&self, _ctx: &ProjectContext) -> HookResult<bool> {
        Ok(false)
    }

    /// Runs after an event is committed, off the ingest path, in the order of
    /// the durable post-process queue. A retryable error is retried with
    /// backoff; this hook can neither slow nor break ingest.
    ///
    /// A plugin that does not implement it costs nothing here: once a call
    /// has shown that the plugin keeps this default, Picket queues no
    /// post-processing for projects whose enabled plugins all lack the hook.
    fn post_process(&self, _ctx: &PostProcessContext) -> HookResult<()> {
        DEFAULT_POST_PROCESS_RAN.set(Some(std::any::TypeId::of::<Self>()));
        Ok(())
    }

    /// Extra filters for the project's issue stream and event list.
    fn get_filters(&self, _ctx: &ProjectContext) -> HookResult<Vec<Box<dyn EventFilter>>> {
        Ok(Vec::new())
    }

    /// An opinion on a permission: `Some(false)` vetoes, `None` (the default)
    /// leaves it to Picket's rules, `Some(true)` grants only `add_project` and
    /// `add_team`. Asked of the plugins enabled in the project concerned (with
    /// their options in `ctx.options`), or of every plugin for site-wide
    /// permissions. Superusers are never vetoed.
    fn has_perm(&self, _ctx: &PermContext) -> HookResult<Option<bool>> {
        Ok(None)
    }
}
