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

fn send(ctx: &PostProcessContext, body: serde_json::Value) -> HookResult<()> {
    if !wanted(ctx) {
        return Ok(());
    }
    let url = ctx.options.str("webhook_url").ok_or_else(|| PluginError::permanent("no webhook URL configured"))?;
    http::post_json(url, &serde_json::to_vec(&body).map_err(PluginError::permanent)?, &[], http::allows_private(&ctx.site_options)).map(|_| ())
}

/// Slack incoming webhooks.
#[derive(Default)]
pub struct SlackPlugin;
register_plugin!(SlackPlugin);

impl Plugin for SlackPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Slack").description("Posts new issues and regressions to a Slack channel through an incoming webhook.").version(env!("CARGO_PKG_VERSION")).author("Picket", None).plugin_type("notification")
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
        // Slack's mrkdwn: <url|text>; &, < and > must be escaped in text.
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        send(ctx, json!({"text": format!("<{}|{}>", ctx.issue.url, esc(&headline(ctx)))}))
    }
}

/// Discord webhooks.
#[derive(Default)]
pub struct DiscordPlugin;
register_plugin!(DiscordPlugin);

impl Plugin for DiscordPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Discord").description("Posts new issues and regressions to a Discord channel through a webhook.").version(env!("CARGO_PKG_VERSION")).author("Picket", None).plugin_type("notification")
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
        // No mentions from event data: `allowed_mentions` empty.
        send(ctx, json!({"content": format!("{}\n{}", headline(ctx), ctx.issue.url), "allowed_mentions": {"parse": []}}))
    }
}
