//! The issue-tracker base (the classic IssuePlugin) with a generic HTTP
//! implementation: an issue's actions offer "Create ticket"; the plugin's page
//! shows a form (title and description prefilled from the issue); submitting
//! it POSTs JSON to the configured endpoint, which answers `{"id": "...",
//! "url": "..."}`. The ticket is remembered with the issue and shown as a
//! tag linking to it.

use picket_plugin_api::html::escape;
use picket_plugin_api::{register_plugin, HookResult, Html, IssueContext, Link, OptionKind, OptionSpec, Plugin, PluginError, PluginMeta, ViewContext, ViewResponse};
use serde_json::{json, Value};

use crate::http;

/// Generic HTTP issue tracker.
#[derive(Default)]
pub struct HttpTrackerPlugin;
register_plugin!(HttpTrackerPlugin);

const TID: &str = "tid";
const TURL: &str = "url";

impl Plugin for HttpTrackerPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Issue Tracker (HTTP)")
            .slug("issue-tracker")
            .description("Creates a ticket in your tracker from an issue, by POSTing JSON to an endpoint you provide, and links the issue to it.")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Picket", None)
            .plugin_type("issue-tracking")
    }
    fn project_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("endpoint", "Endpoint", OptionKind::Url).required().help("Receives {title, description, issue} and answers {id, url}."),
            OptionSpec::new("token", "Bearer token", OptionKind::Secret),
            OptionSpec::new("label_prefix", "Ticket label prefix", OptionKind::Text).default_value("#"),
        ]
    }
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![http::allow_private_option()]
    }
    fn actions(&self, ctx: &IssueContext) -> HookResult<Vec<Link>> {
        Ok(if ctx.meta.contains_key(TID) || ctx.options.str("endpoint").is_none() { vec![] } else { vec![Link::new("Create ticket", ctx.plugin_url.clone())] })
    }
    fn tags(&self, ctx: &IssueContext) -> HookResult<Vec<Html>> {
        let Some(id) = ctx.meta.get(TID) else { return Ok(vec![]) };
        let label = format!("{}{id}", ctx.options.str("label_prefix").unwrap_or("#"));
        Ok(vec![match ctx.meta.get(TURL).filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
            Some(url) => Html::trusted(format!("<a class=\"ticket\" href=\"{}\" rel=\"noopener noreferrer\">{}</a>", escape(url), escape(&label))),
            None => Html::text(&label),
        }])
    }
    fn view(&self, ctx: &ViewContext) -> HookResult<Option<ViewResponse>> {
        let ictx = &ctx.issue;
        let Some(endpoint) = ictx.options.str("endpoint") else {
            return Ok(Some(ViewResponse::page("Issue tracker", Html::text("Configure the endpoint of this plugin in the project's settings first."))));
        };
        if let Some(id) = ictx.meta.get(TID) {
            return Ok(Some(ViewResponse::page("Ticket", Html::trusted(format!("<p>This issue is linked to ticket <b>{}</b>.</p>", escape(id))))));
        }
        let title = ctx.form.get("title").and_then(Value::as_str).unwrap_or(&ictx.issue.title).to_string();
        let description = ctx.form.get("description").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{}\n\n{}", ictx.issue.culprit, ictx.issue.url));
        if ctx.method != "POST" {
            let form = format!(
                "<form method=\"post\"><label>Title <input name=\"title\" value=\"{}\"></label><label>Description <textarea name=\"description\">{}</textarea></label><button type=\"submit\">Create ticket</button></form>",
                escape(&title),
                escape(&description)
            );
            return Ok(Some(ViewResponse::page("Create ticket", Html::trusted(form))));
        }
        if title.trim().is_empty() {
            return Err(PluginError::permanent("a ticket needs a title"));
        }
        let body = json!({"title": title, "description": description, "issue": {"id": ictx.issue.id, "url": ictx.issue.url, "project": ictx.project.slug}});
        let mut headers = Vec::new();
        if let Some(t) = ictx.options.str("token") {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        let resp = http::post_json(endpoint, &serde_json::to_vec(&body).map_err(PluginError::permanent)?, &headers, http::allows_private(&ictx.site_options))?;
        let answer: Value = serde_json::from_str(&resp.body).map_err(|e| PluginError::permanent(format!("the tracker's answer is not JSON: {e}")))?;
        let id = answer.get("id").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).ok_or_else(|| PluginError::permanent("the tracker's answer has no 'id'"))?;
        let url = answer.get("url").and_then(Value::as_str);
        Ok(Some(ViewResponse::redirect(ictx.issue.url.clone()).set_meta(TID, Some(&id)).set_meta(TURL, url)))
    }
}
