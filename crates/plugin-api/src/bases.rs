//! Bases for common kinds of plugin, built on [`Plugin`]: implement the
//! small trait, wrap it, register the wrapper.
//!
//! - [`IssueTracker`] + [`IssueTrackerPlugin`]: the classic IssuePlugin.
//!   From an issue's actions, create a ticket in an external tracker or link
//!   an existing one; the ticket is remembered with the issue (issue meta)
//!   and shown as a tag linking to it; it can be unlinked.
//!
//! ```
//! use picket_plugin_api::bases::{IssueTracker, IssueTrackerPlugin, NewTicket, Ticket};
//! use picket_plugin_api::{register_plugin, HookResult, IssueContext, PluginMeta};
//!
//! #[derive(Default)]
//! struct Notebook;
//!
//! impl IssueTracker for Notebook {
//!     fn meta(&self) -> PluginMeta {
//!         PluginMeta::new("Notebook").plugin_type("issue-tracking")
//!     }
//!     fn create_ticket(&self, ctx: &IssueContext, _ticket: &NewTicket) -> HookResult<Ticket> {
//!         Ok(Ticket::new(format!("N-{}", ctx.issue.id), None))
//!     }
//! }
//!
//! register_plugin!(IssueTrackerPlugin<Notebook>);
//! ```

use serde_json::Value;

use crate::html::{escape, Html};
use crate::model::Link;
use crate::options::OptionSpec;
use crate::plugin::{HookResult, IssueContext, Plugin, PluginError, PluginMeta, ViewContext, ViewResponse};

/// What the user asked to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewTicket {
    /// Title (prefilled with the issue's title).
    pub title: String,
    /// Description (prefilled with the culprit and a link to the issue).
    pub description: String,
}

impl NewTicket {
    /// A ticket to create.
    pub fn new(title: impl Into<String>, description: impl Into<String>) -> NewTicket {
        NewTicket { title: title.into(), description: description.into() }
    }
}

/// A ticket in the external tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ticket {
    /// The tracker's id for it.
    pub id: String,
    /// Where it can be seen, if known.
    pub url: Option<String>,
}

impl Ticket {
    /// A ticket.
    pub fn new(id: impl Into<String>, url: Option<String>) -> Ticket {
        Ticket { id: id.into(), url }
    }
}

/// An external issue tracker. Only [`IssueTracker::meta`] and
/// [`IssueTracker::create_ticket`] are required.
pub trait IssueTracker: Send + Sync + 'static {
    /// The plugin's metadata.
    fn meta(&self) -> PluginMeta;

    /// The per-project form (endpoint, credentials, ...).
    fn project_options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    /// The site-wide form.
    fn site_options(&self) -> Vec<OptionSpec> {
        Vec::new()
    }

    /// Whether the project's options let tickets be made; if not, the page
    /// says to configure the plugin and no action is offered.
    fn is_configured(&self, _ctx: &IssueContext) -> bool {
        true
    }

    /// Creates a ticket. An error is shown to the user on the page.
    fn create_ticket(&self, ctx: &IssueContext, ticket: &NewTicket) -> HookResult<Ticket>;

    /// Whether an existing ticket can be linked by its id.
    fn can_link_existing(&self) -> bool {
        true
    }

    /// Links an existing ticket; the default accepts the id as given, with
    /// the URL from [`IssueTracker::ticket_url`]. Check it exists here.
    fn link_ticket(&self, ctx: &IssueContext, id: &str) -> HookResult<Ticket> {
        Ok(Ticket::new(id, self.ticket_url(ctx, id)))
    }

    /// The URL of a ticket, when the tracker's URLs can be built from an id.
    fn ticket_url(&self, _ctx: &IssueContext, _id: &str) -> Option<String> {
        None
    }

    /// How a ticket is labelled in tags (`#42`).
    fn ticket_label(&self, _ctx: &IssueContext, id: &str) -> String {
        format!("#{id}")
    }
}

/// Issue meta keys under which the linked ticket is kept.
const TICKET_ID: &str = "ticket_id";
const TICKET_URL: &str = "ticket_url";

/// Makes an [`IssueTracker`] a [`Plugin`]: an action "Create or link ticket"
/// while the issue has none, a page with the forms (its `POST` takes
/// `action=create` with `title` and `description`, `action=link` with
/// `ticket`, or `action=unlink`), and a tag linking to the ticket.
#[derive(Default)]
pub struct IssueTrackerPlugin<T>(pub T);

fn field<'a>(ctx: &'a ViewContext, key: &str) -> Option<&'a str> {
    ctx.form.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn safe_url(url: Option<&String>) -> Option<&String> {
    // Only web links: a tracker's answer is not trusted to be one.
    url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
}

impl<T: IssueTracker> Plugin for IssueTrackerPlugin<T> {
    fn meta(&self) -> PluginMeta {
        self.0.meta()
    }

    fn project_options(&self) -> Vec<OptionSpec> {
        self.0.project_options()
    }

    fn site_options(&self) -> Vec<OptionSpec> {
        self.0.site_options()
    }

    fn actions(&self, ctx: &IssueContext) -> HookResult<Vec<Link>> {
        if ctx.meta.contains_key(TICKET_ID) || !self.0.is_configured(ctx) {
            return Ok(Vec::new());
        }
        let label = if self.0.can_link_existing() { "Create or link ticket" } else { "Create ticket" };
        Ok(vec![Link::new(label, ctx.plugin_url.clone())])
    }

    fn tags(&self, ctx: &IssueContext) -> HookResult<Vec<Html>> {
        let Some(id) = ctx.meta.get(TICKET_ID) else { return Ok(Vec::new()) };
        let label = self.0.ticket_label(ctx, id);
        Ok(vec![match safe_url(ctx.meta.get(TICKET_URL)) {
            Some(url) => Html::trusted(format!("<a class=\"ticket\" href=\"{}\" rel=\"noopener noreferrer\">{}</a>", escape(url), escape(&label))),
            None => Html::text(&label),
        }])
    }

    fn view(&self, ctx: &ViewContext) -> HookResult<Option<ViewResponse>> {
        let issue = &ctx.issue;
        let title = self.0.meta().title;
        if !self.0.is_configured(issue) {
            return Ok(Some(ViewResponse::page(title, Html::text("Configure this plugin in the project's settings first."))));
        }
        let linked = issue.meta.get(TICKET_ID);
        if ctx.method == "POST" {
            let ticket = match field(ctx, "action") {
                Some("create") if linked.is_none() => {
                    let new = NewTicket::new(
                        field(ctx, "title").unwrap_or(&issue.issue.title),
                        ctx.form.get("description").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("{}\n\n{}", issue.issue.culprit, issue.issue.url)),
                    );
                    if new.title.trim().is_empty() {
                        return Err(PluginError::user("a ticket needs a title"));
                    }
                    self.0.create_ticket(issue, &new)?
                }
                Some("link") if linked.is_none() && self.0.can_link_existing() => {
                    let id = field(ctx, "ticket").ok_or_else(|| PluginError::user("give the id of the ticket to link (the field 'ticket')"))?;
                    self.0.link_ticket(issue, id)?
                }
                Some("unlink") if linked.is_some() => {
                    return Ok(Some(ViewResponse::redirect(issue.plugin_url.clone()).set_meta(TICKET_ID, None).set_meta(TICKET_URL, None)));
                }
                other => {
                    let hint = if linked.is_some() { "this issue has a ticket: use action=unlink" } else { "use action=create or action=link" };
                    return Err(PluginError::user(format!("unknown or unavailable action '{}': {hint}", other.unwrap_or(""))));
                }
            };
            return Ok(Some(ViewResponse::redirect(issue.issue.url.clone()).set_meta(TICKET_ID, Some(&ticket.id)).set_meta(TICKET_URL, ticket.url.as_deref())));
        }
        let html = match linked {
            Some(id) => {
                let label = escape(&self.0.ticket_label(issue, id));
                let shown = match safe_url(issue.meta.get(TICKET_URL)) {
                    Some(url) => format!("<a href=\"{}\" rel=\"noopener noreferrer\">{label}</a>", escape(url)),
                    None => label,
                };
                format!(
                    "<p>This issue is linked to ticket {shown}.</p><form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"unlink\"><button type=\"submit\">Unlink</button></form>"
                )
            }
            None => {
                let mut html = format!(
                    "<form method=\"post\" class=\"create-ticket\"><input type=\"hidden\" name=\"action\" value=\"create\"><label>Title <input name=\"title\" value=\"{}\"></label><label>Description <textarea name=\"description\">{}</textarea></label><button type=\"submit\">Create ticket</button></form>",
                    escape(&issue.issue.title),
                    escape(&format!("{}\n\n{}", issue.issue.culprit, issue.issue.url))
                );
                if self.0.can_link_existing() {
                    html.push_str("<form method=\"post\" class=\"link-ticket\"><input type=\"hidden\" name=\"action\" value=\"link\"><label>Existing ticket <input name=\"ticket\"></label><button type=\"submit\">Link ticket</button></form>");
                }
                html
            }
        };
        Ok(Some(ViewResponse::page(title, Html::trusted(html))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{IssueRef, ProjectRef, UserRef};
    use crate::options::OptionValues;
    use crate::plugin::ViewBody;
    use serde_json::{json, Map};

    #[derive(Default)]
    struct Fake;
    impl IssueTracker for Fake {
        fn meta(&self) -> PluginMeta {
            PluginMeta::new("Fake")
        }
        fn create_ticket(&self, _ctx: &IssueContext, t: &NewTicket) -> HookResult<Ticket> {
            Ok(Ticket::new(format!("F-{}", t.title.len()), Some("javascript:alert(1)".into())))
        }
        fn ticket_url(&self, _ctx: &IssueContext, id: &str) -> Option<String> {
            Some(format!("https://fake.example/{id}"))
        }
    }

    fn issue_ctx() -> IssueContext {
        let mut issue = IssueRef::new(7, 1, "<b>Boom</b>");
        issue.url = "https://picket.example/organizations/acme/issues/7/".into();
        IssueContext::new(ProjectRef::new(1, "acme", "web", "Web"), issue, UserRef::new(1, "a@example.com", Some("member")), OptionValues::default(), "/p".into())
    }

    fn post(ctx: IssueContext, form: serde_json::Value) -> ViewResponse {
        let form: Map<String, Value> = form.as_object().unwrap().clone();
        IssueTrackerPlugin(Fake).view(&ViewContext::new(ctx, "POST", form, true)).unwrap().unwrap()
    }

    #[test]
    fn create_link_and_unlink() {
        let p = IssueTrackerPlugin(Fake);
        let ctx = issue_ctx();
        assert_eq!(p.actions(&ctx).unwrap()[0].label, "Create or link ticket");
        let page = p.view(&ViewContext::new(ctx.clone(), "GET", Map::new(), true)).unwrap().unwrap();
        let ViewBody::Page { html, .. } = page.body else { panic!("a page") };
        assert!(html.as_str().contains("value=\"&lt;b&gt;Boom&lt;&#x2F;b&gt;\"") && html.as_str().contains("link-ticket"), "{html}");
        let created = post(ctx.clone(), json!({"action": "create", "title": "Fix it"}));
        assert_eq!(created.meta_updates, vec![("ticket_id".into(), Some("F-6".into())), ("ticket_url".into(), Some("javascript:alert(1)".into()))]);
        let linked = post(ctx.clone(), json!({"action": "link", "ticket": " T-9 "}));
        assert_eq!(linked.meta_updates[1], ("ticket_url".into(), Some("https://fake.example/T-9".into())));
        // A linked issue: a tag (never a javascript: link), no action, and unlink.
        let mut with_ticket = ctx;
        with_ticket.meta.insert("ticket_id".into(), "F-6".into());
        with_ticket.meta.insert("ticket_url".into(), "javascript:alert(1)".into());
        assert_eq!(p.tags(&with_ticket).unwrap()[0].as_str(), "#F-6");
        assert!(p.actions(&with_ticket).unwrap().is_empty());
        let unlinked = post(with_ticket.clone(), json!({"action": "unlink"}));
        assert_eq!(unlinked.meta_updates, vec![("ticket_id".into(), None), ("ticket_url".into(), None)]);
        assert!(IssueTrackerPlugin(Fake).view(&ViewContext::new(with_ticket, "POST", json!({"action": "create"}).as_object().unwrap().clone(), true)).is_err());
    }
}
