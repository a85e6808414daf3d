//! Client authentication: `X-Sentry-Auth`, `Authorization: Sentry ...`, and
//! `?sentry_key=` query parameters. Only `sentry_key` authenticates; a secret
//! and a timestamp are accepted and ignored.

/// What a client said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAuth {
    pub public_key: String,
    pub version: Option<u16>,
    pub client: Option<String>,
}

/// The newest protocol version Picket speaks (raven sends 6, SDKs 7).
pub const PROTOCOL_VERSION: u16 = 7;

/// Why auth information was refused. The `Display` is sent to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing authorization information: send X-Sentry-Auth, or ?sentry_key= in the URL")]
    Missing,
    #[error("invalid X-Sentry-Auth header: expected 'Sentry sentry_key=..., sentry_version=7'")]
    BadHeader,
    #[error("multiple authorization payloads detected with different keys")]
    Conflict,
    #[error("unsupported protocol version ({0}); Picket speaks version {PROTOCOL_VERSION} and older")]
    Version(String),
}

/// Parses the value of `X-Sentry-Auth` or `Authorization`. Returns `Ok(None)`
/// when the value is not of the Sentry scheme (e.g. `Authorization: Bearer`).
pub fn parse_auth_header(value: &str) -> Result<Option<ClientAuth>, AuthError> {
    let value = value.trim();
    let (scheme, rest) = match value.split_once(char::is_whitespace) {
        Some(p) => p,
        None => return if value.eq_ignore_ascii_case("sentry") { Err(AuthError::BadHeader) } else { Ok(None) },
    };
    if !scheme.eq_ignore_ascii_case("sentry") {
        return Ok(None);
    }
    parse_pairs(rest.split(',').filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.trim(), v.trim())))).map(Some)
}

/// Parses auth from a URL query string (`sentry_key=...&sentry_version=7`).
/// Returns `Ok(None)` when no `sentry_key` is present.
pub fn parse_auth_query(query: &str) -> Result<Option<ClientAuth>, AuthError> {
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    if !pairs.iter().any(|(k, _)| k == "sentry_key") {
        return Ok(None);
    }
    parse_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map(Some)
}

fn parse_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<ClientAuth, AuthError> {
    let mut auth = ClientAuth::default();
    for (k, v) in pairs {
        let v = v.trim_matches('"');
        match k {
            "sentry_key" => auth.public_key = v.to_string(),
            "sentry_version" => {
                let major = v.split('.').next().unwrap_or_default();
                let n: u16 = major.parse().map_err(|_| AuthError::Version(v.to_string()))?;
                if n > PROTOCOL_VERSION {
                    return Err(AuthError::Version(v.to_string()));
                }
                auth.version = Some(n);
            }
            "sentry_client" => auth.client = Some(v.to_string()),
            _ => {} // sentry_secret, sentry_timestamp and unknown keys are ignored.
        }
    }
    if auth.public_key.is_empty() {
        return Err(AuthError::BadHeader);
    }
    Ok(auth)
}

/// Decodes `%XX` escapes and `+` in a query component; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Combines the keys found in several places; different keys are a conflict.
pub fn merge(found: impl IntoIterator<Item = ClientAuth>) -> Result<ClientAuth, AuthError> {
    let mut result: Option<ClientAuth> = None;
    for a in found {
        match &mut result {
            None => result = Some(a),
            Some(r) if r.public_key != a.public_key => return Err(AuthError::Conflict),
            Some(r) => {
                r.version = r.version.or(a.version);
                r.client = r.client.take().or(a.client);
            }
        }
    }
    result.ok_or(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let a = parse_auth_header("Sentry sentry_timestamp=1.5, sentry_client=raven-python/6.10.0, sentry_version=6, sentry_key=abc, sentry_secret=s")
            .unwrap()
            .unwrap();
        assert_eq!(a, ClientAuth { public_key: "abc".into(), version: Some(6), client: Some("raven-python/6.10.0".into()) });
        let a = parse_auth_header("sentry sentry_key=k,sentry_version=7.1").unwrap().unwrap();
        assert_eq!(a.version, Some(7));
        assert_eq!(parse_auth_header("Bearer xyz"), Ok(None));
        assert_eq!(parse_auth_header("Sentry sentry_version=7"), Err(AuthError::BadHeader));
        assert_eq!(parse_auth_header("Sentry"), Err(AuthError::BadHeader));
        assert!(matches!(parse_auth_header("Sentry sentry_key=k, sentry_version=8"), Err(AuthError::Version(_))));
        assert!(matches!(parse_auth_header("Sentry sentry_key=k, sentry_version=x"), Err(AuthError::Version(_))));
    }

    #[test]
    fn query_form() {
        let a = parse_auth_query("sentry_version=7&sentry_key=abc&sentry_client=sentry.javascript.node%2F11.12.0").unwrap().unwrap();
        assert_eq!(a.public_key, "abc");
        assert_eq!(a.client.as_deref(), Some("sentry.javascript.node/11.12.0"));
        assert_eq!(parse_auth_query("foo=bar"), Ok(None));
        assert_eq!(parse_auth_query(""), Ok(None));
    }

    #[test]
    fn merging() {
        let k = |s: &str| ClientAuth { public_key: s.into(), ..Default::default() };
        assert_eq!(merge([k("a"), k("a")]).unwrap().public_key, "a");
        assert_eq!(merge([k("a"), k("b")]), Err(AuthError::Conflict));
        assert_eq!(merge([]), Err(AuthError::Missing));
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
