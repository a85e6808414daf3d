//! Picket's built-in plugins. Each is written against the public
//! `picket-plugin-api`, exactly as a third party's would be, and registered
//! with `register_plugin!`; nothing in the core names them.
//!
//! - [`tags`]: servers, sites, URLs, user e-mails, browsers and operating
//!   systems (parsed from the User-Agent), interface types.
//! - [`mail`]: e-mail notifications over SMTP.
//! - [`webhooks`]: signed JSON webhooks; [`chat`]: Slack and Discord.
//! - [`tracker`]: the issue-tracker base (create an external ticket from an
//!   issue's actions) with a generic HTTP implementation.
//! - [`http`]: the outbound HTTP client they share, with its address policy.

pub mod chat;
pub mod http;
pub mod mail;
pub mod tags;
pub mod tracker;
pub mod webhooks;

/// Checks every item of a list option as `kind`; the error names the field and the bad items.
pub(crate) fn check_items(options: &picket_plugin_api::OptionValues, key: &str, kind: picket_plugin_api::OptionKind, what: &str) -> Result<(), String> {
    let spec = picket_plugin_api::OptionSpec::new(key, key, kind);
    let bad: Vec<String> = options.list(key).into_iter().filter(|item| spec.validate(&serde_json::json!(item)).is_err()).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{key}: not {what}: {}", bad.join(", ")))
    }
}

/// Call once from `main` so the linker keeps this crate (and its registrations).
#[inline(never)]
pub fn link() {
    std::hint::black_box(());
}
