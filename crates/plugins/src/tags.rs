//! Tag plugins (the classic TagPlugin): each adds one tag to every event of
//! the projects it is enabled for, before grouping, so the values are counted
//! per issue and searchable. On by default.

use picket_plugin_api::{register_plugin, EventContext, HookResult, Plugin, PluginMeta};

macro_rules! tag_plugin {
    ($name:ident, $title:literal, $slug:literal, $doc:literal, |$ctx:ident| $body:expr) => {
        #[doc = $doc]
        #[derive(Default)]
        pub struct $name;
        register_plugin!($name);
        impl Plugin for $name {
            fn meta(&self) -> PluginMeta {
                PluginMeta::new($title)
                    .slug($slug)
                    .description($doc)
                    .version(env!("CARGO_PKG_VERSION"))
                    .author("Picket", None)
                    .plugin_type("tag")
                    .enabled_by_default()
            }
            fn get_tags(&self, $ctx: &EventContext<'_>) -> HookResult<Vec<(String, String)>> {
                Ok($body)
            }
        }
    };
}

fn one(key: &str, value: Option<&str>) -> Vec<(String, String)> {
    value.filter(|v| !v.trim().is_empty()).map(|v| vec![(key.to_string(), v.to_string())]).unwrap_or_default()
}

tag_plugin!(ServersPlugin, "Servers", "servers", "Tags events with the server that sent them (server_name).", |ctx| one(
    "server_name",
    ctx.event.data.get("server_name").and_then(|v| v.as_str())
));
tag_plugin!(SitesPlugin, "Sites", "sites", "Tags events with their site.", |ctx| one("site", ctx.event.data.get("site").and_then(|v| v.as_str())));
tag_plugin!(UrlsPlugin, "URLs", "urls", "Tags events with the URL of their request, without query string or fragment.", |ctx| {
    let url = ctx.event.interface("request").and_then(|r| r.get("url")).and_then(|u| u.as_str());
    one("url", url.map(|u| u.split(['?', '#']).next().unwrap_or(u)))
});
tag_plugin!(UserEmailsPlugin, "User E-mails", "user-emails", "Tags events with the affected user's e-mail address.", |ctx| one(
    "user_email",
    ctx.event.interface("user").and_then(|u| u.get("email")).and_then(|e| e.as_str())
));
tag_plugin!(BrowsersPlugin, "Browsers", "browsers", "Tags events with the browser (name and major version) parsed from the request's User-Agent.", |ctx| {
    if ctx.event.tag("browser").is_some() {
        Vec::new() // the SDK already said (contexts.browser)
    } else {
        ctx.event.header("User-Agent").and_then(parse_ua).map(|ua| vec![("browser".to_string(), ua.0)]).unwrap_or_default()
    }
});
tag_plugin!(OsPlugin, "Operating Systems", "os", "Tags events with the operating system parsed from the request's User-Agent.", |ctx| {
    if ctx.event.tag("os").is_some() {
        Vec::new()
    } else {
        ctx.event.header("User-Agent").and_then(parse_ua).and_then(|ua| ua.1).map(|os| vec![("os".to_string(), os)]).unwrap_or_default()
    }
});

/// `(browser "Firefox 128", os "Linux")` from a User-Agent.
pub fn parse_ua(ua: &str) -> Option<(String, Option<String>)> {
    let r = woothee::parser::Parser::new().parse(ua)?;
    if r.name == "UNKNOWN" {
        return None;
    }
    let major = r.version.split('.').next().unwrap_or_default();
    let browser = if major.is_empty() || major == "UNKNOWN" { r.name.to_string() } else { format!("{} {major}", r.name) };
    let os = (r.os != "UNKNOWN").then(|| r.os.to_string());
    Some((browser, os))
}

/// Tags each event with the interfaces it carries (off by default, as in classic Sentry).
#[derive(Default)]
pub struct InterfaceTypesPlugin;
register_plugin!(InterfaceTypesPlugin);

impl Plugin for InterfaceTypesPlugin {
    fn meta(&self) -> PluginMeta {
        PluginMeta::new("Interface Types")
            .slug("interface-types")
            .description("Tags events with the type of each interface they carry (exception, request, user, ...).")
            .version(env!("CARGO_PKG_VERSION"))
            .author("Picket", None)
            .plugin_type("tag")
    }
    fn get_tags(&self, ctx: &EventContext<'_>) -> HookResult<Vec<(String, String)>> {
        // One tag key holds one value per event: the interfaces, sorted, joined.
        let mut present: Vec<&str> = picket_plugin_api::Registry::global().interfaces().iter().map(|i| i.key()).filter(|k| ctx.event.interface(k).is_some()).collect();
        present.sort_unstable();
        Ok(if present.is_empty() { Vec::new() } else { vec![("interface_type".into(), present.join(","))] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_plugin_api::{Event, OptionValues, ProjectRef};
    use serde_json::json;

    fn tags_of(p: &dyn Plugin, data: serde_json::Value) -> Vec<(String, String)> {
        let event = Event::from_data(1, data.as_object().unwrap().clone());
        let project = ProjectRef::new(1, "acme", "web", "Web");
        p.get_tags(&EventContext::new(&project, &OptionValues::default(), &event)).unwrap()
    }

    #[test]
    fn user_agent_gives_browser_and_os() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let data = json!({"request": {"headers": [["User-Agent", ua]]}});
        assert_eq!(tags_of(&BrowsersPlugin, data.clone()), vec![("browser".to_string(), "Firefox 128".to_string())]);
        assert_eq!(tags_of(&OsPlugin, data), vec![("os".to_string(), "Linux".to_string())]);
        assert!(tags_of(&BrowsersPlugin, json!({"request": {"headers": [["User-Agent", "curl/8"]]}, "tags": [["browser", "x"]]})).is_empty());
    }

    #[test]
    fn urls_lose_their_query_and_emails_come_from_the_user() {
        assert_eq!(tags_of(&UrlsPlugin, json!({"request": {"url": "https://a.example/p?q=1#f"}})), vec![("url".into(), "https://a.example/p".into())]);
        assert_eq!(tags_of(&UserEmailsPlugin, json!({"user": {"email": "u@example.com"}})), vec![("user_email".into(), "u@example.com".into())]);
        assert!(tags_of(&UserEmailsPlugin, json!({})).is_empty());
    }
}
