//! Outgoing webhooks: a signed JSON POST for new issues, regressions or every
//! event. The signature is `X-Picket-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of `<timestamp>.<body>` keyed with the project's secret, with
//! the timestamp in `X-Picket-Timestamp` (so a receiver can refuse replays).

use hmac::{Hmac, Mac};
use picket_plugin_api::{register_plugin, HookResult, OptionKind, OptionSpec, Plugin, PluginError, PluginMeta, PostProcessContext};
use serde_json::json;
use sha2::Sha256;

use crate::http;

/// Which events a notification plugin sends.
pub(crate) fn when_option() -> OptionSpec {
    OptionSpec::new(
        "when",
        "Send for",
        OptionKind::Choice {
            choices: vec![
                ("new".into(), "New issues".into()),
                ("new_and_regressions".into(), "New issues and regressions".into()),
                ("every_event".into(), "Every event".into()),
            ],
        },
    )
    .default_value("new_and_regressions")
}

/// Whether the event is one the plugin was configured to send.
pub(crate) fn wanted(ctx: &PostProcessContext) -> bool {
    match ctx.options.str("when").unwrap_or("new_and_regressions") {
        "new" => ctx.is_new,
        "every_event" => true,
        _ => ctx.is_new || ctx.is_regression,
    }
}

/// The JSON body: what a receiver needs without calling back.
pub fn payload(ctx: &PostProcessContext) -> serde_json::Value {
    let action = if ctx.is_new {
        "created"
    } else if ctx.is_regression {
        "regressed"
    } else {
        "event"
    };
    json!({
        "action": action,
        "project": {"id": ctx.project.id, "slug": ctx.project.slug, "name": ctx.project.name, "organization": ctx.project.org_slug},
        "issue": {"id": ctx.issue.id.to_string(), "title": ctx.issue.title, "culprit": ctx.issue.culprit, "level": ctx.issue.level, "status": ctx.issue.status, "count": ctx.issue.times_seen, "url": ctx.issue.url},
        "event": {"id": ctx.event.event_id, "title": ctx.event.title, "level": ctx.event.level, "platform": ctx.event.platform, "timestamp": ctx.event.timestamp, "tags": ctx.event.tags},
    })
}

/// `sha256=<hex>` of `<timestamp>.<body>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Signed JSON webhooks.
#[derive(Default)]
pub struct WebhooksPlugin;
register_plugin!(WebhooksPlugin);

impl Plugin for WebhooksPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Webhooks")
            .description("POSTs a signed JSON document to your URLs when issues are created or regress (or for every event).")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Picket", None)
            .plugin_type("notification")
    }
    fn project_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("urls", "URLs", OptionKind::List).required().help("One http(s) URL per line."),
            OptionSpec::new("secret", "Signing secret", OptionKind::Secret).help("Signs every request (X-Picket-Signature); strongly recommended."),
            when_option(),
        ]
    }
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![http::allow_private_option()]
    }
    fn validate_project_options(&self, options: &picket_plugin_api::OptionValues) -> Result<(), String> {
        crate::check_items(options, "urls", OptionKind::Url, "http:// or https:// URLs")
    }
    fn post_process(&self, ctx: &PostProcessContext) -> HookResult<()> {
        if !wanted(ctx) {
            return Ok(());
        }
        let body = serde_json::to_vec(&payload(ctx)).map_err(PluginError::permanent)?;
        let timestamp = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let mut headers = vec![("X-Picket-Timestamp", timestamp.clone()), ("X-Picket-Event", ctx.event.event_id.clone())];
        if let Some(secret) = ctx.options.str("secret") {
            headers.push(("X-Picket-Signature", signature(secret, &timestamp, &body)));
        }
        let mut first_error = None;
        for url in ctx.options.list("urls") {
            if let Err(e) = http::post_json(&url, &body, &headers, http::allows_private(&ctx.site_options)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // From `printf '1700000000.{}' | openssl dgst -sha256 -hmac s3cret`.
        assert_eq!(super::signature("s3cret", "1700000000", b"{}"), "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf");
    }
}
