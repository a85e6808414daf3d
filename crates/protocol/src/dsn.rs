//! DSNs: `{scheme}://{public_key}[:{secret}]@{host}[:{port}]{path}/{project_id}`.

use std::fmt;

/// A parsed DSN. Only the public key matters for authentication; a secret is
/// accepted for old clients and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub scheme: String,
    pub public_key: String,
    pub host: String,
    pub port: Option<u16>,
    /// Everything between the host and the project id, with a trailing `/`.
    pub path: String,
    pub project_id: String,
}

/// Why a DSN did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("invalid DSN '{0}': expected scheme://key@host/project_id")]
    Malformed(String),
    #[error("invalid DSN scheme '{0}': only http and https are supported")]
    Scheme(String),
    #[error("invalid DSN: the public key is empty")]
    NoKey,
    #[error("invalid DSN: no project id in the path")]
    NoProjectId,
}

impl Dsn {
    /// Parses a DSN without pulling in a URL crate: the format is tiny.
    pub fn parse(s: &str) -> Result<Dsn, DsnError> {
        let s = s.trim();
        let (scheme, rest) = s.split_once("://").ok_or_else(|| DsnError::Malformed(s.into()))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(DsnError::Scheme(scheme));
        }
        let (userinfo, hostpath) = rest.rsplit_once('@').ok_or(DsnError::NoKey)?;
        let public_key = userinfo.split(':').next().unwrap_or_default().to_string();
        if public_key.is_empty() {
            return Err(DsnError::NoKey);
        }
        let (hostport, path) = match hostpath.find('/') {
            Some(i) => (&hostpath[..i], &hostpath[i..]),
            None => (hostpath, "/"),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| DsnError::Malformed(s.into()))?;
        if host.is_empty() {
            return Err(DsnError::Malformed(s.into()));
        }
        let trimmed = path.trim_end_matches('/');
        let (prefix, project_id) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => return Err(DsnError::NoProjectId),
        };
        if project_id.is_empty() {
            return Err(DsnError::NoProjectId);
        }
        Ok(Dsn {
            scheme,
            public_key,
            host: host.to_string(),
            port,
            path: prefix.to_string(),
            project_id: project_id.to_string(),
        })
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        // IPv6 literal: [::1]:9000
        let (h, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((h, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{}://{}@{}", self.scheme, self.public_key, host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}{}", self.path, self.project_id)
    }
}

/// Builds the DSN for a project key from Picket's public URL (`url_prefix`).
pub fn build_dsn(url_prefix: &str, public_key: &str, project_id: i64) -> String {
    let prefix = url_prefix.trim_end_matches('/');
    match prefix.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{public_key}@{rest}/{project_id}"),
        None => format!("http://{public_key}@{prefix}/{project_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let d = Dsn::parse("https://abc@o1.ingest.example.com/42").unwrap();
        assert_eq!((d.public_key.as_str(), d.host.as_str(), d.port, d.path.as_str(), d.project_id.as_str()),
            ("abc", "o1.ingest.example.com", None, "/", "42"));
        let d = Dsn::parse("http://k:secret@h:8888/pathone/pathtwo/7").unwrap();
        assert_eq!((d.public_key.as_str(), d.port, d.path.as_str(), d.project_id.as_str()), ("k", Some(8888), "/pathone/pathtwo/", "7"));
        assert_eq!(d.to_string(), "http://k@h:8888/pathone/pathtwo/7");
        let d = Dsn::parse("http://k@[::1]:9000/3").unwrap();
        assert_eq!(d.host, "::1");
        assert_eq!(d.to_string(), "http://k@[::1]:9000/3");
    }

    #[test]
    fn rejects_bad_dsns() {
        assert_eq!(Dsn::parse("ftp://k@h/1"), Err(DsnError::Scheme("ftp".into())));
        assert_eq!(Dsn::parse("http://h/1"), Err(DsnError::NoKey));
        assert_eq!(Dsn::parse("http://@h/1"), Err(DsnError::NoKey));
        assert_eq!(Dsn::parse("http://k@h/"), Err(DsnError::NoProjectId));
        assert_eq!(Dsn::parse("http://k@h"), Err(DsnError::NoProjectId));
        assert!(Dsn::parse("garbage").is_err());
    }

    #[test]
    fn builds_dsns() {
        assert_eq!(build_dsn("http://127.0.0.1:9000/", "abc", 1), "http://abc@127.0.0.1:9000/1");
        assert_eq!(build_dsn("https://errors.example.com/picket", "abc", 1), "https://abc@errors.example.com/picket/1");
    }
}
