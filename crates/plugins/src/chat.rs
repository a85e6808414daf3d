//! Slack and Discord incoming webhooks: a short message with a link to the issue.

use picket_plugin_api::{register_plugin, HookResult, OptionKind, OptionSpec, Plugin, PluginError, PluginMeta, PostProcessContext};
use serde_json::json;

use crate::http;
use crate::webhooks::{wanted, when_option};

fn headline(ctx: &PostProcessContext) -> String {
    let what = if ctx.is_new {
        "New issue"
    } else if ctx.is_regression {
        "Regression"
    } else {
        "Event"
    };
    format!("{what} in {}: [{}] {}", ctx.project.name, ctx.event.level.to_uppercase(), ctx.issue.title)
}

/// The webhook URL is a credential (whoever has it can post): a secret, checked as a URL.
fn options() -> Vec<OptionSpec> {
    vec![OptionSpec::new("webhook_url", "Webhook URL", OptionKind::Secret).required().help("The incoming webhook's URL; kept secret."), when_option()]
}

fn validate(options: &picket_plugin_api::OptionValues) -> Result<(), String> {
    match options.str("webhook_url") {
        Some(u) => OptionSpec::new("webhook_url", "Webhook URL", OptionKind::Url).validate(&json!(u)).map(|_| ()).map_err(|e| format!("webhook_url: {e}")),
        None => Ok(()),
    }
}

/// What differs between chat services: their name and the shape of a message.
pub trait ChatService: Default + Send + Sync + 'static {
    /// Title (and so the slug) of the plugin.
    const TITLE: &'static str;
    /// Its description.
    const DESCRIPTION: &'static str;
    /// The webhook's JSON body for an event.
    fn body(ctx: &PostProcessContext) -> serde_json::Value;
}

/// An incoming-webhook chat plugin for a [`ChatService`].
#[derive(Default)]
pub struct ChatPlugin<S>(S);

impl<S: ChatService> Plugin for ChatPlugin<S> {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new(S::TITLE).description(S::DESCRIPTION).version(env!("CARGO_PKG_VERSION")).author("Picket", None).plugin_type("notification")
    }
    fn project_options(&self) -> Vec<OptionSpec> {
        options()
    }
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![http::allow_private_option()]
    }
    fn validate_project_options(&self, options: &picket_plugin_api::OptionValues) -> Result<(), String> {
        validate(options)
    }
    fn post_process(&self, ctx: &PostProcessContext) -> HookResult<()> {
        if !wanted(ctx) {
            return Ok(());
        }
        let url = ctx.options.str("webhook_url").ok_or_else(|| PluginError::permanent("no webhook URL configured"))?;
        let body = serde_json::to_vec(&S::body(ctx)).map_err(PluginError::permanent)?;
        http::post_json(url, &body, &[], http::allows_private(&ctx.site_options)).map(|_| ())
    }
}

/// Slack incoming webhooks.
#[derive(Default)]
pub struct Slack;
register_plugin!(ChatPlugin<Slack>);

impl ChatService for Slack {
    const TITLE: &'static str = "Slack";
    const DESCRIPTION: &'static str = "Posts new issues and regressions to a Slack channel through an incoming webhook.";
    fn body(ctx: &PostProcessContext) -> serde_json::Value {
        // Slack's mrkdwn: <url|text>; &, < and > must be escaped in text.
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        json!({"text": format!("<{}|{}>", ctx.issue.url, esc(&headline(ctx)))})
    }
}

/// Discord webhooks.
#[derive(Default)]
pub struct Discord;
register_plugin!(ChatPlugin<Discord>);

impl ChatService for Discord {
    const TITLE: &'static str = "Discord";
    const DESCRIPTION: &'static str = "Posts new issues and regressions to a Discord channel through a webhook.";
    fn body(ctx: &PostProcessContext) -> serde_json::Value {
        // No mentions from event data: `allowed_mentions` empty.
        json!({"content": format!("{}\n{}", headline(ctx), ctx.issue.url), "allowed_mentions": {"parse": []}})
    }
}
