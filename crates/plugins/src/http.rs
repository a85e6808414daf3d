//! Outbound HTTP for plugins (webhooks, chat, trackers), with an address
//! policy: private, loopback, link-local and other non-public addresses are
//! refused unless a superuser allowed them with the plugin's site option
//! `allow_private_networks`, so that a project admin cannot make Picket call
//! internal services. The address checked is the one connected to (the name
//! is resolved once and the connection pinned), so DNS rebinding cannot slip
//! past the check.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use picket_plugin_api::{OptionKind, OptionSpec, OptionValues, PluginError};

/// Site option that lets a plugin reach private addresses.
pub const ALLOW_PRIVATE: &str = "allow_private_networks";

/// The site option spec for [`ALLOW_PRIVATE`].
pub fn allow_private_option() -> OptionSpec {
    OptionSpec::new(ALLOW_PRIVATE, "Allow private network addresses", OptionKind::Bool)
        .help("Let this plugin send to loopback and private (RFC 1918, ULA, link-local) addresses. Off by default: project admins could otherwise reach internal services.")
}

/// Whether the site options allow private addresses.
pub fn allows_private(site: &OptionValues) -> bool {
    site.bool(ALLOW_PRIVATE)
}

/// Public unicast: not loopback, private, link-local, CGNAT, documentation, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// A response: status and (at most 64 KiB of) body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body, cut at 64 KiB.
    pub body: String,
}

const MAX_RESPONSE: usize = 64 * 1024;

/// POSTs a JSON body. Errors say what failed; 429 and 5xx and network
/// failures are retryable, other 4xx and policy refusals are not.
pub fn post_json(url: &str, body: &[u8], headers: &[(&str, String)], allow_private: bool) -> Result<Response, PluginError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = reqwest::Url::parse(url).map_err(|e| PluginError::permanent(format!("invalid URL '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(PluginError::permanent(format!("refusing URL '{url}': only http and https are allowed")));
    }
    let host = parsed.host_str().ok_or_else(|| PluginError::permanent(format!("URL '{url}' has no host")))?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let lookup_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addrs: Vec<SocketAddr> = (lookup_host.as_str(), port).to_socket_addrs().map_err(|e| PluginError::new(format!("cannot resolve '{host}': {e}")))?.collect();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| allow_private || is_public(a.ip()))
        .ok_or_else(|| match addrs.first() {
            Some(a) => PluginError::permanent(format!(
                "refusing to send to '{host}' ({}): not a public address; a superuser can allow it with the site option {ALLOW_PRIVATE}",
                a.ip()
            )),
            None => PluginError::new(format!("'{host}' resolves to no address")),
        })?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&lookup_host, addr)
        .user_agent(concat!("Picket/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PluginError::new(format!("cannot build the HTTP client: {e}")))?;
    let mut req = client.post(parsed).header("Content-Type", "application/json").body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().map_err(|e| PluginError::new(format!("POST {url} failed: {e}")))?;
    let status = resp.status().as_u16();
    let mut text = resp.text().unwrap_or_default();
    if text.len() > MAX_RESPONSE {
        text.truncate(text.floor_char_boundary(MAX_RESPONSE));
    }
    match status {
        200..=299 => Ok(Response { status, body: text }),
        429 | 500..=599 => Err(PluginError::new(format!("POST {url} answered {status}: {}", text.chars().take(200).collect::<String>()))),
        _ => Err(PluginError::permanent(format!("POST {url} answered {status}: {}", text.chars().take(200).collect::<String>()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn loopback_is_refused_without_the_site_option() {
        let e = post_json("http://127.0.0.1:9/hook", b"{}", &[], false).unwrap_err();
        assert!(!e.retryable());
        assert!(e.message().contains("allow_private_networks"), "{e}");
        assert!(post_json("ftp://example.com/", b"{}", &[], true).unwrap_err().message().contains("only http and https"));
    }
}
