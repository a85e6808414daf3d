//! The extension system in the `/api/0/` API: plugin lists, per-project
//! enablement and configuration forms, the issue page's plugin slots
//! (tags, actions, panels, widgets), plugins' own pages, the stream's
//! filters and views, and events rendered by their interfaces.
//!
//! Secrets are write-only: they are never sent back, only whether one is set.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use picket_core::filters::TagFilter;
use picket_plugin_api::registry::RegisteredPlugin;
use picket_plugin_api::{
    Choice, Condition, EventFilter, FilterContext, FilterData, FilterTarget, IssueContext, IssueListContext, Link, OptionSpec, PermContext, Permission,
    UserRef, ViewBody, ViewContext,
};
use picket_store::accounts::{Project, User};
use picket_store::plugins::{self as stored, Scope};
use picket_store::query::{self, Issue, IssueSearch};
use serde_json::{json, Map, Value};

use crate::api::{authed_user, issue_for, project_for, ADMIN_ROLES, WRITE_ROLES};
use crate::error::ApiError;
use crate::plugins::{issue_ref, project_ref};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/0/plugins/", get(list_all))
        .route("/api/0/plugins/{slug}/site-options/", get(get_site_options).put(put_site_options))
        .route("/api/0/projects/{org}/{project}/plugins/", get(list_for_project))
        .route("/api/0/projects/{org}/{project}/plugins/{slug}/", get(get_config).put(put_config).delete(reset_config))
        .route("/api/0/projects/{org}/{project}/plugins/{slug}/user-options/", get(get_user_options).put(put_user_options))
        .route("/api/0/projects/{org}/{project}/filters/", get(list_filters))
        .route("/api/0/projects/{org}/{project}/views/", get(list_views))
        .route("/api/0/projects/{org}/{project}/events/{event_id}/rendered/", get(rendered_event))
        .route("/api/0/issues/{id}/plugins/", get(issue_slots))
        .route("/api/0/issues/{id}/plugins/{slug}/", get(plugin_view).post(plugin_view_post))
}

fn user_ref(user: &User, role: &str) -> UserRef {
    let mut u = UserRef::new(user.id, &user.email, Some(role));
    u.is_superuser = user.is_superuser;
    u
}

/// A permission question about a project, for [`allowed`].
pub(crate) fn perm_context(user: &User, role: &str, perm: Permission, project: &Project) -> PermContext {
    let mut ctx = PermContext::new(user_ref(user, role), perm);
    ctx.project = Some(project_ref(project));
    ctx.org_slug = Some(project.org_slug.clone());
    ctx
}

/// Picket's rule (`core_allows`) and the opinions of the plugins enabled in the project.
pub(crate) async fn allowed(state: &AppState, project_id: i64, ctx: &PermContext, core_allows: bool) -> Result<bool, ApiError> {
    let plugins = state.plugins.project(state, project_id).await?;
    Ok(picket_core::plugins::authorize_in_project(&plugins, ctx, core_allows))
}

/// Whether the user may act on an issue (`admin_event`): a member's role, unless a plugin vetoes.
pub(crate) async fn can_admin_event(state: &AppState, user: &User, role: &str, project: &Project, issue_id: i64) -> Result<bool, ApiError> {
    let mut ctx = perm_context(user, role, Permission::AdminEvent, project);
    ctx.issue_id = Some(issue_id);
    allowed(state, project.id, &ctx, WRITE_ROLES.contains(&role)).await
}

/// Whether the user may configure a plugin in the project (`configure_project_plugin`): admins and owners.
async fn can_configure(state: &AppState, user: &User, role: &str, project: &Project, slug: &str) -> Result<bool, ApiError> {
    let mut ctx = perm_context(user, role, Permission::ConfigureProjectPlugin, project);
    ctx.plugin = Some(slug.to_string());
    allowed(state, project.id, &ctx, ADMIN_ROLES.contains(&role)).await
}

fn meta_json(p: &RegisteredPlugin) -> Value {
    let m = p.meta();
    json!({
        "slug": m.slug,
        "title": m.title,
        "description": m.description,
        "version": m.version,
        "author": {"name": m.author, "url": m.author_url},
        "resourceLinks": m.resource_links.iter().map(|l| json!({"title": l.label, "url": l.url})).collect::<Vec<_>>(),
        "type": m.plugin_type,
        "source": p.source(),
        "canDisable": m.can_disable,
        "canEnableForProjects": m.can_enable_for_projects,
        "projectDefaultEnabled": m.project_default_enabled,
    })
}

/// The form with current values; secrets only say whether they are set.
fn form_json(specs: &[OptionSpec], stored: &BTreeMap<String, Value>) -> Value {
    Value::Array(
        specs
            .iter()
            .map(|s| {
                let mut f = serde_json::to_value(s).unwrap_or_default();
                let current = stored.get(&s.key);
                if s.is_secret() {
                    f["isSet"] = json!(current.is_some());
                    f["value"] = Value::Null;
                    f["default"] = Value::Null;
                } else {
                    f["value"] = current.cloned().or_else(|| s.default.clone()).unwrap_or(Value::Null);
                }
                f
            })
            .collect(),
    )
}

/// Every plugin. Projects are listed only where the user may see them; the
/// last error (which may quote any project's data) only for superusers.
async fn list_all(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let u = user.clone();
    let (failures, mut choices, visible) = state
        .store
        .read_async(move |c| {
            let visible: std::collections::HashSet<String> = picket_store::accounts::projects_for_user(c, &u)?.into_iter().map(|p| format!("{}/{}", p.org_slug, p.slug)).collect();
            Ok((stored::failures(c)?, stored::choices_by_plugin(c)?, visible))
        })
        .await?;
    for list in choices.values_mut() {
        list.retain(|(project, _)| visible.contains(project));
    }
    Ok(Json(Value::Array(
        state
            .plugins
            .registry
            .plugins()
            .iter()
            .map(|p| {
                let mut v = meta_json(p);
                let f = failures.get(p.slug());
                v["health"] = if user.is_superuser {
                    json!({"failures": f.map_or(0, |f| f.0), "lastHook": f.map(|f| f.1.clone()), "lastError": f.map(|f| f.2.clone())})
                } else {
                    json!({"failures": f.map_or(0, |f| f.0)})
                };
                v["projects"] = Value::Array(choices.get(p.slug()).into_iter().flatten().map(|(proj, on)| json!({"project": proj, "enabled": on})).collect());
                v
            })
            .collect(),
    )))
}

async fn list_for_project(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    let st = state.store.read_async(move |c| stored::project_state(c, pid)).await?;
    Ok(Json(Value::Array(
        state
            .plugins
            .registry
            .plugins()
            .iter()
            .map(|pl| {
                let mut v = meta_json(pl);
                v["enabled"] = json!(pl.is_enabled(st.choices.get(pl.slug()).copied()));
                v["hasConfiguration"] = json!(!pl.call("project_options", |x| Ok(x.project_options())).unwrap_or_default().is_empty());
                v
            })
            .collect(),
    )))
}

/// A 400 listing every invalid field of a form.
fn form_errors(errors: picket_plugin_api::options::FormErrors) -> ApiError {
    ApiError::bad_request(format!("invalid options: {}", errors.iter().map(|(k, e)| format!("{k}: {e}")).collect::<Vec<_>>().join("; ")))
}

/// A JSON object of option values, checked against the schema.
fn validated_body(specs: &[OptionSpec], body: &[u8]) -> Result<Vec<picket_plugin_api::options::OptionUpdate>, ApiError> {
    let form: Map<String, Value> = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; expected an object of option values")))?;
    picket_plugin_api::options::validate_form(specs, &form).map_err(form_errors)
}

fn plugin_or_404<'a>(state: &'a AppState, slug: &str) -> Result<&'a RegisteredPlugin, ApiError> {
    state.plugins.registry.get(slug).ok_or_else(|| ApiError::not_found(format!("plugin '{slug}' not found; list them with GET /api/0/plugins/ or: picket plugins list")))
}

async fn get_config(State(state): State<AppState>, headers: HeaderMap, Path((org, project, slug)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let plugin = plugin_or_404(&state, &slug)?;
    let (pid, s) = (p.id, slug.clone());
    let (st, values) = state.store.read_async(move |c| Ok((stored::project_state(c, pid)?, stored::options(c, Scope::Project(pid), &s)?))).await?;
    let specs = plugin.call("project_options", |x| Ok(x.project_options())).unwrap_or_default();
    let mut v = meta_json(plugin);
    v["enabled"] = json!(plugin.is_enabled(st.choices.get(&slug).copied()));
    v["config"] = form_json(&specs, &values);
    Ok(Json(v))
}

/// `PUT {"enabled": true, "options": {"url": "..."}}`: either part may be left out.
async fn put_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project, slug)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, role) = project_for(&state, &user, org.clone(), project.clone()).await?;
    let plugin = plugin_or_404(&state, &slug)?;
    if !can_configure(&state, &user, &role, &p, &slug).await? {
        return Err(ApiError::forbidden("configuring plugins needs the admin or owner role in the organization (or a plugin vetoed configure_project_plugin)"));
    }
    let body: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; expected {{\"enabled\": true, \"options\": {{...}}}}")))?;
    let Some(body) = body.as_object() else { return Err(ApiError::bad_request("expected a JSON object: {\"enabled\": true, \"options\": {...}}")) };
    if let Some(k) = body.keys().find(|k| !matches!(k.as_str(), "enabled" | "options")) {
        return Err(ApiError::bad_request(format!("unknown field '{k}': use 'enabled' and 'options'")));
    }
    let enabled = match body.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::bad_request("'enabled' must be true or false")),
    };
    let meta = plugin.meta();
    if enabled == Some(false) && (!meta.can_disable || !meta.can_enable_for_projects) {
        return Err(ApiError::bad_request(format!("plugin '{slug}' cannot be disabled per project")));
    }
    let specs = plugin.call("project_options", |x| Ok(x.project_options())).unwrap_or_default();
    let updates = match body.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(form)) => picket_plugin_api::options::validate_form(&specs, form).map_err(form_errors)?,
        Some(_) => return Err(ApiError::bad_request("'options' must be an object of option values")),
    };
    // The form as it would be stored: what is stored, with the changes.
    let (pid, s) = (p.id, slug.clone());
    let (stored_state, mut merged) = state.store.read_async(move |c| Ok((stored::project_state(c, pid)?, stored::options(c, Scope::Project(pid), &s)?))).await?;
    for (k, v) in &updates {
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    let values = picket_plugin_api::OptionValues::with_defaults(&specs, merged);
    // A plugin is not switched on without its required options.
    if enabled.unwrap_or_else(|| plugin.is_enabled(stored_state.choices.get(&slug).copied())) {
        let missing: Vec<&str> = specs.iter().filter(|s| s.required && values.get(&s.key).is_none()).map(|s| s.label.as_str()).collect();
        if !missing.is_empty() {
            return Err(ApiError::bad_request(format!("plugin '{slug}' needs {} before it can be enabled; send them in \"options\"", missing.join(", "))));
        }
    }
    // The plugin checks the whole form.
    if !updates.is_empty() {
        match plugin.call("validate_project_options", |x| Ok(x.validate_project_options(&values))) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(ApiError::bad_request(format!("invalid options: {e}"))),
            None => return Err(ApiError::internal(format!("plugin '{slug}' failed while checking its options; see the server log"))),
        }
    }
    let (pid, s) = (p.id, slug.clone());
    state
        .store
        .write(move |c| {
            stored::set_options(c, Scope::Project(pid), &s, &updates)?;
            if let Some(e) = enabled {
                stored::set_enabled(c, pid, &s, Some(e))?;
            }
            Ok(())
        })
        .await?;
    state.plugins.invalidate(p.id);
    tracing::info!(plugin = %slug, project = %format!("{org}/{project}"), user = %user.email, "plugin configuration changed");
    get_config(State(state), headers, Path((org, project, slug))).await
}

async fn reset_config(State(state): State<AppState>, headers: HeaderMap, Path((org, project, slug)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, role) = project_for(&state, &user, org, project).await?;
    plugin_or_404(&state, &slug)?;
    if !can_configure(&state, &user, &role, &p, &slug).await? {
        return Err(ApiError::forbidden("configuring plugins needs the admin or owner role in the organization (or a plugin vetoed configure_project_plugin)"));
    }
    let pid = p.id;
    state.store.write(move |c| stored::reset_options(c, Scope::Project(pid), &slug)).await?;
    state.plugins.invalidate(p.id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A plugin's site-wide options (superusers only).
async fn get_site_options(State(state): State<AppState>, headers: HeaderMap, Path(slug): Path<String>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    if !user.is_superuser {
        return Err(ApiError::forbidden("site-wide plugin options are for superusers"));
    }
    let plugin = plugin_or_404(&state, &slug)?;
    let specs = plugin.call("site_options", |x| Ok(x.site_options())).unwrap_or_default();
    let values = state.store.read_async(move |c| stored::options(c, Scope::Site, &slug)).await?;
    Ok(Json(json!({"plugin": plugin.slug(), "title": plugin.meta().title, "config": form_json(&specs, &values)})))
}

async fn put_site_options(State(state): State<AppState>, headers: HeaderMap, Path(slug): Path<String>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    if !user.is_superuser {
        return Err(ApiError::forbidden("site-wide plugin options are for superusers"));
    }
    let plugin = plugin_or_404(&state, &slug)?;
    let specs = plugin.call("site_options", |x| Ok(x.site_options())).unwrap_or_default();
    let updates = validated_body(&specs, &body)?;
    let s = slug.clone();
    state.store.write(move |c| stored::set_options(c, Scope::Site, &s, &updates)).await?;
    state.plugins.invalidate_all();
    tracing::info!(plugin = %slug, user = %user.email, "site-wide plugin options changed");
    get_site_options(State(state), headers, Path(slug)).await
}

/// The user's own options for a plugin in a project (notification preferences).
async fn get_user_options(State(state): State<AppState>, headers: HeaderMap, Path((org, project, slug)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let plugin = plugin_or_404(&state, &slug)?;
    let specs = plugin.call("user_options", |x| Ok(x.user_options())).unwrap_or_default();
    let scope = Scope::User { project_id: p.id, user_id: user.id };
    let values = state.store.read_async(move |c| stored::options(c, scope, &slug)).await?;
    Ok(Json(json!({"plugin": plugin.slug(), "title": plugin.meta().title, "config": form_json(&specs, &values)})))
}

async fn put_user_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project, slug)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org.clone(), project.clone()).await?;
    let plugin = plugin_or_404(&state, &slug)?;
    let specs = plugin.call("user_options", |x| Ok(x.user_options())).unwrap_or_default();
    let updates = validated_body(&specs, &body)?;
    let scope = Scope::User { project_id: p.id, user_id: user.id };
    let s = slug.clone();
    state.store.write(move |c| stored::set_options(c, scope, &s, &updates)).await?;
    get_user_options(State(state), headers, Path((org, project, slug))).await
}

/// Counts for filters, read from the store on a blocking thread.
struct StoreFilterData<'a> {
    conn: &'a rusqlite::Connection,
    project_id: i64,
}

impl FilterData for StoreFilterData<'_> {
    fn tag_values(&self, key: &str, limit: usize) -> Vec<(String, i64)> {
        stored::project_tag_values(self.conn, self.project_id, key, limit).unwrap_or_default()
    }
    fn status_counts(&self) -> Vec<(String, i64)> {
        stored::status_counts(self.conn, self.project_id).unwrap_or_default()
    }
}

/// The project's filters: registered ones, then those of enabled plugins,
/// then one generated for every other tag key of the project. The first
/// filter to claim a query parameter has it.
fn project_filters(state: &AppState, conn: &rusqlite::Connection, project: &Project) -> picket_store::Result<Vec<std::sync::Arc<dyn EventFilter>>> {
    let mut filters: Vec<std::sync::Arc<dyn EventFilter>> = state.plugins.registry.filters().to_vec();
    let plugins = state.plugins.project_blocking(conn, project.id)?;
    for (p, _) in &plugins.enabled {
        let Some(ctx) = plugins.context(p.slug()) else { continue };
        for f in p.call("get_filters", |pl| pl.get_filters(ctx)).unwrap_or_default() {
            let Some(param) = guarded(p.slug(), || f.query_param()) else { continue };
            if !filters.iter().any(|x| x.query_param() == param) {
                filters.push(std::sync::Arc::from(f));
            }
        }
    }
    for key in stored::project_tag_keys(conn, project.id)? {
        if !filters.iter().any(|f| f.query_param() == key) && !RESERVED_PARAMS.contains(&key.as_str()) {
            filters.push(std::sync::Arc::new(TagFilter::new(&key, None)));
        }
    }
    Ok(filters)
}

/// Query parameters of the issue list that no filter may take.
const RESERVED_PARAMS: &[&str] = &["view", "query", "sort", "cursor", "limit", "expand"];

fn guarded<T>(param: &str, f: impl FnOnce() -> T) -> Option<T> {
    picket_core::plugins::guarded("filter", param, "filter", f)
}

/// Adds the conditions of the filters set in the query string (`?level=error&server_name=web1`)
/// and of the view tab (`?view=exceptions`) to a search. With `use_defaults`
/// (no `query` given), filters that have a default apply it: the status
/// filter's `unresolved` is what makes the stream show unresolved issues.
pub(crate) async fn apply_filters(state: &AppState, project: &Project, params: HashMap<String, String>, use_defaults: bool, search: &mut IssueSearch) -> Result<(), ApiError> {
    if let Some(view) = params.get("view").filter(|v| !v.is_empty()) {
        if !state.plugins.registry.views().iter().any(|v| v.slug() == view) {
            let known: Vec<&str> = state.plugins.registry.views().iter().map(|v| v.slug()).collect();
            return Err(ApiError::bad_request(format!("unknown view '{view}': use one of {}", known.join(", "))));
        }
        search.views.push(view.clone());
    }
    let (st, p) = (state.clone(), project.clone());
    let conditions = state
        .store
        .read_async(move |c| {
            let mut out = Vec::new();
            for f in project_filters(&st, c, &p)? {
                let param = f.query_param();
                if !guarded(&param, || f.targets().contains(&FilterTarget::Issues)).unwrap_or(false) {
                    continue;
                }
                // Present but empty (`?status=`) means "any": no condition, and no default.
                let value = match params.get(&param) {
                    Some(v) if v.is_empty() => None,
                    Some(v) => Some(v.clone()),
                    None if use_defaults => guarded(&param, || f.default_value()).flatten(),
                    None => None,
                };
                if let Some(value) = value {
                    if let Some(cond) = guarded(&param, || f.condition(&value)).flatten() {
                        out.push(cond);
                    }
                }
            }
            Ok(out)
        })
        .await?;
    for c in conditions {
        match c {
            Condition::Status(s) => search.require_status(&s)?,
            Condition::Tag { key, value } => search.tags.push((key, value, false)),
            Condition::View(v) => search.views.push(v),
            Condition::Text(t) => search.text.push(t),
            _ => {}
        }
    }
    Ok(())
}

async fn list_filters(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let st = state.clone();
    let out = state
        .store
        .read_async(move |c| {
            let data = StoreFilterData { conn: c, project_id: p.id };
            let pref = project_ref(&p);
            let ctx = FilterContext::new(&pref, &data);
            let mut out = Vec::new();
            for f in project_filters(&st, c, &p)? {
                let param = f.query_param();
                let Some(label) = guarded(&param, || f.label()) else { continue };
                let Some(targets) = guarded(&param, || f.targets()) else { continue };
                let Some(choices) = guarded(&param, || f.choices(&ctx)).and_then(Result::ok) else { continue };
                let choices: Vec<Choice> = choices.into_iter().take(100).collect();
                let current = params.get(&param).cloned().or_else(|| guarded(&param, || f.default_value()).flatten());
                let others: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| **k != param && k.as_str() != "cursor")
                    .map(|(k, v)| format!("{}={}", picket_plugin_api::filter::url_encode(k), picket_plugin_api::filter::url_encode(v)))
                    .collect();
                let widget = guarded(&param, || f.widget(&others.join("&"), current.as_deref(), &choices)).unwrap_or_default();
                out.push(json!({
                    "param": param,
                    "label": label,
                    "default": guarded(&param, || f.default_value()).flatten(),
                    "current": current,
                    "targets": targets,
                    "choices": choices,
                    "widgetHtml": widget.as_str(),
                }));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(out)))
}

async fn list_views(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    let counts = state.store.read_async(move |c| stored::view_counts(c, pid)).await?;
    let mut out = vec![json!({"slug": null, "name": "All", "namePlural": "All"})];
    for v in state.plugins.registry.views() {
        out.push(json!({"slug": v.slug(), "name": v.name(), "namePlural": v.name_plural(), "count": counts.get(v.slug()).copied().unwrap_or(0)}));
    }
    Ok(Json(Value::Array(out)))
}

async fn rendered_event(State(state): State<AppState>, headers: HeaderMap, Path((org, project, event_id)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let eid = picket_protocol::parse_event_id(&event_id).ok_or_else(|| ApiError::not_found(format!("event '{event_id}' not found")))?;
    let pid = p.id;
    let event = state.store.read_async(move |c| query::event(c, pid, &eid)).await?.ok_or_else(|| ApiError::not_found(format!("event '{event_id}' not found")))?;
    let data = event.data.as_object().cloned().unwrap_or_default();
    let registry = state.plugins.registry;
    let html = picket_core::interfaces::render_html(registry, &data);
    let text = picket_core::interfaces::render_text(registry, &data);
    Ok(Json(json!({
        "eventID": event.event_id,
        "interfaces": html.iter().map(|(key, title, html)| json!({
            "key": key,
            "title": title,
            "html": html.as_str(),
            "text": text.iter().find(|(k, _, _)| k == key).map(|(_, _, s)| s),
        })).collect::<Vec<_>>(),
    })))
}

/// Plugin tags for a page of the issue stream: each enabled plugin's
/// `before_events` once with the page, then its `tags` for each issue.
/// Issue id → `[{plugin, html}]`.
pub(crate) async fn stream_tags(state: &AppState, project: &Project, user: &User, role: &str, issues: &[Issue]) -> Result<HashMap<i64, Vec<Value>>, ApiError> {
    let (st, project, issues, uref) = (state.clone(), project.clone(), issues.to_vec(), user_ref(user, role));
    let out = state
        .store
        .read_async(move |c| {
            let plugins = st.plugins.project_blocking(c, project.id)?;
            let refs: Vec<_> = issues.iter().map(|i| issue_ref(&st.settings.url_prefix, i, &project)).collect();
            let ids: Vec<i64> = issues.iter().map(|i| i.id).collect();
            let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
            for (p, options) in &plugins.enabled {
                let list = IssueListContext::new(plugins.project.clone(), refs.clone(), options.clone());
                p.call("before_events", |pl| pl.before_events(&list));
                let mut meta = stored::issue_meta_bulk(c, &ids, p.slug())?;
                for r in &refs {
                    let url = format!("/api/0/issues/{}/plugins/{}/", r.id, p.slug());
                    let mut ctx = IssueContext::new(plugins.project.clone(), r.clone(), uref.clone(), options.clone(), url);
                    ctx.site_options = plugins.site_options(p.slug());
                    ctx.meta = meta.remove(&r.id).unwrap_or_default();
                    for t in p.call("tags", |pl| pl.tags(&ctx)).unwrap_or_default() {
                        out.entry(r.id).or_default().push(json!({"plugin": p.slug(), "html": t.as_str()}));
                    }
                }
            }
            Ok(out)
        })
        .await?;
    Ok(out)
}

/// Builds a plugin's issue context (its options and meta, the latest event).
fn issue_context(state: &AppState, conn: &rusqlite::Connection, p: &RegisteredPlugin, issue: &Issue, project: &Project, user: &UserRef, latest: Option<&picket_plugin_api::Event>) -> picket_store::Result<IssueContext> {
    let url = format!("/api/0/issues/{}/plugins/{}/", issue.id, p.slug());
    let plugins = state.plugins.project_blocking(conn, project.id)?;
    let options = plugins.options(p.slug()).cloned().unwrap_or_default();
    let mut ctx = IssueContext::new(project_ref(project), issue_ref(&state.settings.url_prefix, issue, project), user.clone(), options, url);
    ctx.meta = stored::issue_meta(conn, issue.id, p.slug())?;
    ctx.site_options = plugins.site_options(p.slug());
    ctx.event = latest.cloned();
    Ok(ctx)
}

/// The issue page's plugin slots: tags, actions (for those who may act), panels and widgets.
async fn issue_slots(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, project, role) = issue_for(&state, &user, &id).await?;
    let can_admin = can_admin_event(&state, &user, &role, &project, issue.id).await?;
    let uref = user_ref(&user, &role);
    let st = state.clone();
    let out = state
        .store
        .read_async(move |c| {
            let plugins = st.plugins.project_blocking(c, project.id)?;
            let latest = query::latest_event(c, issue.id)?.map(|e| picket_plugin_api::Event::from_data(project.id, e.data.as_object().cloned().unwrap_or_default()));
            let (mut tags, mut actions, mut panels, mut widgets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let link = |slug: &str, l: Link| json!({"plugin": slug, "label": l.label, "url": l.url});
            for (p, options) in &plugins.enabled {
                let ctx = issue_context(&st, c, p, &issue, &project, &uref, latest.as_ref())?;
                let list = IssueListContext::new(ctx.project.clone(), vec![ctx.issue.clone()], options.clone());
                p.call("before_events", |pl| pl.before_events(&list));
                for t in p.call("tags", |pl| pl.tags(&ctx)).unwrap_or_default() {
                    tags.push(json!({"plugin": p.slug(), "html": t.as_str()}));
                }
                if can_admin {
                    actions.extend(p.call("actions", |pl| pl.actions(&ctx)).unwrap_or_default().into_iter().map(|l| link(p.slug(), l)));
                }
                panels.extend(p.call("panels", |pl| pl.panels(&ctx)).unwrap_or_default().into_iter().map(|l| link(p.slug(), l)));
                if let Some(Some(w)) = p.call("widget", |pl| pl.widget(&ctx)) {
                    if !w.is_empty() {
                        widgets.push(json!({"plugin": p.slug(), "title": p.meta().title, "html": w.as_str()}));
                    }
                }
            }
            Ok(json!({"tags": tags, "actions": actions, "panels": panels, "widgets": widgets, "canAdmin": can_admin}))
        })
        .await?;
    Ok(Json(out))
}

async fn plugin_view(State(state): State<AppState>, headers: HeaderMap, Path((id, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    run_view(state, headers, id, slug, "GET", Map::new()).await
}

/// A form (`application/x-www-form-urlencoded`) or a JSON object.
async fn plugin_view_post(State(state): State<AppState>, headers: HeaderMap, Path((id, slug)): Path<(String, String)>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let is_form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let form: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else if is_form {
        parse_form(&body)
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; send a JSON object or a form")))?
    };
    run_view(state, headers, id, slug, "POST", form).await
}

fn parse_form(body: &[u8]) -> Map<String, Value> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let decode = |s: &[u8]| {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split(|b| *b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = match kv.iter().position(|b| *b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, &b""[..]),
            };
            (decode(k), Value::String(decode(v)))
        })
        .collect()
}

async fn run_view(state: AppState, headers: HeaderMap, id: String, slug: String, method: &'static str, form: Map<String, Value>) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, project, role) = issue_for(&state, &user, &id).await?;
    plugin_or_404(&state, &slug)?;
    let can_admin = can_admin_event(&state, &user, &role, &project, issue.id).await?;
    if method == "POST" && !can_admin {
        return Err(ApiError::forbidden("you may not act on this issue: your role does not allow it, or a plugin vetoed it (admin_event)"));
    }
    let uref = user_ref(&user, &role);
    let st = state.clone();
    let (issue_id, s, back_org) = (issue.id, slug.clone(), project.org_slug.clone());
    let response = state
        .store
        .read_async(move |c| {
            let plugins = st.plugins.project_blocking(c, project.id)?;
            let Some((p, _)) = plugins.enabled.iter().find(|(p, _)| p.slug() == s) else {
                return Err(picket_store::StoreError::Missing {
                    what: format!("plugin '{s}' in this project"),
                    fix: format!("it is not enabled here; enable it with PUT /api/0/projects/{}/{}/plugins/{s}/ {{\"enabled\": true}}", project.org_slug, project.slug),
                });
            };
            let latest = query::latest_event(c, issue.id)?.map(|e| picket_plugin_api::Event::from_data(project.id, e.data.as_object().cloned().unwrap_or_default()));
            let ctx = issue_context(&st, c, p, &issue, &project, &uref, latest.as_ref())?;
            let view = ViewContext::new(ctx, method, form, can_admin);
            Ok(p.try_call("view", |pl| pl.view(&view)))
        })
        .await?;
    let response = match response {
        Ok(r) => r,
        Err(e) if e.is_user_error() => return Err(ApiError::bad_request(e.message().to_string())),
        Err(e) => return Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("plugin '{slug}' failed: {e}"))),
    };
    // The issue's page in the web interface.
    let back = format!("{}/organizations/{}/issues/{issue_id}/", state.settings.url_prefix.trim_end_matches('/'), back_org);
    let Some(response) = response else { return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, back)]).into_response()) };
    if !response.meta_updates.is_empty() {
        let (updates, s) = (response.meta_updates.clone(), slug.clone());
        state.store.write(move |c| stored::set_issue_meta(c, issue_id, &s, &updates)).await?;
    }
    Ok(match response.body {
        ViewBody::Page { title, html } => {
            let page = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><main class=\"plugin-page\" data-plugin=\"{}\">{}</main></body></html>",
                picket_plugin_api::html::escape(&title),
                picket_plugin_api::html::escape(&slug),
                html.as_str()
            );
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    // Plugin pages may not run scripts from anywhere but Picket itself.
                    (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'self'"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                page,
            )
                .into_response()
        }
        ViewBody::Redirect(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response(),
        ViewBody::Json(v) => Json(v).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_form;
    use serde_json::json;

    #[test]
    fn forms_decode_plus_and_percent_escapes() {
        let f = parse_form(b"title=Fix+it&description=see+%3Cissue%3E+100%25&empty=&flag&bad=%zz%4");
        assert_eq!(f["title"], json!("Fix it"));
        assert_eq!(f["description"], json!("see <issue> 100%"));
        assert_eq!(f["empty"], json!(""));
        assert_eq!(f["flag"], json!(""));
        assert_eq!(f["bad"], json!("%zz%4"));
    }

    proptest::proptest! {
        #[test]
        fn any_body_decodes_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_form(&raw);
        }

        #[test]
        fn encoded_values_round_trip(v in "\\PC{0,40}") {
            let encoded = picket_plugin_api::filter::url_encode(&v);
            proptest::prop_assert_eq!(&parse_form(format!("k={encoded}").as_bytes())["k"], &json!(v));
        }
    }
}
