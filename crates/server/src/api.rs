//! The web API under `/api/0/`, shaped like Sentry's: bearer tokens,
//! camelCase fields, cursor pagination with a `Link` header.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use picket_core::normalize::format_timestamp;
use picket_store::accounts::{self, Project, User};
use picket_store::query::{self, Issue, IssueSearch, IssueSort, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiQuery};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/0/projects/", get(list_projects))
        .route("/api/0/projects/{org}/{project}/", get(get_project).delete(delete_project))
        .route("/api/0/projects/{org}/{project}/keys/", get(list_keys))
        .route("/api/0/projects/{org}/{project}/issues/", get(list_issues))
        .route("/api/0/projects/{org}/{project}/events/{event_id}/", get(get_event))
        .route("/api/0/projects/{org}/{project}/events/{event_id}/attachments/", get(list_attachments))
        .route("/api/0/projects/{org}/{project}/events/{event_id}/attachments/{id}/", get(get_attachment))
        .route("/api/0/projects/{org}/{project}/user-feedback/", get(list_feedback))
        .route("/api/0/projects/{org}/{project}/transactions/", get(list_transactions))
        .route("/api/0/projects/{org}/{project}/sessions/", get(session_stats))
        .route("/api/0/projects/{org}/{project}/monitors/{slug}/checkins/", get(list_check_ins))
        .route("/api/0/projects/{org}/{project}/stats/", get(item_stats))
        .route("/api/0/issues/{id}/", get(get_issue).put(update_issue).delete(delete_issue))
        .route("/api/0/issues/{id}/events/", get(issue_events))
        .route("/api/0/issues/{id}/events/latest/", get(latest_event))
        .route("/api/0/issues/{id}/tags/", get(issue_tags))
        .route("/api/0/issues/{id}/tags/{key}/values/", get(tag_values))
}

/// Roles that may change issues (resolve, delete).
pub(crate) const WRITE_ROLES: &[&str] = &["member", "admin", "owner"];

/// Roles that may delete issues and projects and configure plugins.
pub(crate) const ADMIN_ROLES: &[&str] = &["admin", "owner"];

pub(crate) async fn authed_user(state: &AppState, headers: &HeaderMap) -> Result<User, ApiError> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("authentication required: send 'Authorization: Bearer <token>' (create one with: picket token create --email ...)"))?
        .to_string();
    state
        .store
        .read_async(move |c| accounts::user_for_token(c, &token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid API token"))
}

/// The project, if the user may see it (404 otherwise, so that existence does not leak).
pub(crate) async fn project_for(state: &AppState, user: &User, org: String, slug: String) -> Result<(Project, String), ApiError> {
    let user = user.clone();
    state
        .store
        .read_async(move |c| {
            let p = accounts::project_by_slug(c, &org, &slug)?;
            match accounts::role_in_org(c, &user, p.org_id)? {
                Some(role) => Ok((p, role)),
                None => Err(picket_store::StoreError::NotFound(format!("project '{org}/{slug}'"))),
            }
        })
        .await
        .map_err(Into::into)
}

pub(crate) async fn issue_for(state: &AppState, user: &User, id: &str) -> Result<(Issue, Project, String), ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found(format!("issue '{id}' not found")))?;
    let user = user.clone();
    state
        .store
        .read_async(move |c| {
            let issue = query::issue(c, id)?;
            let p = accounts::project_by_id(c, issue.project_id)?;
            match accounts::role_in_org(c, &user, p.org_id)? {
                Some(role) => Ok((issue, p, role)),
                None => Err(picket_store::StoreError::NotFound(format!("issue {id}"))),
            }
        })
        .await
        .map_err(Into::into)
}

fn project_json(p: &Project) -> Value {
    json!({
        "id": p.id.to_string(),
        "slug": p.slug,
        "name": p.name,
        "platform": p.platform,
        "dateCreated": format_timestamp(p.created_at),
        "organization": {"slug": p.org_slug},
    })
}

async fn list_projects(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let projects = state.store.read_async(move |c| accounts::projects_for_user(c, &user)).await?;
    Ok(Json(Value::Array(projects.iter().map(project_json).collect())))
}

async fn get_project(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    Ok(Json(project_json(&p)))
}

/// `DELETE`: admins and owners (unless a plugin vetoes `remove_project`).
/// The keys go and the project disappears at once; its data is deleted in
/// the background. `204 No Content`, as Sentry answers.
async fn delete_project(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<StatusCode, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, role) = project_for(&state, &user, org, project).await?;
    let by_role = ADMIN_ROLES.contains(&role.as_str());
    let ctx = crate::plugin_api::perm_context(&user, &role, picket_plugin_api::Permission::RemoveProject, &p);
    if !crate::plugin_api::allowed(&state, p.id, &ctx, by_role).await? {
        return Err(ApiError::forbidden(if by_role {
            "a plugin enabled in this project vetoes remove_project: ask a superuser, or switch the plugin off".to_string()
        } else {
            format!("only an admin or owner of {} may delete a project", p.org_slug)
        }));
    }
    let pid = p.id;
    state.store.write(move |c| accounts::start_project_deletion(c, pid)).await?;
    state.keys.forget_project(pid);
    tracing::info!(project = %format!("{}/{}", p.org_slug, p.slug), user = %user.email, "project deletion started");
    crate::retention::spawn_deletion(state.store.clone(), crate::retention::Doomed::Project(pid));
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    let keys = state.store.read_async(move |c| accounts::keys_for_project(c, pid)).await?;
    let prefix = &state.settings.url_prefix;
    Ok(Json(Value::Array(
        keys.iter()
            .map(|k| {
                let dsn = picket_protocol::dsn::build_dsn(prefix, &k.public_key, k.project_id);
                json!({
                    "id": k.public_key,
                    "name": k.label,
                    "label": k.label,
                    "public": k.public_key,
                    "isActive": k.is_active,
                    "projectId": k.project_id,
                    "dateCreated": format_timestamp(k.created_at),
                    "rateLimit": k.rate_limit_count.zip(k.rate_limit_window).map(|(count, window)| json!({"count": count, "window": window})),
                    "dsn": {"public": dsn, "secret": dsn, "csp": format!("{}/api/{}/security/?sentry_key={}", prefix.trim_end_matches('/'), k.project_id, k.public_key)},
                })
            })
            .collect(),
    )))
}

/// `cursor=0:{offset}:{is_prev}` as Sentry's offset cursors.
#[derive(Debug, Deserialize, Default)]
struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
}

impl Page {
    fn offset(&self) -> usize {
        self.cursor.as_deref().and_then(|c| c.split(':').nth(1)).and_then(|o| o.parse().ok()).unwrap_or(0)
    }
    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 100)
    }
}

/// Builds a paginated response: `rows` has one more item than `limit` when there is a next page.
fn paginated(state: &AppState, path: &str, raw_query: Option<&str>, page: &Page, mut rows: Vec<Value>) -> Response {
    let (offset, limit) = (page.offset(), page.limit());
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    let base_query: Vec<&str> = raw_query.unwrap_or_default().split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("cursor=")).collect();
    let link = |cursor: String, rel: &str, results: bool| {
        let mut q = base_query.clone();
        let c = format!("cursor={cursor}");
        q.push(&c);
        format!("<{}{}?{}>; rel=\"{rel}\"; results=\"{results}\"; cursor=\"{cursor}\"", state.settings.url_prefix.trim_end_matches('/'), path, q.join("&"))
    };
    let prev = link(format!("0:{}:1", offset.saturating_sub(limit)), "previous", offset > 0);
    let next = link(format!("0:{}:0", offset + limit), "next", has_next);
    let mut resp = Json(Value::Array(rows)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{prev}, {next}")) {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

fn issue_json(state: &AppState, i: &Issue, p: &Project) -> Value {
    json!({
        "id": i.id.to_string(),
        "shortId": format!("{}-{}", p.slug.to_uppercase(), i.short_id),
        "title": i.title,
        "culprit": i.culprit,
        "permalink": format!("{}/organizations/{}/issues/{}/", state.settings.url_prefix.trim_end_matches('/'), p.org_slug, i.id),
        "level": i.level,
        "status": i.status,
        "substatus": i.substatus,
        "isRegression": i.substatus.as_deref() == Some("regressed"),
        "statusDetails": {},
        "platform": i.platform,
        "logger": i.logger,
        "type": i.event_type,
        "metadata": i.metadata,
        "count": i.times_seen.to_string(),
        "userCount": i.user_count,
        "firstSeen": format_timestamp(i.first_seen),
        "lastSeen": format_timestamp(i.last_seen),
        "firstRelease": i.first_release.as_ref().map(|r| json!({"version": r})),
        "project": {"id": p.id.to_string(), "slug": p.slug, "name": p.name},
        "numComments": 0,
        "isPublic": false,
    })
}

#[derive(Debug, Deserialize)]
struct IssueListParams {
    query: Option<String>,
    sort: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    /// Other parameters: the stream's filters (`level=error`) and view tab (`view=exceptions`).
    #[serde(flatten)]
    filters: std::collections::HashMap<String, String>,
}

async fn list_issues(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<IssueListParams>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, role) = project_for(&state, &user, org.clone(), project.clone()).await?;
    // Sentry's default stream shows unresolved issues; `query=` (empty) shows all.
    // Without `query`, the filters' defaults apply (the status filter's: unresolved issues).
    let mut search = IssueSearch::parse(params.query.as_deref().unwrap_or(""))?;
    crate::plugin_api::apply_filters(&state, &p, params.filters, params.query.is_none(), &mut search).await?;
    let sort = IssueSort::parse(params.sort.as_deref().unwrap_or("date"))
        .ok_or_else(|| ApiError::bad_request(format!("unknown sort '{}': use date, new, freq or user", params.sort.as_deref().unwrap_or_default())))?;
    let page = Page { cursor: params.cursor, limit: params.limit };
    let (offset, limit, pid) = (page.offset(), page.limit(), p.id);
    let issues = state.store.read_async(move |c| query::list_issues(c, pid, &search, sort, offset, limit)).await?;
    let mut tags = crate::plugin_api::stream_tags(&state, &p, &user, &role, &issues[..issues.len().min(limit)]).await?;
    let rows = issues
        .iter()
        .map(|i| {
            let mut v = issue_json(&state, i, &p);
            v["pluginTags"] = Value::Array(tags.remove(&i.id).unwrap_or_default());
            v
        })
        .collect();
    Ok(paginated(&state, &format!("/api/0/projects/{org}/{project}/issues/"), raw.as_deref(), &page, rows))
}

async fn get_issue(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, p, _) = issue_for(&state, &user, &id).await?;
    let iid = issue.id;
    let (tags, hourly) = state
        .store
        .read_async(move |c| {
            Ok((query::tag_keys(c, iid)?, query::hourly_counts(c, iid, 24)?))
        })
        .await?;
    let mut v = issue_json(&state, &issue, &p);
    v["tags"] = Value::Array(tags.iter().map(|(k, total, distinct)| json!({"key": k, "name": k, "totalValues": total, "uniqueValues": distinct})).collect());
    v["stats"] = json!({"24h": hourly.iter().map(|(h, c)| json!([h, c])).collect::<Vec<_>>()});
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct IssueUpdate {
    status: Option<String>,
}

async fn update_issue(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, p, role) = issue_for(&state, &user, &id).await?;
    if !crate::plugin_api::can_admin_event(&state, &user, &role, &p, issue.id).await? {
        return Err(ApiError::forbidden("you may not change this issue: your role does not allow it, or a plugin vetoed it (admin_event)"));
    }
    let update: IssueUpdate = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}; expected {{\"status\": \"resolved\"}}")))?;
    let iid = issue.id;
    if let Some(status) = update.status {
        let status = if status == "resolvedInNextRelease" { "resolved".to_string() } else { status };
        state.store.write(move |c| query::set_issue_status(c, iid, &status)).await?;
    }
    let issue = state.store.read_async(move |c| query::issue(c, iid)).await?;
    Ok(Json(issue_json(&state, &issue, &p)))
}

async fn delete_issue(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, p, role) = issue_for(&state, &user, &id).await?;
    let mut ctx = crate::plugin_api::perm_context(&user, &role, picket_plugin_api::Permission::AdminEvent, &p);
    ctx.issue_id = Some(issue.id);
    if !crate::plugin_api::allowed(&state, p.id, &ctx, ADMIN_ROLES.contains(&role.as_str())).await? {
        return Err(ApiError::forbidden("deleting issues needs the admin or owner role (or a plugin vetoed admin_event)"));
    }
    // The issue disappears at once; its events go in the background, in
    // paced chunks, so that deleting a large issue does not hold up ingest.
    let iid = issue.id;
    state.store.write(move |c| query::start_issue_deletion(c, iid)).await?;
    tracing::info!(issue_id = iid, user = %user.email, "issue deletion started");
    crate::retention::spawn_deletion(state.store.clone(), crate::retention::Doomed::Issue(iid));
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The event as Sentry's API shows it: interfaces as `entries`.
fn event_json(e: &StoredEvent, full: bool) -> Value {
    let d = e.data.as_object().cloned().unwrap_or_default();
    let get = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
    let tags: Vec<Value> = d
        .get("tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some(json!({"key": p.get(0)?, "value": p.get(1)?})))
        .collect();
    let message = d
        .get("logentry")
        .and_then(|l| l.get("formatted").or_else(|| l.get("message")))
        .cloned()
        .unwrap_or_else(|| json!(""));
    let mut v = json!({
        "id": e.event_id,
        "eventID": e.event_id,
        "groupID": e.issue_id.map(|i| i.to_string()),
        "projectID": e.project_id.to_string(),
        "title": get("title"),
        "message": message,
        "culprit": get("culprit"),
        "platform": get("platform"),
        "type": get("type"),
        "level": get("level"),
        "dateCreated": format_timestamp(e.timestamp),
        "dateReceived": format_timestamp(e.received),
        "release": get("release"),
        "environment": get("environment"),
        "dist": get("dist"),
        "logger": get("logger"),
        "transaction": get("transaction"),
        "tags": tags,
        "user": get("user"),
        "sdk": get("sdk"),
    });
    if full {
        // Every registered interface but contexts (shown apart), in score order,
        // named as Sentry names its entries.
        let mut entries = Vec::new();
        let mut entry_keys: Vec<&str> = Vec::new();
        for iface in picket_plugin_api::Registry::global().interfaces() {
            let key = iface.key();
            if key == "contexts" {
                continue;
            }
            if let Some(data) = d.get(key).filter(|v| !v.is_null()) {
                let ty = match key {
                    "logentry" => "message",
                    "debug_meta" => "debugmeta",
                    other => other,
                };
                entries.push(json!({"type": ty, "data": data}));
                entry_keys.push(key);
            }
        }
        v["entries"] = Value::Array(entries);
        v["contexts"] = d.get("contexts").cloned().unwrap_or_else(|| json!({}));
        v["context"] = d.get("extra").cloned().unwrap_or_else(|| json!({}));
        v["fingerprints"] = get("fingerprint");
        v["errors"] = d.get("errors").cloned().unwrap_or_else(|| json!([]));
        v["modules"] = get("modules");
        // Everything not mapped above, so that no data sent is hidden.
        let known = ["event_id", "title", "logentry", "culprit", "platform", "type", "level", "timestamp", "received", "release", "environment", "dist",
            "logger", "transaction", "tags", "user", "sdk", "exception", "threads", "stacktrace", "template", "breadcrumbs", "request", "csp",
            "query", "debug_meta", "contexts", "extra", "fingerprint", "errors", "modules"];
        let other: Map<String, Value> = d.iter().filter(|(k, _)| !known.contains(&k.as_str()) && !entry_keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        v["data"] = Value::Object(other);
    }
    v
}

async fn issue_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, _, _) = issue_for(&state, &user, &id).await?;
    let (iid, offset, limit) = (issue.id, page.offset(), page.limit());
    let events = state.store.read_async(move |c| query::issue_events(c, iid, offset, limit)).await?;
    let rows = events.iter().map(|e| event_json(e, false)).collect();
    Ok(paginated(&state, &format!("/api/0/issues/{id}/events/"), raw.as_deref(), &page, rows))
}

async fn latest_event(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, _, _) = issue_for(&state, &user, &id).await?;
    let iid = issue.id;
    let event = state.store.read_async(move |c| query::latest_event(c, iid)).await?.ok_or_else(|| ApiError::not_found("the issue has no events"))?;
    Ok(Json(event_json(&event, true)))
}

async fn get_event(State(state): State<AppState>, headers: HeaderMap, Path((org, project, event_id)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let eid = picket_protocol::parse_event_id(&event_id).ok_or_else(|| ApiError::not_found(format!("event '{event_id}' not found")))?;
    let pid = p.id;
    let event = state.store.read_async(move |c| query::event(c, pid, &eid)).await?.ok_or_else(|| ApiError::not_found(format!("event '{event_id}' not found")))?;
    Ok(Json(event_json(&event, true)))
}

async fn issue_tags(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, _, _) = issue_for(&state, &user, &id).await?;
    let iid = issue.id;
    let keys = state.store.read_async(move |c| query::tag_keys(c, iid)).await?;
    Ok(Json(Value::Array(keys.iter().map(|(k, total, distinct)| json!({"key": k, "name": k, "totalValues": total, "uniqueValues": distinct})).collect())))
}

async fn tag_values(State(state): State<AppState>, headers: HeaderMap, Path((id, key)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (issue, _, _) = issue_for(&state, &user, &id).await?;
    let iid = issue.id;
    let values = state.store.read_async(move |c| query::tag_values(c, iid, &key, 1000)).await?;
    Ok(Json(Value::Array(
        values
            .iter()
            .map(|t| json!({"key": t.key, "value": t.value, "name": t.value, "count": t.times_seen, "firstSeen": format_timestamp(t.first_seen), "lastSeen": format_timestamp(t.last_seen)}))
            .collect(),
    )))
}

async fn list_attachments(State(state): State<AppState>, headers: HeaderMap, Path((org, project, event_id)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let eid = picket_protocol::parse_event_id(&event_id).unwrap_or(event_id);
    let pid = p.id;
    let list = state.store.read_async(move |c| query::attachments(c, pid, &eid)).await?;
    Ok(Json(Value::Array(
        list.iter()
            .map(|a| json!({"id": a.id.to_string(), "eventId": a.event_id, "name": a.name, "mimetype": a.content_type, "type": a.attachment_type, "size": a.size, "dateCreated": format_timestamp(a.created_at)}))
            .collect(),
    )))
}

/// `?download=1` returns the bytes; otherwise the description.
async fn get_attachment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project, event_id, id)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let eid = picket_protocol::parse_event_id(&event_id).unwrap_or(event_id);
    let aid: i64 = id.parse().map_err(|_| ApiError::not_found("attachment not found"))?;
    let pid = p.id;
    let (info, data) = state
        .store
        .read_async(move |c| {
            let info = query::attachments(c, pid, &eid)?.into_iter().find(|a| a.id == aid).ok_or_else(|| picket_store::StoreError::NotFound(format!("attachment {aid}")))?;
            let data = query::attachment_data(c, pid, &eid, aid)?;
            Ok((info, data))
        })
        .await?;
    // Served as a download, never rendered: attachment bytes are untrusted.
    let disposition = format!("attachment; filename=\"{}\"", info.name.replace(['"', '\\', '\r', '\n'], "_"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        data,
    )
        .into_response())
}

async fn list_feedback(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    Ok(Json(Value::Array(state.store.read_async(move |c| query::user_reports(c, pid, None)).await?)))
}

async fn list_transactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((org, project)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<Page>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org.clone(), project.clone()).await?;
    let (pid, offset, limit) = (p.id, page.offset(), page.limit());
    let rows = state.store.read_async(move |c| query::transactions(c, pid, offset, limit)).await?;
    Ok(paginated(&state, &format!("/api/0/projects/{org}/{project}/transactions/"), raw.as_deref(), &page, rows))
}

async fn session_stats(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    Ok(Json(Value::Array(state.store.read_async(move |c| query::session_stats(c, pid)).await?)))
}

async fn list_check_ins(State(state): State<AppState>, headers: HeaderMap, Path((org, project, slug)): Path<(String, String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    Ok(Json(Value::Array(state.store.read_async(move |c| query::check_ins(c, pid, Some(&slug))).await?)))
}

async fn item_stats(State(state): State<AppState>, headers: HeaderMap, Path((org, project)): Path<(String, String)>) -> Result<Json<Value>, ApiError> {
    let user = authed_user(&state, &headers).await?;
    let (p, _) = project_for(&state, &user, org, project).await?;
    let pid = p.id;
    let mut stats = state.store.read_async(move |c| query::item_stats(c, pid)).await?;
    stats["events"] = json!(state.store.read_async(move |c| query::count_events(c, pid)).await?);
    Ok(Json(stats))
}
