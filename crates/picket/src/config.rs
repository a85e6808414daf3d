//! Configuration: built-in defaults, then a TOML file, then `PICKET_*`
//! environment variables (each overriding the one before). Every option is
//! documented in `docs/configuration.md`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use picket_store::Durability;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub bind: String,
    /// Where Picket keeps its data (the SQLite database by default).
    pub data_dir: PathBuf,
    /// `sqlite:PATH`; empty means `sqlite:{data_dir}/picket.sqlite3`.
    pub database_url: String,
    /// Public base URL, used to build DSNs and links.
    pub url_prefix: String,
    /// `full` (fsync on every group commit) or `normal` (survives crashes, not power loss).
    pub durability: Durability,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Log filter, e.g. `info` or `picket=debug,tower_http=info`.
    pub log_level: String,
    /// Days events and other data are kept; 0 keeps everything.
    pub retention_days: u32,
    pub ingest: IngestConfig,
    pub digest: DigestConfig,
    /// `PICKET_*` variables in the environment that mean nothing to Picket
    /// (a typo such as `PICKET_DATADIR` would otherwise be ignored silently).
    #[serde(skip)]
    pub unknown_env: Vec<String>,
}

/// The `PICKET_*` variables Picket reads: the settings, and the secrets and
/// the file the commands take from the environment.
const KNOWN_ENV: &[&str] = &[
    "PICKET_BIND", "PICKET_DATA_DIR", "PICKET_DATABASE_URL", "PICKET_URL_PREFIX", "PICKET_DURABILITY", "PICKET_LOG_FORMAT", "PICKET_LOG",
    "PICKET_RETENTION_DAYS",
    "PICKET_MAX_QUEUE", "PICKET_TRUST_FORWARDED_FOR", "PICKET_DIGEST_BATCH_SIZE", "PICKET_CONFIG", "PICKET_PASSWORD", "PICKET_TOKEN",
];
/// A hundred years: more is a typo (and would overflow the cutoff's arithmetic).
const MAX_RETENTION_DAYS: u32 = 36_500;

/// Prefixes of variables that Picket's own scripts use (tests, benchmarks).
const TOOLING_ENV: &[&str] = &["PICKET_TEST_", "PICKET_BENCH_"];

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Answer 429 when more envelopes than this wait to be digested.
    pub max_queue: i64,
    /// Take client addresses from `X-Forwarded-For` (only behind a proxy you trust).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DigestConfig {
    /// Envelopes digested per transaction.
    pub batch_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:9000".into(),
            data_dir: PathBuf::from("./picket-data"),
            database_url: String::new(),
            url_prefix: String::new(),
            durability: Durability::Full,
            log_format: "text".into(),
            log_level: "info".into(),
            retention_days: 90,
            ingest: IngestConfig::default(),
            digest: DigestConfig::default(),
            unknown_env: Vec::new(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { max_queue: 100_000, trust_forwarded_for: false }
    }
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig { batch_size: 256 }
    }
}

impl Config {
    /// Loads the configuration: `path` if given (it must exist), else
    /// `picket.toml` if present, then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("picket.toml")).filter(|p| p.exists()),
        };
        let mut config = match &file {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("cannot read configuration file '{}'", p.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid configuration file '{}'", p.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.unknown_env = unknown_env(std::env::vars().map(|(k, _)| k));
        config.validate()?;
        Ok(config)
    }

    /// Applies `PICKET_*` variables (read through `get`, for tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let parse_bool = |k: &str, v: String| -> Result<bool> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => bail!("invalid {k}='{v}': use true or false"),
            }
        };
        if let Some(v) = get("PICKET_BIND") {
            self.bind = v;
        }
        if let Some(v) = get("PICKET_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("PICKET_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("PICKET_URL_PREFIX") {
            self.url_prefix = v;
        }
        if let Some(v) = get("PICKET_DURABILITY") {
            self.durability = match v.as_str() {
                "full" => Durability::Full,
                "normal" => Durability::Normal,
                _ => bail!("invalid PICKET_DURABILITY='{v}': use full or normal"),
            };
        }
        if let Some(v) = get("PICKET_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("PICKET_LOG") {
            self.log_level = v;
        }
        if let Some(v) = get("PICKET_RETENTION_DAYS") {
            self.retention_days =
                v.parse().with_context(|| format!("invalid PICKET_RETENTION_DAYS='{v}': expected a whole number of days, or 0 to keep everything"))?;
        }
        if let Some(v) = get("PICKET_MAX_QUEUE") {
            self.ingest.max_queue = v.parse().with_context(|| format!("invalid PICKET_MAX_QUEUE='{v}': expected a number"))?;
        }
        if let Some(v) = get("PICKET_TRUST_FORWARDED_FOR") {
            self.ingest.trust_forwarded_for = parse_bool("PICKET_TRUST_FORWARDED_FOR", v)?;
        }
        if let Some(v) = get("PICKET_DIGEST_BATCH_SIZE") {
            self.digest.batch_size = v.parse().with_context(|| format!("invalid PICKET_DIGEST_BATCH_SIZE='{v}': expected a number"))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        self.bind.parse::<std::net::SocketAddr>().with_context(|| format!("invalid bind address '{}': expected IP:PORT, e.g. 127.0.0.1:9000", self.bind))?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("invalid log_format '{}' (PICKET_LOG_FORMAT): use text or json", self.log_format);
        }
        if self.digest.batch_size == 0 || self.digest.batch_size > 10_000 {
            bail!("invalid digest.batch_size {}: use 1 to 10000", self.digest.batch_size);
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            bail!("invalid retention_days {} (PICKET_RETENTION_DAYS): use 1 to {MAX_RETENTION_DAYS}, or 0 to keep everything", self.retention_days);
        }
        if self.ingest.max_queue < 0 {
            bail!("invalid ingest.max_queue {} (PICKET_MAX_QUEUE): use 1 or more (how many envelopes may wait to be digested before ingest answers 429), or 0 to refuse all events", self.ingest.max_queue);
        }
        let prefix = self.url_prefix.trim();
        if !prefix.is_empty() {
            let host = prefix.strip_prefix("https://").or_else(|| prefix.strip_prefix("http://")).map(|rest| rest.split('/').next().unwrap_or_default());
            if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace) || h.contains('@')) {
                bail!("invalid url_prefix '{prefix}' (PICKET_URL_PREFIX): expected the public http:// or https:// URL of Picket, e.g. https://errors.example.com");
            }
        }
        self.database_path()?;
        Ok(())
    }

    /// Settings that work but are probably not what was meant.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in &self.unknown_env {
            let hint = closest_known(name).map(|k| format!("; did you mean {k}?")).unwrap_or_default();
            out.push(format!("{name} is not a Picket setting and is ignored{hint} (docs/configuration.md lists them)"));
        }
        if self.ingest.max_queue == 0 {
            out.push("ingest.max_queue is 0: every event is refused with 429 (ingest closed); set 1 or more to accept events".to_string());
        }
        let wildcard = self.bind.starts_with("0.0.0.0:") || self.bind.starts_with("[::]:");
        if wildcard && self.url_prefix.trim().is_empty() {
            out.push(format!(
                "bind is {} but url_prefix is not set: DSNs and links say {}, which other machines cannot reach; set url_prefix (PICKET_URL_PREFIX) to the address clients use",
                self.bind,
                self.public_url()
            ));
        }
        out
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> Result<PathBuf> {
        let url = self.database_url.trim();
        if url.is_empty() {
            return Ok(self.data_dir.join("picket.sqlite3"));
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                bail!("invalid database_url '{url}': give a file, e.g. sqlite:./picket-data/picket.sqlite3");
            }
            return Ok(PathBuf::from(path));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            bail!("database_url '{url}': PostgreSQL is not supported by this version of Picket yet; use sqlite:PATH (or leave it empty for the default)");
        }
        bail!("invalid database_url '{url}': expected sqlite:PATH")
    }

    /// How long data is kept (`retention_days`); `None` keeps everything.
    pub fn retention(&self) -> Option<std::time::Duration> {
        (self.retention_days > 0).then(|| std::time::Duration::from_secs(u64::from(self.retention_days) * 86_400))
    }

    /// The public URL: `url_prefix`, else derived from `bind`.
    pub fn public_url(&self) -> String {
        if !self.url_prefix.trim().is_empty() {
            return self.url_prefix.trim().trim_end_matches('/').to_string();
        }
        let bind = self.bind.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
        format!("http://{bind}")
    }
}

/// The `PICKET_*` names among `names` that Picket does not read.
fn unknown_env(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut unknown: Vec<String> =
        names.filter(|k| k.starts_with("PICKET_") && !KNOWN_ENV.contains(&k.as_str()) && !TOOLING_ENV.iter().any(|p| k.starts_with(p))).collect();
    unknown.sort();
    unknown
}

/// The known variable a mistyped one most likely meant: the same letters
/// but for underscores, or one letter apart.
fn closest_known(name: &str) -> Option<&'static str> {
    let squash = |s: &str| s.replace('_', "");
    KNOWN_ENV.iter().copied().find(|k| squash(k) == squash(name)).or_else(|| KNOWN_ENV.iter().copied().find(|k| edit_distance(k, name) <= 1))
}

/// Edits (insert, delete, change, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let change = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + change);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_overrides_file() {
        let mut c: Config = toml::from_str("bind = \"0.0.0.0:8000\"\n[ingest]\nmax_queue = 5\n").unwrap();
        let env: HashMap<&str, &str> = [("PICKET_BIND", "127.0.0.1:9100"), ("PICKET_URL_PREFIX", "https://errors.example.com/")].into();
        c.apply_env(|k| env.get(k).map(|s| s.to_string())).unwrap();
        assert_eq!(c.bind, "127.0.0.1:9100");
        assert_eq!(c.ingest.max_queue, 5);
        assert_eq!(c.public_url(), "https://errors.example.com");
        c.validate().unwrap();
    }

    #[test]
    fn database_urls() {
        let mut c = Config::default();
        assert_eq!(c.database_path().unwrap(), PathBuf::from("./picket-data/picket.sqlite3"));
        c.database_url = "sqlite:/tmp/x.db".into();
        assert_eq!(c.database_path().unwrap(), PathBuf::from("/tmp/x.db"));
        c.database_url = "postgres://localhost/picket".into();
        assert!(c.database_path().unwrap_err().to_string().contains("not supported"));
    }

    #[test]
    fn values_out_of_range_are_refused_with_the_setting_named() {
        let mut c = Config::default();
        c.ingest.max_queue = -1;
        assert!(c.validate().unwrap_err().to_string().contains("invalid ingest.max_queue -1"));
        c.ingest.max_queue = 0;
        c.validate().unwrap();
        assert!(c.warnings()[0].contains("every event is refused"), "0 closes ingest, loudly");
        c.ingest.max_queue = 1;
        c.validate().unwrap();
        for bad in ["not-a-url", "ftp://x.example.com", "https://", "https://a b"] {
            c.url_prefix = bad.into();
            assert!(c.validate().unwrap_err().to_string().contains("invalid url_prefix"), "{bad}");
        }
        for good in ["https://errors.example.com", "http://10.0.0.5:9000/", "https://example.com/sentry"] {
            c.url_prefix = good.into();
            c.validate().unwrap();
        }
        assert_eq!(c.retention().map(|d| d.as_secs()), Some(90 * 86_400), "90 days by default");
        c.retention_days = 0;
        c.validate().unwrap();
        assert_eq!(c.retention(), None, "0 keeps everything");
        c.retention_days = 36_501;
        assert!(c.validate().unwrap_err().to_string().contains("invalid retention_days 36501 (PICKET_RETENTION_DAYS)"));
        c.apply_env(|k| (k == "PICKET_RETENTION_DAYS").then(|| "30".to_string())).unwrap();
        assert_eq!(c.retention_days, 30);
        assert!(c.apply_env(|k| (k == "PICKET_RETENTION_DAYS").then(|| "-1".to_string())).unwrap_err().to_string().contains("PICKET_RETENTION_DAYS"));
    }

    #[test]
    fn a_wildcard_bind_without_url_prefix_is_a_warning() {
        let mut c = Config { bind: "0.0.0.0:9000".into(), ..Config::default() };
        assert!(c.warnings()[0].contains("http://127.0.0.1:9000"), "{:?}", c.warnings());
        c.url_prefix = "https://errors.example.com".into();
        assert!(c.warnings().is_empty());
        c = Config::default();
        assert!(c.warnings().is_empty(), "the default binds to loopback");
    }

    #[test]
    fn mistyped_environment_variables_are_named_with_a_guess() {
        let names = ["PICKET_DATADIR", "PICKET_BNID", "PICKET_BIND", "PICKET_TEST_DEPS", "PICKET_SOMETHING", "HOME"].map(String::from);
        let c = Config { unknown_env: unknown_env(names.into_iter()), ..Config::default() };
        assert_eq!(c.unknown_env, ["PICKET_BNID", "PICKET_DATADIR", "PICKET_SOMETHING"]);
        let w = c.warnings();
        assert!(w[0].contains("PICKET_BNID is not a Picket setting") && w[0].contains("did you mean PICKET_BIND?"), "{w:?}");
        assert!(w[1].contains("did you mean PICKET_DATA_DIR?"), "{w:?}");
        assert!(!w[2].contains("did you mean"), "{w:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("bnd = \"x\"").is_err());
        let mut c = Config::default();
        assert!(c.apply_env(|k| (k == "PICKET_MAX_QUEUE").then(|| "lots".to_string())).is_err());
        c.bind = "nonsense".into();
        assert!(c.validate().is_err());
    }
}
