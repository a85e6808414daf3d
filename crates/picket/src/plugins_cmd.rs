//! `picket plugins ...`: what is installed, where it is enabled, how it fares,
//! and its site-wide options.

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use picket_plugin_api::Registry;
use picket_store::plugins::{self as stored, Scope};
use picket_store::Store;
use serde_json::Value;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List plugins: slug, title, version, author, type, source, where enabled, failures.
    List,
    /// Show a plugin's site-wide options.
    Show {
        /// The plugin's slug, as `picket plugins list` shows it.
        slug: String,
    },
    /// Set site-wide options: `picket plugins set mail smtp_host=mail.local smtp_port=25`.
    Set {
        /// The plugin's slug, as `picket plugins list` shows it.
        slug: String,
        /// `key=value` pairs; an empty value removes the option.
        #[arg(required = true)]
        values: Vec<String>,
    },
}

pub fn run(command: PluginsCommand, store: &Store) -> Result<()> {
    let registry = Registry::global();
    match command {
        PluginsCommand::List => {
            let (choices, failures) = store.read(|c| Ok((stored::choices_by_plugin(c)?, stored::failures(c)?)))?;
            println!("{:<18} {:<24} {:<8} {:<10} {:<15} {:<16} {:<9} {:<28} FAILURES", "SLUG", "TITLE", "VERSION", "AUTHOR", "TYPE", "SOURCE", "DEFAULT", "PROJECTS");
            for p in registry.plugins() {
                let m = p.meta();
                let default = if !m.can_enable_for_projects || !m.can_disable {
                    "always"
                } else if m.project_default_enabled {
                    "on"
                } else {
                    "off"
                };
                let projects: Vec<String> = choices.get(p.slug()).into_iter().flatten().map(|(proj, on)| format!("{proj}:{}", if *on { "on" } else { "off" })).collect();
                let failed = match failures.get(p.slug()) {
                    Some((n, hook, err, _)) => format!("{n} (last in {hook}: {})", err.chars().take(80).collect::<String>()),
                    None => "0".into(),
                };
                println!(
                    "{:<18} {:<24} {:<8} {:<10} {:<15} {:<16} {:<9} {:<28} {failed}",
                    p.slug(),
                    m.title,
                    if m.version.is_empty() { "n/a" } else { &m.version },
                    m.author,
                    m.plugin_type,
                    p.source(),
                    default,
                    if projects.is_empty() { "-".to_string() } else { projects.join(",") },
                );
            }
            for problem in registry.problems() {
                eprintln!("warning: {problem}");
            }
            Ok(())
        }
        PluginsCommand::Show { slug } => {
            let p = registry.get(&slug).with_context(|| format!("plugin '{slug}' not found; see: picket plugins list"))?;
            let specs = p.plugin().site_options();
            let s = slug.clone();
            let values = store.read(move |c| stored::options(c, Scope::Site, &s))?;
            if specs.is_empty() {
                println!("plugin '{slug}' has no site-wide options");
            }
            for spec in specs {
                let v = values.get(&spec.key).or(spec.default.as_ref());
                let shown = match v {
                    _ if spec.is_secret() => if values.contains_key(&spec.key) { "(set)".to_string() } else { "(not set)".to_string() },
                    Some(Value::String(s)) => s.clone(),
                    // Numbers are kept as floats: show 25 as 25, not 25.0.
                    Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) => format!("{}", n.as_f64().unwrap_or_default() as i64),
                    Some(v) => v.to_string(),
                    None => "(not set)".to_string(),
                };
                println!("{:<24} {shown:<30} {}", spec.key, spec.label);
            }
            Ok(())
        }
        PluginsCommand::Set { slug, values } => {
            let p = registry.get(&slug).with_context(|| format!("plugin '{slug}' not found; see: picket plugins list"))?;
            let specs = p.plugin().site_options();
            let mut form = serde_json::Map::new();
            let mut removed = Vec::new();
            for kv in &values {
                let Some((k, v)) = kv.split_once('=') else { bail!("expected key=value, got '{kv}'") };
                let k = k.trim().to_string();
                // `key=` removes, secrets included (a form keeps an empty secret; a command line says what it means).
                if v.is_empty() && specs.iter().any(|s| s.key == k && !s.required) {
                    removed.push((k, None));
                } else {
                    form.insert(k, Value::String(v.to_string()));
                }
            }
            let mut updates = picket_plugin_api::options::validate_form(&specs, &form).map_err(|errors| {
                anyhow::anyhow!("invalid options for '{slug}': {}", errors.iter().map(|(k, e)| format!("{k}: {e}")).collect::<Vec<_>>().join("; "))
            })?;
            updates.extend(removed);
            let n = updates.len();
            store.write_blocking(move |c| stored::set_options(c, Scope::Site, &slug, &updates))?;
            println!("{n} option{} saved; running servers apply them within 2 seconds", if n == 1 { "" } else { "s" });
            Ok(())
        }
    }
}
