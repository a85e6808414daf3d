//! A generic HTTP issue tracker on the public [`IssueTracker`] base: creating
//! a ticket POSTs `{title, description, issue}` as JSON to the configured
//! endpoint, which answers `{"id": "...", "url": "..."}`; linking an
//! existing ticket builds its URL from a template.

use picket_plugin_api::bases::{IssueTracker, IssueTrackerPlugin, NewTicket, Ticket};
use picket_plugin_api::{register_plugin, HookResult, IssueContext, OptionKind, OptionSpec, PluginError, PluginMeta};
use serde_json::{json, Value};

use crate::http;

/// Generic HTTP issue tracker.
#[derive(Default)]
pub struct HttpTracker;
register_plugin!(IssueTrackerPlugin<HttpTracker>);

impl IssueTracker for HttpTracker {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Issue Tracker (HTTP)")
            .slug("issue-tracker")
            .description("Creates a ticket in your tracker from an issue, by POSTing JSON to an endpoint you provide, or links an existing one.")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Picket", None)
            .plugin_type("issue-tracking")
    }
    fn project_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("endpoint", "Endpoint", OptionKind::Url).required().help("Receives {title, description, issue} and answers {id, url}."),
            OptionSpec::new("token", "Bearer token", OptionKind::Secret),
            OptionSpec::new("ticket_url", "Ticket URL template", OptionKind::Text).help("For linked tickets: {id} is replaced by the ticket's id, e.g. https://tracker.example/{id}."),
            OptionSpec::new("label_prefix", "Ticket label prefix", OptionKind::Text).default_value("#"),
        ]
    }
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![http::allow_private_option()]
    }
    fn is_configured(&self, ctx: &IssueContext) -> bool {
        ctx.options.str("endpoint").is_some()
    }
    fn create_ticket(&self, ctx: &IssueContext, ticket: &NewTicket) -> HookResult<Ticket> {
        let endpoint = ctx.options.str("endpoint").ok_or_else(|| PluginError::permanent("no endpoint configured"))?;
        let body = json!({"title": ticket.title, "description": ticket.description, "issue": {"id": ctx.issue.id, "url": ctx.issue.url, "project": ctx.project.slug}});
        let mut headers = Vec::new();
        if let Some(t) = ctx.options.str("token") {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        let resp = http::post_json(endpoint, &serde_json::to_vec(&body).map_err(PluginError::permanent)?, &headers, http::allows_private(&ctx.site_options))?;
        let answer: Value = serde_json::from_str(&resp.body).map_err(|e| PluginError::permanent(format!("the tracker's answer is not JSON: {e}")))?;
        let id = answer.get("id").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).ok_or_else(|| PluginError::permanent("the tracker's answer has no 'id'"))?;
        let url = answer.get("url").and_then(Value::as_str).map(str::to_string).or_else(|| self.ticket_url(ctx, &id));
        Ok(Ticket::new(id, url))
    }
    fn ticket_url(&self, ctx: &IssueContext, id: &str) -> Option<String> {
        let template = ctx.options.str("ticket_url")?;
        Some(template.replace("{id}", &picket_plugin_api::filter::url_encode(id)))
    }
    fn ticket_label(&self, ctx: &IssueContext, id: &str) -> String {
        format!("{}{id}", ctx.options.str("label_prefix").unwrap_or("#"))
    }
}
