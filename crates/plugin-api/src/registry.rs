//! Registration at link time and the registry Picket builds from it.
//!
//! A crate registers its extensions with the `register_*!` macros (the
//! analogue of a setuptools entry point); linking the crate into a Picket
//! binary is all it takes to install them. [`Registry::global`] collects
//! every registration once, sorts plugins by title (link order is not
//! stable), and refuses duplicates with a message saying which crates clash.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::filter::EventFilter;
use crate::interface::Interface;
use crate::plugin::{HookResult, Plugin, PluginError, PluginMeta, PostProcessContext, DEFAULT_POST_PROCESS_RAN};
use crate::view::AggregateView;

/// A plugin registration, made by [`register_plugin!`](crate::register_plugin).
#[doc(hidden)]
pub struct PluginRegistration {
    pub make: fn() -> Box<dyn Plugin>,
    pub module: &'static str,
}
/// An interface registration, made by [`register_interface!`](crate::register_interface).
#[doc(hidden)]
pub struct InterfaceRegistration {
    pub make: fn() -> Box<dyn Interface>,
    pub module: &'static str,
}
/// A filter registration, made by [`register_filter!`](crate::register_filter).
#[doc(hidden)]
pub struct FilterRegistration {
    pub make: fn() -> Box<dyn EventFilter>,
    pub module: &'static str,
}
/// A view registration, made by [`register_view!`](crate::register_view).
#[doc(hidden)]
pub struct ViewRegistration {
    pub make: fn() -> Box<dyn AggregateView>,
    pub module: &'static str,
}

inventory::collect!(PluginRegistration);
inventory::collect!(InterfaceRegistration);
inventory::collect!(FilterRegistration);
inventory::collect!(ViewRegistration);

/// A hook that failed: which plugin, which hook, what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailure {
    /// The plugin's slug.
    pub slug: String,
    /// The hook (`post_process`, `widget`, ...).
    pub hook: &'static str,
    /// The error, or the panic's message.
    pub message: String,
    /// Whether it was a panic.
    pub panicked: bool,
}

/// Failures of a plugin's hooks since the process started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Hooks that failed.
    pub failures: u64,
    /// The last failure.
    pub last: Option<HookFailure>,
}

/// A plugin with its metadata, as the registry holds it.
pub struct RegisteredPlugin {
    plugin: Box<dyn Plugin>,
    meta: PluginMeta,
    source: &'static str,
    health: Mutex<Health>,
    /// What calls of `post_process` have shown: [`HOOK_UNKNOWN`] until the first.
    post_process_hook: AtomicU8,
}

/// No call of the hook has returned yet.
const HOOK_UNKNOWN: u8 = 0;
/// The plugin implements the hook.
const HOOK_OWN: u8 = 1;
/// A call reached the trait's default: the plugin has no hook of its own.
const HOOK_DEFAULT: u8 = 2;

impl RegisteredPlugin {
    /// The plugin's metadata (read once, at registration).
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    /// The slug.
    pub fn slug(&self) -> &str {
        &self.meta.slug
    }

    /// The crate that registered it (`picket_plugins`, `acme_picket`).
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The plugin itself, for calls that are not hooks (option schemas).
    pub fn plugin(&self) -> &dyn Plugin {
        &*self.plugin
    }

    /// Failures so far.
    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Whether the plugin is on for a project, given the stored choice
    /// (`None`: the project has not chosen). Global-only plugins are always on,
    /// and a plugin that cannot be disabled cannot be turned off.
    pub fn is_enabled(&self, stored: Option<bool>) -> bool {
        let m = &self.meta;
        if !m.can_enable_for_projects || !m.can_disable {
            return true;
        }
        stored.unwrap_or(m.project_default_enabled)
    }

    /// Whether `post_process` may do anything: true until a call of
    /// [`RegisteredPlugin::post_process`] has shown that the plugin keeps the
    /// trait's default (which does nothing).
    pub fn may_post_process(&self) -> bool {
        self.post_process_hook.load(Ordering::Relaxed) != HOOK_DEFAULT
    }

    /// Calls `post_process` like [`RegisteredPlugin::try_call`], and learns
    /// from the first call whether the plugin implements the hook (whether
    /// the call ran the trait's default for the plugin's own type).
    pub fn post_process(&self, ctx: &PostProcessContext) -> Result<(), PluginError> {
        DEFAULT_POST_PROCESS_RAN.set(None);
        let result = self.try_call("post_process", |pl| pl.post_process(ctx));
        // Only this plugin's own type running the default means it has no hook:
        // whether a type overrides a method does not change between calls.
        let plugin: &dyn std::any::Any = &*self.plugin;
        let learned = if DEFAULT_POST_PROCESS_RAN.take() == Some(plugin.type_id()) { HOOK_DEFAULT } else { HOOK_OWN };
        let _ = self.post_process_hook.compare_exchange(HOOK_UNKNOWN, learned, Ordering::Relaxed, Ordering::Relaxed);
        result
    }

    /// Calls a hook in isolation: an error or a panic becomes a
    /// [`HookFailure`], recorded in the plugin's health and reported to the
    /// observer; `None` is returned and the caller goes on.
    pub fn call<T>(&self, hook: &'static str, f: impl FnOnce(&dyn Plugin) -> HookResult<T>) -> Option<T> {
        self.try_call(hook, f).ok()
    }

    /// [`RegisteredPlugin::call`] that also hands the error back (for retries).
    pub fn try_call<T>(&self, hook: &'static str, f: impl FnOnce(&dyn Plugin) -> HookResult<T>) -> Result<T, PluginError> {
        let (error, panicked) = match catch_unwind(AssertUnwindSafe(|| f(&*self.plugin))) {
            Ok(Ok(v)) => return Ok(v),
            // The request was wrong, not the plugin: no failure to record.
            Ok(Err(e)) if e.is_user_error() => return Err(e),
            Ok(Err(e)) => (e, false),
            Err(payload) => {
                let msg = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
                (PluginError::new(format!("panicked: {msg}")), true)
            }
        };
        let failure = HookFailure { slug: self.meta.slug.clone(), hook, message: error.message().to_string(), panicked };
        if let Ok(mut h) = self.health.lock() {
            h.failures += 1;
            h.last = Some(failure.clone());
        }
        if let Some(observe) = OBSERVER.get() {
            observe(&failure);
        }
        Err(error)
    }
}

/// The option key that records whether a plugin is on in a project; no plugin may declare it.
pub const RESERVED_OPTION: &str = "enabled";

type Observer = Box<dyn Fn(&HookFailure) + Send + Sync>;

static OBSERVER: OnceLock<Observer> = OnceLock::new();

/// Sets the function told about every hook failure (Picket logs and stores them). Only the first call counts.
pub fn set_failure_observer(f: impl Fn(&HookFailure) + Send + Sync + 'static) {
    let _ = OBSERVER.set(Box::new(f));
}

/// Everything registered: plugins, interfaces, filters and views.
pub struct Registry {
    plugins: Vec<RegisteredPlugin>,
    interfaces: Vec<Arc<dyn Interface>>,
    filters: Vec<Arc<dyn EventFilter>>,
    views: Vec<Arc<dyn AggregateView>>,
    problems: Vec<String>,
}

impl Registry {
    /// The registry of everything linked into this binary, built on first use.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::from_inventory)
    }

    /// Builds a registry from the link-time registrations.
    pub fn from_inventory() -> Registry {
        let mut b = RegistryBuilder::default();
        for r in inventory::iter::<PluginRegistration> {
            b.add_plugin((r.make)(), r.module);
        }
        for r in inventory::iter::<InterfaceRegistration> {
            b.add_interface((r.make)(), r.module);
        }
        for r in inventory::iter::<FilterRegistration> {
            b.add_filter((r.make)(), r.module);
        }
        for r in inventory::iter::<ViewRegistration> {
            b.add_view((r.make)(), r.module);
        }
        b.build()
    }

    /// An empty builder (tests assemble registries by hand).
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Every plugin, in title order.
    pub fn plugins(&self) -> &[RegisteredPlugin] {
        &self.plugins
    }

    /// A plugin by slug.
    pub fn get(&self, slug: &str) -> Option<&RegisteredPlugin> {
        self.plugins.iter().find(|p| p.meta.slug == slug)
    }

    /// Plugins enabled for a project, given the project's stored choices (slug → on/off).
    pub fn for_project<'a>(&'a self, choices: &'a BTreeMap<String, bool>) -> impl Iterator<Item = &'a RegisteredPlugin> + 'a {
        self.plugins.iter().filter(move |p| p.is_enabled(choices.get(&p.meta.slug).copied()))
    }

    /// Plugins with a site-wide configuration form.
    pub fn for_site(&self) -> impl Iterator<Item = &RegisteredPlugin> {
        self.plugins.iter().filter(|p| !p.plugin.site_options().is_empty())
    }

    /// The first answer that is not `None`, asking `plugins` in order; a
    /// failing plugin is skipped.
    pub fn first<'a, T>(plugins: impl IntoIterator<Item = &'a RegisteredPlugin>, hook: &'static str, f: impl Fn(&dyn Plugin) -> HookResult<Option<T>>) -> Option<T> {
        plugins.into_iter().find_map(|p| p.call(hook, &f).flatten())
    }

    /// Interfaces, highest score first.
    pub fn interfaces(&self) -> &[Arc<dyn Interface>] {
        &self.interfaces
    }

    /// The interface owning a payload key (or alias).
    pub fn interface(&self, key: &str) -> Option<&Arc<dyn Interface>> {
        self.interfaces.iter().find(|i| i.key() == key || i.aliases().contains(&key))
    }

    /// Filters registered for every project, in registration order sorted by parameter.
    pub fn filters(&self) -> &[Arc<dyn EventFilter>] {
        &self.filters
    }

    /// Aggregate views, sorted by slug.
    pub fn views(&self) -> &[Arc<dyn AggregateView>] {
        &self.views
    }

    /// Registrations refused (duplicate slugs or keys), with what to do.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// Assembles a [`Registry`], refusing duplicates.
#[derive(Default)]
pub struct RegistryBuilder {
    plugins: Vec<RegisteredPlugin>,
    interfaces: Vec<(Arc<dyn Interface>, &'static str)>,
    filters: Vec<(Arc<dyn EventFilter>, &'static str)>,
    views: Vec<(Arc<dyn AggregateView>, &'static str)>,
    problems: Vec<String>,
}

fn crate_of(module: &'static str) -> &'static str {
    module.split("::").next().unwrap_or(module)
}

impl RegistryBuilder {
    /// Adds a plugin (registered by the crate of `module`).
    pub fn add_plugin(&mut self, plugin: Box<dyn Plugin>, module: &'static str) -> &mut Self {
        let mut meta = match catch_unwind(AssertUnwindSafe(|| plugin.meta())) {
            Ok(m) => m,
            Err(_) => {
                self.problems.push(format!("a plugin registered by '{}' panicked in meta(); it is not loaded", crate_of(module)));
                return self;
            }
        };
        if meta.slug.is_empty() {
            meta.slug = crate::plugin::slugify(&meta.title);
        }
        if meta.slug.is_empty() {
            self.problems.push(format!("a plugin registered by '{}' has no title or slug; it is not loaded", crate_of(module)));
            return self;
        }
        let reserved = catch_unwind(AssertUnwindSafe(|| {
            [plugin.project_options(), plugin.site_options(), plugin.user_options()].into_iter().flatten().any(|o| o.key == crate::registry::RESERVED_OPTION)
        }));
        if !matches!(reserved, Ok(false)) {
            self.problems.push(format!(
                "plugin '{}' ({}) declares an option named '{RESERVED_OPTION}' (reserved for enabling it) or panicked listing its options; it is not loaded",
                meta.slug,
                crate_of(module)
            ));
            return self;
        }
        if let Some(other) = self.plugins.iter().find(|p| p.meta.slug == meta.slug) {
            self.problems.push(format!(
                "plugin slug '{}' is registered by both '{}' and '{}'; the second is not loaded: give one of them another slug",
                meta.slug,
                other.source,
                crate_of(module)
            ));
            return self;
        }
        self.plugins.push(RegisteredPlugin { plugin, meta, source: crate_of(module), health: Mutex::new(Health::default()), post_process_hook: AtomicU8::new(HOOK_UNKNOWN) });
        self
    }

    /// Adds an interface.
    pub fn add_interface(&mut self, i: Box<dyn Interface>, module: &'static str) -> &mut Self {
        // Called again on every event: an interface that panics here is not loaded.
        let Ok(keys) = catch_unwind(AssertUnwindSafe(|| {
            let _ = i.score();
            std::iter::once(i.key()).chain(i.aliases().iter().copied()).collect::<Vec<&str>>()
        })) else {
            self.problems.push(format!("an interface registered by '{}' panicked in key(), aliases() or score(); it is not loaded", crate_of(module)));
            return self;
        };
        if let Some((other, by)) = self.interfaces.iter().find(|(o, _)| keys.iter().any(|k| o.key() == *k || o.aliases().contains(k))) {
            self.problems.push(format!(
                "interface key '{}' is claimed by '{}' and again by '{}'; the second is not loaded",
                other.key(),
                crate_of(by),
                crate_of(module)
            ));
            return self;
        }
        self.interfaces.push((Arc::from(i), module));
        self
    }

    /// Adds a filter.
    pub fn add_filter(&mut self, f: Box<dyn EventFilter>, module: &'static str) -> &mut Self {
        if catch_unwind(AssertUnwindSafe(|| (f.query_param(), f.label(), f.targets()))).is_err() {
            self.problems.push(format!("a filter registered by '{}' panicked in query_param(), label() or targets(); it is not loaded", crate_of(module)));
            return self;
        }
        if self.filters.iter().any(|(o, _)| o.query_param() == f.query_param()) {
            self.problems.push(format!("filter parameter '{}' is registered twice (again by '{}'); the second is not loaded", f.query_param(), crate_of(module)));
            return self;
        }
        self.filters.push((Arc::from(f), module));
        self
    }

    /// Adds a view.
    pub fn add_view(&mut self, v: Box<dyn AggregateView>, module: &'static str) -> &mut Self {
        if self.views.iter().any(|(o, _)| o.slug() == v.slug()) {
            self.problems.push(format!("view '{}' is registered twice (again by '{}'); the second is not loaded", v.slug(), crate_of(module)));
            return self;
        }
        self.views.push((Arc::from(v), module));
        self
    }

    /// The registry: plugins by title, interfaces by score, filters by parameter, views by slug.
    pub fn build(self) -> Registry {
        let mut plugins = self.plugins;
        plugins.sort_by(|a, b| a.meta.title.to_lowercase().cmp(&b.meta.title.to_lowercase()).then_with(|| a.meta.slug.cmp(&b.meta.slug)));
        let mut interfaces: Vec<_> = self.interfaces.into_iter().map(|(i, _)| i).collect();
        interfaces.sort_by(|a, b| b.score().cmp(&a.score()).then_with(|| a.key().cmp(b.key())));
        let mut filters: Vec<_> = self.filters.into_iter().map(|(f, _)| f).collect();
        filters.sort_by_key(|f| f.query_param());
        let mut views: Vec<_> = self.views.into_iter().map(|(v, _)| v).collect();
        views.sort_by_key(|v| v.slug());
        Registry { plugins, interfaces, filters, views, problems: self.problems }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PluginMeta;

    struct Named(&'static str, Option<&'static str>);
    impl Plugin for Named {
        fn meta(&self) -> PluginMeta {
            let m = PluginMeta::new(self.0);
            match self.1 {
                Some(s) => m.slug(s),
                None => m,
            }
        }
        fn has_perm(&self, _ctx: &crate::PermContext) -> HookResult<Option<bool>> {
            match self.0 {
                "Boom" => panic!("kaboom"),
                "Fails" => Err(PluginError::new("no")),
                "Yes" => Ok(Some(true)),
                _ => Ok(None),
            }
        }
    }

    fn registry(names: &[(&'static str, Option<&'static str>)]) -> Registry {
        let mut b = Registry::builder();
        for (n, s) in names {
            b.add_plugin(Box::new(Named(n, *s)), "test_crate::module");
        }
        b.build()
    }

    #[test]
    fn plugins_sorted_by_title_with_derived_slugs_and_duplicates_refused() {
        let r = registry(&[("Zeta Alerts", None), ("alpha", None), ("Other", Some("zeta-alerts"))]);
        let slugs: Vec<_> = r.plugins().iter().map(|p| p.slug().to_string()).collect();
        assert_eq!(slugs, ["alpha", "zeta-alerts"]);
        assert!(r.problems()[0].contains("'zeta-alerts' is registered by both 'test_crate' and 'test_crate'"), "{:?}", r.problems());
        assert!(r.get("alpha").is_some());
    }

    #[test]
    fn first_skips_failures_and_none() {
        let r = registry(&[("Boom", None), ("Fails", None), ("None", None), ("Yes", None)]);
        let ctx = crate::PermContext::new(crate::UserRef::new(1, "a@b.c", None), crate::Permission::AddProject);
        let answer = Registry::first(r.plugins(), "has_perm", |p| p.has_perm(&ctx));
        assert_eq!(answer, Some(true));
        let boom = r.get("boom").unwrap().health();
        assert_eq!(boom.failures, 1);
        assert!(boom.last.as_ref().unwrap().panicked);
        assert_eq!(boom.last.unwrap().message, "panicked: kaboom");
        assert_eq!(r.get("fails").unwrap().health().last.unwrap().message, "no");
    }

    /// A plugin with its own `post_process`, which fails (it still has one).
    struct Notifies;
    impl Plugin for Notifies {
        fn meta(&self) -> PluginMeta {
            PluginMeta::new("Notifies")
        }
        fn post_process(&self, _ctx: &PostProcessContext) -> HookResult<()> {
            Err(PluginError::new("the server is down"))
        }
    }

    /// A plugin whose `post_process` panics.
    struct Panics;
    impl Plugin for Panics {
        fn meta(&self) -> PluginMeta {
            PluginMeta::new("Panics")
        }
        fn post_process(&self, _ctx: &PostProcessContext) -> HookResult<()> {
            panic!("kaboom")
        }
    }

    /// A plugin whose hook runs another plugin's first (here the default),
    /// as a wrapper would, before its own work.
    struct Wraps(Named);
    impl Plugin for Wraps {
        fn meta(&self) -> PluginMeta {
            PluginMeta::new("Wraps")
        }
        fn post_process(&self, ctx: &PostProcessContext) -> HookResult<()> {
            self.0.post_process(ctx)
        }
    }

    #[test]
    fn the_first_post_process_call_shows_whether_a_plugin_has_the_hook() {
        let mut b = Registry::builder();
        for p in [Box::new(Named("Quiet", None)) as Box<dyn Plugin>, Box::new(Notifies), Box::new(Panics), Box::new(Wraps(Named("Inner", None)))] {
            b.add_plugin(p, "test_crate");
        }
        let r = b.build();
        let ctx = PostProcessContext::new(
            crate::ProjectRef::new(1, "org", "p", "P"),
            crate::IssueRef::new(1, 1, "t"),
            crate::Event::from_data(1, serde_json::Map::new()),
            true,
            false,
            crate::OptionValues::default(),
        );
        // Unknown until called: assumed to have one.
        assert!(r.plugins().iter().all(RegisteredPlugin::may_post_process));
        for slug in ["notifies", "panics", "wraps", "quiet"] {
            let _ = r.get(slug).unwrap().post_process(&ctx);
        }
        assert!(!r.get("quiet").unwrap().may_post_process());
        assert!(r.get("notifies").unwrap().may_post_process(), "a failing hook is still a hook");
        assert!(r.get("panics").unwrap().may_post_process(), "a panicking hook is still a hook");
        assert!(r.get("wraps").unwrap().may_post_process(), "a hook that runs another plugin's default is still a hook");
    }

    #[test]
    fn enablement_follows_the_meta() {
        let r = registry(&[("A", None)]);
        let p = r.get("a").unwrap();
        assert!(!p.is_enabled(None));
        assert!(p.is_enabled(Some(true)));
        let mut choices = BTreeMap::new();
        choices.insert("a".to_string(), true);
        assert_eq!(r.for_project(&choices).count(), 1);
    }
}
