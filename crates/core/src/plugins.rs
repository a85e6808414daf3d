//! Running plugins' hooks on the way in, and the one authorization function.
//!
//! [`ProjectPlugins`] is the set of plugins enabled for one project with
//! their options; it implements [`EventHooks`], so the digest runs each
//! plugin's `preprocess_event` and `get_tags` on every event before it is
//! grouped. Every call is isolated ([`RegisteredPlugin::call`]): a plugin
//! that fails or panics is logged and skipped, the event goes on.

use std::collections::BTreeMap;

use picket_plugin_api::registry::RegisteredPlugin;
use picket_plugin_api::{Event, EventContext, OptionValues, PermContext, Permission, ProjectContext, ProjectRef, Registry};
use serde_json::{Map, Value};

use crate::normalize::EventHooks;

/// The plugins enabled for a project, with their options.
pub struct ProjectPlugins {
    /// The project.
    pub project: ProjectRef,
    /// Enabled plugins in title order, each with its project options (defaults filled in).
    pub enabled: Vec<(&'static RegisteredPlugin, OptionValues)>,
    /// Each enabled plugin's project context (with its site options), built
    /// once: hooks run per event.
    contexts: Vec<ProjectContext>,
}

impl ProjectPlugins {
    /// Selects the enabled plugins from the stored choices (slug → on/off),
    /// project options and site options (slug → key → value).
    pub fn new(
        registry: &'static Registry,
        project: ProjectRef,
        choices: &BTreeMap<String, bool>,
        options: &BTreeMap<String, BTreeMap<String, Value>>,
        site: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> ProjectPlugins {
        let enabled: Vec<(&'static RegisteredPlugin, OptionValues)> = registry
            .plugins()
            .iter()
            .filter(|p| p.is_enabled(choices.get(p.slug()).copied()))
            .map(|p| {
                let specs = p.call("project_options", |pl| Ok(pl.project_options())).unwrap_or_default();
                (p, OptionValues::with_defaults(&specs, options.get(p.slug()).cloned().unwrap_or_default()))
            })
            .collect();
        let contexts = enabled
            .iter()
            .map(|(p, options)| {
                let specs = p.call("site_options", |pl| Ok(pl.site_options())).unwrap_or_default();
                let mut ctx = ProjectContext::new(project.clone(), options.clone());
                ctx.site_options = OptionValues::with_defaults(&specs, site.get(p.slug()).cloned().unwrap_or_default());
                ctx
            })
            .collect();
        ProjectPlugins { project, enabled, contexts }
    }

    /// The context of a project hook for one enabled plugin.
    pub fn context(&self, slug: &str) -> Option<&ProjectContext> {
        self.enabled.iter().position(|(p, _)| p.slug() == slug).map(|i| &self.contexts[i])
    }

    /// The site-wide options of an enabled plugin (empty for one that is not enabled).
    pub fn site_options(&self, slug: &str) -> OptionValues {
        self.context(slug).map(|c| c.site_options.clone()).unwrap_or_default()
    }

    /// The options of an enabled plugin.
    pub fn options(&self, slug: &str) -> Option<&OptionValues> {
        self.enabled.iter().find(|(p, _)| p.slug() == slug).map(|(_, o)| o)
    }

    /// Whether the project's events need post-processing: some enabled plugin
    /// may have a `post_process` (see [`RegisteredPlugin::may_post_process`]).
    pub fn wants_post_process(&self) -> bool {
        self.enabled.iter().any(|(p, _)| p.may_post_process())
    }

    /// Whether any enabled plugin says the project is rate limited.
    pub fn is_rate_limited(&self) -> bool {
        self.enabled.iter().zip(&self.contexts).any(|((p, _), ctx)| p.call("is_rate_limited", |pl| pl.is_rate_limited(ctx)).unwrap_or(false))
    }
}

impl EventHooks for ProjectPlugins {
    fn preprocess(&self, data: &mut Map<String, Value>) {
        for ((p, _), ctx) in self.enabled.iter().zip(&self.contexts) {
            p.call("preprocess_event", |pl| pl.preprocess_event(ctx, data));
        }
    }

    fn extra_tags(&self, event: &Event) -> Vec<(String, String)> {
        let mut tags = Vec::new();
        for (p, options) in &self.enabled {
            let ctx = EventContext::new(&self.project, options, event);
            if let Some(t) = p.call("get_tags", |pl| pl.get_tags(&ctx)) {
                tags.extend(t);
            }
        }
        tags
    }
}

/// Runs a method of an extension that is not a plugin (an interface, a
/// filter, a view) so that a panic in it costs only its answer: logged with
/// what it was, and `None`. Plugins' hooks go through `RegisteredPlugin::call`.
pub fn guarded<T>(kind: &str, name: &str, method: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(kind, name, method, "extension panicked; its answer is skipped");
            None
        }
    }
}

/// Permissions a plugin may grant where Picket's own rule would not
/// (the classic "creation" checks); every other permission can only be vetoed.
fn grantable(perm: Permission) -> bool {
    matches!(perm, Permission::AddProject | Permission::AddTeam)
}

/// The one authorization function, for site-wide permissions (no project):
/// every plugin is asked. `core_allows` is Picket's own rule (the user's
/// role). Superusers are always allowed. Otherwise any `Some(false)` denies
/// (a veto); a `Some(true)` can grant only the creation permissions
/// (`add_project`, `add_team`); `None` leaves the decision to Picket's rule.
/// A plugin that fails is skipped (it neither grants nor vetoes).
pub fn authorize(registry: &Registry, ctx: &PermContext, core_allows: bool) -> bool {
    decide(registry.plugins().iter().map(|p| (p, None)), ctx, core_allows)
}

/// [`authorize`] for a permission in a project: only the plugins enabled
/// there are asked, each with its options in [`PermContext::options`].
pub fn authorize_in_project(plugins: &ProjectPlugins, ctx: &PermContext, core_allows: bool) -> bool {
    decide(plugins.enabled.iter().map(|(p, o)| (*p, Some(o))), ctx, core_allows)
}

fn decide<'a>(plugins: impl Iterator<Item = (&'a RegisteredPlugin, Option<&'a OptionValues>)>, ctx: &PermContext, core_allows: bool) -> bool {
    if ctx.user.is_superuser {
        return true;
    }
    let mut granted = false;
    // One copy of the question; only the asked plugin's options change.
    let mut asked = ctx.clone();
    for (p, options) in plugins {
        asked.options = options.cloned().unwrap_or_default();
        let answer = p.call("has_perm", |pl| pl.has_perm(&asked)).flatten();
        match answer {
            Some(false) => {
                tracing::info!(plugin = p.slug(), perm = ctx.perm.as_str(), user = ctx.user.email, "permission vetoed by plugin");
                return false;
            }
            Some(true) => granted = true,
            None => {}
        }
    }
    core_allows || (granted && grantable(ctx.perm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use picket_plugin_api::{HookResult, Plugin, PluginMeta, ProjectRef, UserRef};

    struct Veto;
    impl Plugin for Veto {
        fn meta(&self) -> PluginMeta {
            PluginMeta::new("Veto")
        }
        fn has_perm(&self, ctx: &PermContext) -> HookResult<Option<bool>> {
            Ok(match ctx.perm {
                Permission::RemoveProject => Some(false),
                Permission::AddProject | Permission::EditProject => Some(true),
                _ => None,
            })
        }
    }

    fn registry() -> Registry {
        let mut b = Registry::builder();
        b.add_plugin(Box::new(Veto), "test");
        b.build()
    }

    #[test]
    fn a_veto_denies_none_falls_back_and_true_grants_only_creation() {
        let r = registry();
        let user = UserRef::new(1, "a@example.com", Some("owner"));
        let ask = |perm, core| authorize(&r, &PermContext::new(user.clone(), perm), core);
        assert!(!ask(Permission::RemoveProject, true), "veto");
        assert!(ask(Permission::AdminEvent, true), "None keeps the core's yes");
        assert!(!ask(Permission::AdminEvent, false), "None keeps the core's no");
        assert!(ask(Permission::AddProject, false), "true grants a creation permission");
        assert!(!ask(Permission::EditProject, false), "true cannot elevate other permissions");
        let mut root = user.clone();
        root.is_superuser = true;
        assert!(authorize(&r, &PermContext::new(root, Permission::RemoveProject), false), "superusers are never vetoed");
    }

    #[test]
    fn in_a_project_only_enabled_plugins_are_asked() {
        let r: &'static Registry = Box::leak(Box::new(registry()));
        let project = ProjectRef::new(1, "acme", "web", "Web");
        let user = UserRef::new(1, "a@example.com", Some("owner"));
        let ctx = PermContext::new(user, Permission::RemoveProject);
        let off = ProjectPlugins::new(r, project.clone(), &BTreeMap::new(), &BTreeMap::new(), &BTreeMap::new());
        assert!(authorize_in_project(&off, &ctx, true), "a disabled plugin has no say");
        let on = ProjectPlugins::new(r, project, &BTreeMap::from([("veto".to_string(), true)]), &BTreeMap::new(), &BTreeMap::new());
        assert!(!authorize_in_project(&on, &ctx, true));
    }
}
