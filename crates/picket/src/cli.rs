//! The command line. Admin commands open the same database as the server and
//! work while it runs (SQLite allows one writer at a time and waits for it).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use picket_store::{accounts, Store};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "picket", version, about = "A self-hosted error tracker for the Sentry SDKs")]
struct Cli {
    /// Configuration file (default: ./picket.toml if it exists).
    #[arg(long, global = true, env = "PICKET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (ingest, API, digest worker).
    ///
    /// Settings come from the configuration file (--config, else ./picket.toml if present), then
    /// PICKET_* environment variables: PICKET_BIND (default 127.0.0.1:9000), PICKET_DATA_DIR
    /// (./picket-data), PICKET_URL_PREFIX, PICKET_LOG, ... Every option is in docs/configuration.md.
    Serve,
    /// Create a user, or set the password of an existing one.
    Createuser {
        #[arg(long)]
        email: String,
        /// The password (prefer PICKET_PASSWORD, which stays out of shell history).
        #[arg(long, env = "PICKET_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Give the user every permission everywhere.
        #[arg(long)]
        superuser: bool,
    },
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check the configuration and the database, and say what is wrong.
    Check,
    /// Write a consistent, compacted copy of the database to a new file, beside a
    /// serving Picket. To restore: stop Picket, move the database and its -wal and
    /// -shm files aside, and put the copy in place of the database.
    Backup {
        /// The new file (it must not exist).
        to: PathBuf,
    },
    /// Delete events, issues and other data older than the retention period now
    /// (`picket serve` does it every hour on its own). Safe beside a serving Picket.
    Cleanup {
        /// Delete what is older than this (`30d`, `12h`, `90m`, `3600s`); the
        /// default is `retention_days` (PICKET_RETENTION_DAYS, 90).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
    },
    /// Installed plugins.
    Plugins {
        #[command(subcommand)]
        command: crate::plugins_cmd::PluginsCommand,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a user to an organization (or change their role).
    AddMember {
        slug: String,
        #[arg(long)]
        email: String,
        /// member, admin or owner.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Remove a user from an organization.
    RemoveMember {
        slug: String,
        #[arg(long)]
        email: String,
    },
    /// List organizations.
    List,
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// List projects (of one organization, if given): ORG/SLUG, name, id.
    List {
        /// Only this organization's.
        org: Option<String>,
    },
    /// Create a project; prints its DSN as the last line.
    Create {
        /// ORG/SLUG
        path: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Add a DSN key to a project; prints the DSN as the last line. With
    /// --public-key, keeps a key from another Sentry server so SDKs need no change.
    AddKey {
        /// ORG/SLUG
        path: String,
        /// 32 hex digits (a dashed UUID is accepted); random if absent.
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long, default_value = "Default")]
        label: String,
    },
    /// Print the DSNs of a project's keys (disabled ones on stderr).
    Dsn {
        /// ORG/SLUG
        path: String,
    },
    /// Disable a DSN key: its events are refused (403) until it is enabled again.
    DisableKey {
        /// ORG/SLUG
        path: String,
        /// The key's public part (the user part of the DSN).
        public_key: String,
    },
    /// Enable a disabled DSN key.
    EnableKey {
        /// ORG/SLUG
        path: String,
        public_key: String,
    },
    /// Delete a DSN key for good.
    RemoveKey {
        /// ORG/SLUG
        path: String,
        public_key: String,
    },
    /// Set which browser origins may send events (`*` for any, the default).
    AllowedOrigins {
        /// ORG/SLUG
        path: String,
        /// Origins such as https://app.example.com, or `*`.
        #[arg(required = true)]
        origins: Vec<String>,
    },
    /// Delete a project with its keys, events, issues and everything else it holds.
    /// Without --yes, says what it would delete. Safe beside a serving Picket: its
    /// keys go first, then its data in short chunks.
    Remove {
        /// ORG/SLUG
        path: String,
        /// Delete: without it, nothing is changed.
        #[arg(long)]
        yes: bool,
    },
    /// Limit how many events a project's keys accept (COUNT per WINDOW seconds); 0 removes the limit.
    RateLimit {
        /// ORG/SLUG
        path: String,
        #[arg(long)]
        count: i64,
        #[arg(long, default_value_t = 60)]
        window: i64,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user; prints it as the last line (it is shown only once).
    Create {
        #[arg(long)]
        email: String,
    },
    /// List a user's API tokens (their ids and when they were created).
    List {
        #[arg(long)]
        email: String,
    },
    /// Revoke API tokens: by id (see `token list`), every token of a user, or a token itself.
    Revoke {
        /// Token ids of the user given with --email.
        ids: Vec<i64>,
        #[arg(long)]
        email: Option<String>,
        /// Every token of the user given with --email.
        #[arg(long, requires = "email")]
        all: bool,
        /// The token itself (say, one that leaked); prefer PICKET_TOKEN, which stays out of shell history.
        #[arg(long, env = "PICKET_TOKEN", hide_env_values = true, conflicts_with_all = ["ids", "all"])]
        token: Option<String>,
    },
}

/// Within this long a running server applies a change to keys and projects it caches.
const SERVER_CACHE_NOTE: &str = "a running server applies it within 10 seconds";

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config)?;
    // `serve` logs them and `check` reports them; the other commands must
    // not act silently on, say, the default database because of a typo.
    if !matches!(cli.command, Command::Serve | Command::Check) {
        for warning in config.warnings() {
            eprintln!("warning: {warning}");
        }
    }
    match cli.command {
        Command::Serve => serve(config),
        Command::Createuser { email, password, superuser } => {
            let Some(password) = password else {
                bail!("no password given: set PICKET_PASSWORD (it stays out of shell history) or pass --password");
            };
            if password.len() < 8 {
                bail!("password too short: use at least 8 characters");
            }
            let store = open_store(&config)?;
            let hash = accounts::hash_password(&password)?;
            let (user, created) = store.write_blocking(move |c| accounts::upsert_user(c, &email, &hash, superuser))?;
            println!("{} user {}{}", if created { "created" } else { "updated" }, user.email, if user.is_superuser { " (superuser)" } else { "" });
            Ok(())
        }
        Command::Org { command: OrgCommand::Create { slug, name } } => {
            let store = open_store(&config)?;
            let name = name.unwrap_or_else(|| slug.clone());
            let org = store.write_blocking(move |c| accounts::create_org(c, &slug, &name))?;
            println!("created organization {} ({})", org.slug, org.name);
            Ok(())
        }
        Command::Org { command: OrgCommand::AddMember { slug, email, role } } => {
            let store = open_store(&config)?;
            let (r, org_slug, email_for_output) = (role.clone(), slug.clone(), email.clone());
            store.write_blocking(move |c| {
                let org = accounts::org_by_slug(c, &slug)?;
                let user = accounts::user_by_email(c, &email)?;
                accounts::set_member(c, org.id, user.id, &r)
            })?;
            println!("{} is now {role} of {org_slug}", email_for_output);
            Ok(())
        }
        Command::Org { command: OrgCommand::RemoveMember { slug, email } } => {
            let store = open_store(&config)?;
            let (s2, e2) = (slug.clone(), email.clone());
            let removed = store.write_blocking(move |c| {
                let org = accounts::org_by_slug(c, &s2)?;
                let user = accounts::user_by_email(c, &e2)?;
                accounts::remove_member(c, org.id, user.id)
            })?;
            if !removed {
                bail!("{email} is not a member of {slug}");
            }
            println!("removed {email} from {slug} (their API tokens stay valid for other organizations they belong to)");
            Ok(())
        }
        Command::Org { command: OrgCommand::List } => {
            let store = open_store(&config)?;
            for org in store.read(accounts::list_orgs)? {
                println!("{}\t{}", org.slug, org.name);
            }
            Ok(())
        }
        Command::Project { command: ProjectCommand::List { org } } => {
            let store = open_store(&config)?;
            if let Some(org) = &org {
                let org = org.clone();
                store.read(move |c| accounts::org_by_slug(c, &org))?;
            }
            for p in store.read(move |c| accounts::list_projects(c, org.as_deref()))? {
                println!("{}/{}\t{}\t{}", p.org_slug, p.slug, p.name, p.id);
            }
            Ok(())
        }
        Command::Project { command: ProjectCommand::Create { path, name, platform } } => {
            let (org, slug) = split_project_path(&path)?;
            let store = open_store(&config)?;
            let name = name.unwrap_or_else(|| slug.clone());
            let (project, key) = store.write_blocking(move |c| accounts::create_project(c, &org, &slug, &name, platform.as_deref()))?;
            eprintln!("created project {}/{} (id {})", project.org_slug, project.slug, project.id);
            println!("{}", picket_protocol::dsn::build_dsn(&config.public_url(), &key.public_key, project.id));
            Ok(())
        }
        Command::Project { command: ProjectCommand::AddKey { path, public_key, label } } => {
            let (org, slug) = split_project_path(&path)?;
            let store = open_store(&config)?;
            let key = store.write_blocking(move |c| {
                let p = accounts::project_by_slug(c, &org, &slug)?;
                match public_key {
                    Some(k) => accounts::import_key(c, p.id, &k, &label),
                    None => accounts::create_key(c, p.id, &label),
                }
            })?;
            println!("{}", picket_protocol::dsn::build_dsn(&config.public_url(), &key.public_key, key.project_id));
            Ok(())
        }
        Command::Project { command: ProjectCommand::Dsn { path } } => {
            let (org, slug) = split_project_path(&path)?;
            let store = open_store(&config)?;
            let keys = store.read(|c| {
                let p = accounts::project_by_slug(c, &org, &slug)?;
                accounts::keys_for_project(c, p.id)
            })?;
            for k in keys {
                let dsn = picket_protocol::dsn::build_dsn(&config.public_url(), &k.public_key, k.project_id);
                if k.is_active {
                    println!("{dsn}");
                } else {
                    eprintln!("disabled: {dsn}");
                }
            }
            Ok(())
        }
        Command::Project { command: ProjectCommand::DisableKey { path, public_key } } => set_key(&config, &path, &public_key, KeyChange::Disable),
        Command::Project { command: ProjectCommand::EnableKey { path, public_key } } => set_key(&config, &path, &public_key, KeyChange::Enable),
        Command::Project { command: ProjectCommand::RemoveKey { path, public_key } } => set_key(&config, &path, &public_key, KeyChange::Remove),
        Command::Project { command: ProjectCommand::Remove { path, yes } } => remove_project(&config, &path, yes),
        Command::Project { command: ProjectCommand::AllowedOrigins { path, origins } } => {
            let (org, slug) = split_project_path(&path)?;
            for o in &origins {
                if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                    bail!("invalid origin '{o}': expected scheme://host[:port], e.g. https://app.example.com, or *");
                }
            }
            let list = origins.join(" ");
            let store = open_store(&config)?;
            store.write_blocking(move |c| {
                let p = accounts::project_by_slug(c, &org, &slug)?;
                accounts::set_allowed_origins(c, p.id, &list)
            })?;
            println!("allowed origins: {} ({SERVER_CACHE_NOTE})", origins.join(", "));
            Ok(())
        }
        Command::Project { command: ProjectCommand::RateLimit { path, count, window } } => {
            let (org, slug) = split_project_path(&path)?;
            if count < 0 || window <= 0 {
                bail!("invalid rate limit: --count must be 0 or more and --window more than 0");
            }
            let store = open_store(&config)?;
            store.write_blocking(move |c| {
                let p = accounts::project_by_slug(c, &org, &slug)?;
                for k in accounts::keys_for_project(c, p.id)? {
                    accounts::set_key_rate_limit(c, k.id, (count > 0).then_some((count, window)))?;
                }
                Ok(())
            })?;
            println!("{}", if count > 0 { format!("limited to {count} events per {window}s per key ({SERVER_CACHE_NOTE})") } else { "rate limit removed".into() });
            Ok(())
        }
        Command::Token { command: TokenCommand::Create { email } } => {
            let store = open_store(&config)?;
            let token = store.write_blocking(move |c| {
                let user = accounts::user_by_email(c, &email)?;
                accounts::create_token(c, user.id)
            })?;
            eprintln!("new API token (shown only once; use it as 'Authorization: Bearer <token>'):");
            println!("{token}");
            Ok(())
        }
        Command::Token { command: TokenCommand::List { email } } => {
            let store = open_store(&config)?;
            let tokens = store.read(move |c| {
                let user = accounts::user_by_email(c, &email)?;
                accounts::tokens_for_user(c, user.id)
            })?;
            if tokens.is_empty() {
                eprintln!("no API tokens");
            }
            for (id, created) in tokens {
                println!("{id}\tcreated {}", picket_core::normalize::format_timestamp(created));
            }
            Ok(())
        }
        Command::Token { command: TokenCommand::Revoke { ids, email, all, token } } => {
            let store = open_store(&config)?;
            if let Some(token) = token {
                let Some(user) = store.write_blocking(move |c| accounts::revoke_token_value(c, &token))? else {
                    bail!("no such token: it was revoked already, or mistyped");
                };
                println!("revoked the token of {}", user.email);
                return Ok(());
            }
            let Some(email) = email else { bail!("say whose tokens: --email (with token ids or --all), or give the token itself with --token") };
            if ids.is_empty() && !all {
                bail!("say which tokens of {email}: their ids (see: picket token list --email {email}) or --all");
            }
            let e2 = email.clone();
            let (revoked, missing) = store.write_blocking(move |c| {
                let user = accounts::user_by_email(c, &e2)?;
                let ids = if all { accounts::tokens_for_user(c, user.id)?.into_iter().map(|t| t.0).collect() } else { ids };
                let (mut revoked, mut missing) = (0, Vec::new());
                for id in ids {
                    if accounts::revoke_token(c, user.id, id)? {
                        revoked += 1;
                    } else {
                        missing.push(id);
                    }
                }
                Ok((revoked, missing))
            })?;
            println!("revoked {revoked} token{} of {email}", if revoked == 1 { "" } else { "s" });
            if !missing.is_empty() {
                bail!("{email} has no token with id {}", missing.iter().map(i64::to_string).collect::<Vec<_>>().join(", "));
            }
            Ok(())
        }
        Command::Check => check(&config),
        Command::Cleanup { older_than } => cleanup(&config, older_than),
        Command::Backup { to } => {
            let path = config.database_path()?;
            let started = std::time::Instant::now();
            let report = picket_store::backup(&path, &to).with_context(|| format!("cannot back up '{}' to '{}'", path.display(), to.display()))?;
            if report.check != "ok" {
                bail!("the copy did not pass SQLite's check ({}) and was removed; the database is untouched: run picket check, then try again", report.check);
            }
            println!(
                "backed up {} to {} ({:.1} MB, checked) in {:.1} s; to restore, stop picket, move the database and its -wal and -shm files aside, and put the copy in its place",
                path.display(),
                to.display(),
                report.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Plugins { command } => crate::plugins_cmd::run(command, &open_store(&config)?),
    }
}

#[derive(Clone, Copy)]
enum KeyChange {
    Disable,
    Enable,
    Remove,
}

fn set_key(config: &Config, path: &str, public_key: &str, change: KeyChange) -> Result<()> {
    let (org, slug) = split_project_path(path)?;
    let store = open_store(config)?;
    let public = public_key.to_string();
    let key = store.write_blocking(move |c| {
        let p = accounts::project_by_slug(c, &org, &slug)?;
        let key = accounts::project_key(c, p.id, &public)?;
        match change {
            KeyChange::Disable => accounts::set_key_active(c, key.id, false)?,
            KeyChange::Enable => accounts::set_key_active(c, key.id, true)?,
            KeyChange::Remove => accounts::remove_key(c, key.id)?,
        }
        Ok(key)
    })?;
    let what = match change {
        KeyChange::Disable => "disabled",
        KeyChange::Enable => "enabled",
        KeyChange::Remove => "removed",
    };
    println!("{what} key {} of {path} ({SERVER_CACHE_NOTE})", key.public_key);
    Ok(())
}

fn split_project_path(path: &str) -> Result<(String, String)> {
    match path.split_once('/') {
        Some((org, slug)) if !org.is_empty() && !slug.is_empty() && !slug.contains('/') => Ok((org.to_string(), slug.to_string())),
        _ => bail!("invalid project '{path}': expected ORG/SLUG, e.g. acme/web"),
    }
}

/// Takes the lock that only one `picket serve` per database may hold, for
/// as long as the returned file stays open (the system drops it when the
/// process ends, however it ends). Two digests on one database would take
/// the same queued envelopes, and each would recount the tag counts the
/// other kept back. The CLI's other commands need no lock.
fn lock_for_serving(database: &std::path::Path) -> Result<std::fs::File> {
    let mut name = database.as_os_str().to_owned();
    name.push(".serve-lock");
    let path = std::path::PathBuf::from(name);
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).with_context(|| format!("cannot open '{}'", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
            bail!("another `picket serve`{who} is already using the database '{}'; stop it first, or give this one its own data_dir (PICKET_DATA_DIR)", database.display());
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock '{}'", path.display())),
    }
    use std::io::{Seek, Write};
    // The holder's pid, for the message above; best effort.
    let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| write!(file, "{}", std::process::id()));
    Ok(file)
}

/// `picket cleanup`: the retention run of `picket serve`, now, with its
/// progress on stderr (once a second) and the total on stdout.
fn cleanup(config: &Config, older_than: Option<std::time::Duration>) -> Result<()> {
    let Some(age) = older_than.or_else(|| config.retention()) else {
        bail!("retention_days is 0 (keep everything), so there is nothing to clean up; give an age to delete older data anyway, e.g. picket cleanup --older-than 30d");
    };
    let store = open_store(config)?;
    let cutoff = picket_store::now() - age.as_secs_f64();
    let started = std::time::Instant::now();
    let deleted = with_progress(|progress| picket_store::retention::delete(&store, picket_store::retention::Selection::OlderThan(cutoff), progress))?;
    store.close();
    if deleted.is_empty() {
        println!("nothing is older than {}", format_age(age));
    } else {
        println!("deleted {deleted} older than {} in {:.1} s", format_age(age), started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `picket project remove`: the keys first (so that no more events come),
/// then the data in chunks with progress on stderr, then the project. A
/// serving Picket finishes a deletion that was interrupted.
fn remove_project(config: &Config, path: &str, yes: bool) -> Result<()> {
    use picket_store::retention;
    let (org, slug) = split_project_path(path)?;
    let store = open_store(config)?;
    let (pid, resumed) = match store.read(|c| accounts::project_by_slug(c, &org, &slug)) {
        Ok(project) => (project.id, false),
        // Its deletion was started and did not finish (interrupted): finish it.
        Err(picket_store::StoreError::NotFound(what)) => match store.read(|c| accounts::project_being_deleted(c, &org, &slug))? {
            Some(id) => (id, true),
            None => bail!("{what} not found; picket project list shows the projects"),
        },
        Err(e) => return Err(e.into()),
    };
    if resumed {
        if !yes {
            bail!("the deletion of {org}/{slug} was started and did not finish; run again with --yes to finish it");
        }
        eprintln!("finishing the deletion of {org}/{slug}, which was interrupted");
    } else if !yes {
        let held = store.read(|c| {
            let issues = c.query_row(&format!("SELECT COUNT(*) FROM issues WHERE project_id = ? AND status <> '{}'", picket_store::query::DELETED), [pid], |r| r.get::<_, i64>(0))?;
            Ok(retention::Deleted { events: picket_store::query::count_events(c, pid)? as u64, issues: issues as u64, ..Default::default() })
        })?;
        bail!("this deletes project {org}/{slug} for good, with its keys and {held} (and any transactions, attachments and feedback); run again with --yes to do it");
    }
    let started = std::time::Instant::now();
    let deleted = with_progress(|progress| retention::delete_project(&store, pid, progress))?;
    store.close();
    println!("deleted project {org}/{slug}: {deleted} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a deletion to its end, with what it deleted so far on stderr once a second.
fn with_progress(
    run: impl FnOnce(&mut dyn FnMut(&picket_store::retention::Deleted) -> std::ops::ControlFlow<()>) -> picket_store::Result<picket_store::retention::Deleted>,
) -> Result<picket_store::retention::Deleted> {
    let started = std::time::Instant::now();
    let mut shown = std::time::Instant::now();
    let mut progress = |so_far: &picket_store::retention::Deleted| {
        if shown.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("deleting... {so_far} ({:.0} s)", started.elapsed().as_secs_f64());
            shown = std::time::Instant::now();
        }
        std::ops::ControlFlow::Continue(())
    };
    Ok(run(&mut progress)?)
}

/// An age such as `30d`, `12h`, `90m` or `3600s` (a number and a unit).
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("'{text}': expected a number and a unit (d, h, m or s), e.g. 30d or 12h")),
    };
    let n: u64 = number.parse().map_err(|_| format!("'{text}': expected a whole number before the unit, e.g. 30d"))?;
    n.checked_mul(seconds_per).filter(|&s| s <= 36_500 * 86_400).map(std::time::Duration::from_secs).ok_or_else(|| format!("'{text}': at most 36500d"))
}

/// An age as `parse_age` reads it, in its largest whole unit.
fn format_age(age: std::time::Duration) -> String {
    let s = age.as_secs();
    match s {
        _ if s > 0 && s.is_multiple_of(86_400) => format!("{} days", s / 86_400),
        _ if s > 0 && s.is_multiple_of(3_600) => format!("{} hours", s / 3_600),
        _ if s > 0 && s.is_multiple_of(60) => format!("{} minutes", s / 60),
        _ => format!("{s} seconds"),
    }
}

fn open_store(config: &Config) -> Result<Store> {
    let path = config.database_path()?;
    Store::open(&path, config.durability).with_context(|| format!("cannot open the database '{}'", path.display()))
}

fn init_tracing(config: &Config) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log_level).with_context(|| format!("invalid log level '{}'", config.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
    // Panics (a plugin's, caught and skipped, or Picket's own) go to the log
    // like everything else, so that JSON logs stay one object per line.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%location, %thread, panic = %message, "a thread panicked");
    }));
    Ok(())
}

fn check(config: &Config) -> Result<()> {
    let path = config.database_path()?;
    println!("configuration: ok (bind {}, public URL {})", config.bind, config.public_url());
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    // Read only: a check must not create the database it was pointed at by
    // mistake, nor migrate one an older Picket still serves.
    if !path.exists() {
        bail!(
            "no database at '{}': nothing to check. `picket serve` creates it; if Picket has run before, this command \
             has other settings than the server (data_dir or database_url: PICKET_DATA_DIR, PICKET_DATABASE_URL or the \
             configuration file)",
            path.display()
        );
    }
    let report = picket_store::inspect(&path).with_context(|| format!("cannot read the database '{}'", path.display()))?;
    if report.integrity != "ok" {
        bail!("database '{}' failed its integrity check: {}; restore it from a backup", path.display(), report.integrity);
    }
    let (current, latest) = report.schema_version;
    match (report.users, report.queued) {
        (Some(users), Some(queued)) => {
            let users_word = if users == 1 { "user" } else { "users" };
            println!("database: ok ({}, schema version {current} of {latest}, {users} {users_word}, {queued} envelopes waiting)", path.display());
            if users == 0 {
                println!("note: no users yet; create one with: picket createuser --email you@example.com --password ... --superuser");
            }
            if let Some(n @ 1..) = report.being_deleted {
                println!("note: {n} project{} being deleted; picket serve finishes the deletion (or run picket project remove ORG/SLUG --yes again)", if n == 1 { " is" } else { "s are" });
            }
        }
        _ if current > latest => bail!(
            "database '{}' has schema version {current}, newer than this build's {latest}: it was written by a newer Picket; run that version",
            path.display()
        ),
        _ => println!(
            "database: ok ({}, schema version {current} of {latest}: `picket serve` migrates it on start; back it up first)",
            path.display()
        ),
    }
    std::net::TcpListener::bind(&config.bind)
        .map(|_| println!("bind address {}: free", config.bind))
        .unwrap_or_else(|e| println!("bind address {}: not free ({e}); is picket already running?", config.bind));
    Ok(())
}

fn serve(config: Config) -> Result<()> {
    let started = std::time::Instant::now();
    // Database reads run on blocking threads; a small bound keeps memory flat
    // under load (each thread has its own stack and allocator caches).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // After opening, which creates the data directory; opening (and
        // migrating) beside a serving Picket is what the other commands do too.
        let store = open_store(&config)?;
        let _serving = lock_for_serving(store.path())?;
        let settings = picket_server::Settings {
            url_prefix: config.public_url(),
            max_queue: config.ingest.max_queue,
            trust_forwarded_for: config.ingest.trust_forwarded_for,
            digest_batch: config.digest.batch_size,
        };
        let state = picket_server::AppState::new(store.clone(), settings)?;
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("cannot listen on {}; is another picket running? (set bind or PICKET_BIND)", config.bind))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(picket_server::worker::run(state.clone(), stop_rx.clone()));
        let post_process = tokio::spawn(picket_server::plugins::run_post_process(state.clone(), stop_rx.clone()));
        let refusals = tokio::spawn(picket_server::ingest::write_refusals(state.clone(), stop_rx.clone()));
        let retention = tokio::spawn(picket_server::retention::run(store.clone(), config.retention(), stop_rx));
        picket_server::retention::resume_deletions(&store).await;
        let app = picket_server::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tracing::info!(bind = %config.bind, database = %store.path().display(), startup_ms = started.elapsed().as_millis() as u64, "picket is serving");
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        print_first_start_help(&store, &config);
        // On SIGTERM/Ctrl-C: stop accepting, let requests in flight finish
        // (their events are committed before they are answered), but never
        // wait more than 10 s for slow clients.
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = drain_tx.send(());
        });
        tokio::select! {
            r = server => r.context("server failed")?,
            _ = async {
                let _ = drain_rx.await;
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            } => tracing::warn!("connections still open after 10 s; closing them"),
        }
        tracing::info!("shutting down: finishing the digest batch in hand");
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), worker).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), post_process).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), refusals).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), retention).await;
        store.close();
        Ok(())
    })
}

/// The commands act on the database of their own configuration: say how to
/// give them this server's, when it came from the environment or a file.
fn same_settings_hint() -> String {
    let vars: Vec<String> = ["PICKET_CONFIG", "PICKET_DATA_DIR", "PICKET_DATABASE_URL", "PICKET_BIND", "PICKET_URL_PREFIX"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect();
    if vars.is_empty() {
        String::new()
    } else {
        format!("\nRun those commands with this server's settings, e.g. in a shell with:\n  export {}\n", vars.join(" "))
    }
}

fn print_first_start_help(store: &Store, config: &Config) {
    let users = store.read(accounts::count_users).unwrap_or(0);
    let orgs = store.read(accounts::list_orgs).map(|o| o.len()).unwrap_or(0);
    if users > 0 && orgs > 0 {
        return;
    }
    if config.log_format == "json" {
        tracing::info!(data_dir = %config.data_dir.display(), "first start: create a user, an organization and a project with picket createuser, org create and project create (see README.md)");
        return;
    }
    let url = config.public_url();
    eprintln!(
        "\nPicket is running at {url} with its data in {dir}.\n\
         To get a DSN for your SDK, in another terminal:\n\
         \n  picket createuser --email you@example.com --password 'a long password' --superuser\n\
         \x20 picket org create acme\n\
         \x20 picket project create acme/web --platform python      # prints the DSN\n\
         \x20 picket token create --email you@example.com           # prints an API token\n\
         \nThen: curl -H 'Authorization: Bearer <token>' {url}/api/0/projects/acme/web/issues/\n{same}",
        dir = config.data_dir.display(),
        same = same_settings_hint(),
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_and_print_in_their_units() {
        let age = |t: &str| parse_age(t).map(|d| d.as_secs());
        assert_eq!(age("30d"), Ok(30 * 86_400));
        assert_eq!(age("12h"), Ok(12 * 3_600));
        assert_eq!(age(" 90m "), Ok(5_400));
        assert_eq!(age("0s"), Ok(0));
        for bad in ["30", "d", "-1d", "1.5d", "30days", "99999999999999999999d", "36501d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
        assert_eq!(format_age(Duration::from_secs(30 * 86_400)), "30 days");
        assert_eq!(format_age(Duration::from_secs(5_400)), "90 minutes");
        assert_eq!(format_age(Duration::from_secs(0)), "0 seconds");
    }

    use std::time::Duration;
}
