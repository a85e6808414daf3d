//! E-mail notifications over SMTP (the classic MailProcessor): new issues
//! (and, by choice, regressions) at or above a level, for chosen loggers, to
//! listed addresses and to the organization's members who did not opt out.
//!
//! The SMTP server is a site option (set by a superuser); recipients and
//! rules are per project; each member may opt out per project (a user option).
//! SMTP with STARTTLS when the server offers it (or required, or implicit
//! TLS on port 465, or none), verified against the Mozilla root
//! certificates; authentication if a user name is set.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use picket_plugin_api::html::escape;
use picket_plugin_api::{register_plugin, HookResult, OptionKind, OptionSpec, Plugin, PluginError, PluginMeta, PostProcessContext, Registry};

const LEVELS: &[&str] = &["debug", "info", "warning", "error", "fatal"];

fn level_rank(l: &str) -> usize {
    LEVELS.iter().position(|x| *x == l).unwrap_or(3)
}

/// E-mail notifications.
#[derive(Default)]
pub struct MailPlugin;
register_plugin!(MailPlugin);

impl Plugin for MailPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Mail")
            .description("E-mails new issues and regressions to chosen addresses and to the organization's members.")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Picket", None)
            .plugin_type("notification")
    }
    fn site_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("smtp_host", "SMTP host", OptionKind::Text).default_value("127.0.0.1"),
            OptionSpec::new("smtp_port", "SMTP port", OptionKind::Number { min: Some(1.0), max: Some(65535.0) }).default_value(25.0),
            OptionSpec::new(
                "smtp_tls",
                "TLS",
                OptionKind::Choice {
                    choices: vec![
                        ("opportunistic".into(), "STARTTLS when the server offers it".into()),
                        ("starttls".into(), "STARTTLS, required".into()),
                        ("tls".into(), "TLS from the start (port 465)".into()),
                        ("none".into(), "None (a local relay only)".into()),
                    ],
                },
            )
            .default_value("opportunistic"),
            OptionSpec::new("smtp_username", "SMTP user name", OptionKind::Text),
            OptionSpec::new("smtp_password", "SMTP password", OptionKind::Secret),
            OptionSpec::new("from", "From address", OptionKind::Email).default_value("picket@localhost.localdomain"),
            OptionSpec::new("subject_prefix", "Subject prefix", OptionKind::Text).default_value("[Picket] "),
        ]
    }
    fn project_options(&self) -> Vec<OptionSpec> {
        vec![
            OptionSpec::new("send_to", "Also send to", OptionKind::List).help("E-mail addresses, one per line."),
            OptionSpec::new("send_to_members", "Send to the organization's members", OptionKind::Bool).default_value(true),
            OptionSpec::new("min_level", "Lowest level", OptionKind::Choice { choices: LEVELS.iter().map(|l| (l.to_string(), l.to_string())).collect() }).default_value("debug"),
            OptionSpec::new("include_loggers", "Only these loggers", OptionKind::List).help("Leave empty for all loggers."),
            OptionSpec::new("exclude_loggers", "Never these loggers", OptionKind::List),
            OptionSpec::new("regressions", "Also for regressions", OptionKind::Bool).default_value(true),
        ]
    }
    fn user_options(&self) -> Vec<OptionSpec> {
        vec![OptionSpec::new("alerts", "E-mail me about this project", OptionKind::Bool).default_value(true)]
    }
    fn validate_project_options(&self, options: &picket_plugin_api::OptionValues) -> Result<(), String> {
        crate::check_items(options, "send_to", OptionKind::Email, "e-mail addresses")
    }
    fn post_process(&self, ctx: &PostProcessContext) -> HookResult<()> {
        let o = &ctx.options;
        if !(ctx.is_new || (ctx.is_regression && o.bool("regressions"))) {
            return Ok(());
        }
        if level_rank(&ctx.event.level) < level_rank(o.str("min_level").unwrap_or("debug")) {
            return Ok(());
        }
        let logger = ctx.event.logger.clone().unwrap_or_default();
        let include = o.list("include_loggers");
        if (!include.is_empty() && !include.contains(&logger)) || o.list("exclude_loggers").contains(&logger) {
            return Ok(());
        }
        let mut to: Vec<String> = o.list("send_to");
        if o.bool("send_to_members") {
            to.extend(ctx.members.iter().filter(|m| m.options.get("alerts").and_then(|v| v.as_bool()).unwrap_or(true)).map(|m| m.user.email.clone()));
        }
        to.sort_by_key(|a| a.to_lowercase());
        to.dedup_by_key(|a| a.to_lowercase());
        if to.is_empty() {
            return Ok(());
        }
        let site = &ctx.site_options;
        let from: Mailbox = site.str("from").unwrap_or("picket@localhost.localdomain").parse().map_err(|e| PluginError::permanent(format!("invalid From address: {e}")))?;
        let first_line = ctx.issue.title.lines().next().unwrap_or_default();
        let subject = format!("{}[{}] {}: {}", site.str("subject_prefix").unwrap_or(""), ctx.project.name, ctx.event.level.to_uppercase(), first_line);
        let (text, html) = bodies(ctx);
        let host = site.str("smtp_host").unwrap_or("127.0.0.1");
        let port = site.number("smtp_port").unwrap_or(25.0) as u16;
        let tls = match site.str("smtp_tls").unwrap_or("opportunistic") {
            "none" => Tls::None,
            mode => {
                let params = TlsParameters::new(host.to_string()).map_err(|e| PluginError::permanent(format!("cannot set up TLS for {host}: {e}")))?;
                match mode {
                    "starttls" => Tls::Required(params),
                    "tls" => Tls::Wrapper(params),
                    _ => Tls::Opportunistic(params),
                }
            }
        };
        let mut transport = SmtpTransport::builder_dangerous(host).port(port).tls(tls).timeout(Some(Duration::from_secs(20)));
        if let Some(user) = site.str("smtp_username") {
            transport = transport.credentials(Credentials::new(user.to_string(), site.str("smtp_password").unwrap_or_default().to_string()));
        }
        let transport = transport.build();
        // One message per recipient: nobody sees the others' addresses.
        for rcpt in &to {
            let mailbox: Mailbox = match rcpt.parse() {
                Ok(m) => m,
                Err(_) => continue,
            };
            let message = Message::builder()
                .from(from.clone())
                .to(mailbox)
                .subject(subject.clone())
                .multipart(MultiPart::alternative().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text.clone())).singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html.clone())))
                .map_err(|e| PluginError::permanent(format!("cannot build the e-mail: {e}")))?;
            transport.send(&message).map_err(|e| PluginError::new(format!("sending mail through {host}:{port} failed: {e}")))?;
        }
        Ok(())
    }
}

/// Text and HTML bodies: a link, then every interface's text form.
fn bodies(ctx: &PostProcessContext) -> (String, String) {
    let mut text = format!("{}\n\n{}\n\nProject: {}\nLevel: {}\n", ctx.issue.title, ctx.issue.url, ctx.project.name, ctx.event.level);
    if let Some(l) = &ctx.event.logger {
        text.push_str(&format!("Logger: {l}\n"));
    }
    let mut html = format!("<h2><a href=\"{}\">{}</a></h2><p>Project: {} · Level: {}</p>", escape(&ctx.issue.url), escape(&ctx.issue.title), escape(&ctx.project.name), escape(&ctx.event.level));
    for iface in Registry::global().interfaces() {
        let Some(v) = ctx.event.interface(iface.key()) else { continue };
        if let Some(t) = iface.to_text(v) {
            text.push_str(&format!("\n{}\n{}\n{}\n", iface.title(), "-".repeat(iface.title().len()), t.trim_end()));
            html.push_str(&format!("<h3>{}</h3><pre>{}</pre>", escape(iface.title()), escape(t.trim_end())));
        }
    }
    (text, html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_parameters_build_with_the_bundled_roots_and_provider() {
        // No process-wide crypto provider is installed: lettre must bring its own (ring).
        lettre::transport::smtp::client::TlsParameters::new("smtp.example.com".into()).expect("TLS parameters");
    }

    #[test]
    fn levels_rank_in_order() {
        assert!(super::level_rank("fatal") > super::level_rank("error"));
        assert!(super::level_rank("debug") < super::level_rank("info"));
    }
}
