//! HTML that plugins hand to Picket's pages.
//!
//! Event data is hostile: every byte came from the internet. So the only way
//! to put markup on a page is the [`Html`] type, and the only ways to make one
//! are [`Html::text`] (escapes), [`Template::render`] (auto-escapes every
//! value) and [`Html::trusted`] (for markup the plugin wrote itself, never
//! for data).

use std::fmt;

/// A fragment of HTML that is safe to insert into a page as is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Text, escaped: `<script>` comes out as `&lt;script&gt;`.
    pub fn text(s: &str) -> Html {
        Html(escape(s))
    }

    /// Markup written by the plugin itself (a literal, not data). Anything
    /// built from event data, options or user input must go through
    /// [`Html::text`] or a [`Template`] instead.
    pub fn trusted(markup: impl Into<String>) -> Html {
        Html(markup.into())
    }

    /// The markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The markup, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// True when there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Html({:?})", self.0)
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '/' => out.push_str("&#x2F;"),
            c => out.push(c),
        }
    }
    out
}

/// A template that does not compile or render: says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// A template a plugin ships (usually with `include_str!`), rendered with
/// [minijinja](https://docs.rs/minijinja) syntax. HTML auto-escaping is
/// always on, whatever the template's name: `{{ value }}` is escaped, and
/// only `{{ value|safe }}` on a value the plugin vouches for is not.
///
/// ```
/// use picket_plugin_api::html::Template;
/// let t = Template::new("widget", "<p>{{ title }}</p>").unwrap();
/// let html = t.render(&serde_json::json!({"title": "<script>x</script>"})).unwrap();
/// assert_eq!(html.as_str(), "<p>&lt;script&gt;x&lt;&#x2f;script&gt;</p>");
/// ```
pub struct Template {
    env: minijinja::Environment<'static>,
    name: &'static str,
}

impl Template {
    /// Compiles a template; a syntax error names the template and the line.
    pub fn new(name: &'static str, source: &'static str) -> Result<Template, TemplateError> {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env.add_template(name, source).map_err(|e| TemplateError(format!("template '{name}': {e}")))?;
        Ok(Template { env, name })
    }

    /// Renders the template with `context` (any serializable value).
    pub fn render<S: serde::Serialize>(&self, context: &S) -> Result<Html, TemplateError> {
        let t = self.env.get_template(self.name).map_err(|e| TemplateError(format!("template '{}': {e}", self.name)))?;
        t.render(context).map(Html).map_err(|e| TemplateError(format!("rendering template '{}': {e}", self.name)))
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_quotes() {
        assert_eq!(Html::text("<img src=x onerror='a'>&").as_str(), "&lt;img src=x onerror=&#x27;a&#x27;&gt;&amp;");
    }

    #[test]
    fn templates_escape_whatever_their_name() {
        // A name without `.html` would disable escaping in minijinja's default setup.
        let t = Template::new("plain-name", "{{ v }}|{{ v|safe }}").unwrap();
        let out = t.render(&serde_json::json!({"v": "<b>"})).unwrap();
        assert_eq!(out.as_str(), "&lt;b&gt;|<b>");
    }

    #[test]
    fn template_errors_name_the_template() {
        let e = Template::new("broken", "{% if %}").unwrap_err().to_string();
        assert!(e.starts_with("template 'broken'"), "{e}");
    }
}
