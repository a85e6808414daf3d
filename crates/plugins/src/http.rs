//! Outbound HTTP for plugins (webhooks, chat, trackers), with an address
//! policy: private, loopback, link-local and other non-public addresses are
//! refused unless a superuser allowed them with the plugin's site option
//! `allow_private_networks`, so that a project admin cannot make Picket call
//! internal services. The address checked is the one connected to (the name
//! is resolved once and the connection pinned), so DNS rebinding cannot slip
//! past the check.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
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
const TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `http(s)://host[:port]/path?query` URL.
struct Target {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, PluginError> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(PluginError::permanent(format!("refusing URL '{url}': only http and https are allowed")));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    if authority.contains('@') || authority.is_empty() {
        return Err(PluginError::permanent(format!("invalid URL '{url}': no host, or credentials in the URL")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| PluginError::permanent(format!("invalid URL '{url}'")))?;
        (h.to_string(), after.strip_prefix(':').map(str::to_string))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| PluginError::permanent(format!("invalid port in URL '{url}'")))?,
        None if https => 443,
        None => 80,
    };
    if path.contains(char::is_whitespace) || host.contains(char::is_whitespace) {
        return Err(PluginError::permanent(format!("invalid URL '{url}': whitespace")));
    }
    Ok(Target { https, host: host.to_ascii_lowercase(), port, path })
}

/// POSTs a JSON body (HTTP/1.1, TLS for https with the Mozilla roots).
/// Errors say what failed; 429 and 5xx and network failures are retryable,
/// other 4xx and policy refusals are not. Redirects are not followed.
pub fn post_json(url: &str, body: &[u8], headers: &[(&str, String)], allow_private: bool) -> Result<Response, PluginError> {
    let t = parse_url(url)?;
    let addrs: Vec<SocketAddr> = (t.host.as_str(), t.port).to_socket_addrs().map_err(|e| PluginError::new(format!("cannot resolve '{}': {e}", t.host)))?.collect();
    let addr = addrs.iter().copied().find(|a| allow_private || is_public(a.ip())).ok_or_else(|| match addrs.first() {
        Some(a) => PluginError::permanent(format!("refusing to send to '{}' ({}): not a public address; a superuser can allow it with the site option {ALLOW_PRIVATE}", t.host, a.ip())),
        None => PluginError::new(format!("'{}' resolves to no address", t.host)),
    })?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| PluginError::new(format!("cannot connect to {} ({addr}): {e}", t.host)))?;
    stream.set_read_timeout(Some(TIMEOUT)).and_then(|_| stream.set_write_timeout(Some(TIMEOUT))).map_err(|e| PluginError::new(e.to_string()))?;
    let host_header = if (t.https && t.port == 443) || (!t.https && t.port == 80) { t.host.clone() } else { format!("{}:{}", t.host, t.port) };
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: Picket/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        t.path,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(PluginError::permanent(format!("invalid header '{k}'")));
        }
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let raw = if t.https { exchange_tls(stream, &t.host, request.as_bytes(), body) } else { exchange(stream, request.as_bytes(), body) }
        .map_err(|e| PluginError::new(format!("POST {url} failed: {e}")))?;
    let resp = parse_response(&raw).ok_or_else(|| PluginError::new(format!("POST {url}: the answer is not HTTP")))?;
    let snippet: String = resp.body.chars().take(200).collect();
    match resp.status {
        200..=299 => Ok(resp),
        429 | 500..=599 => Err(PluginError::new(format!("POST {url} answered {}: {snippet}", resp.status))),
        s => Err(PluginError::permanent(format!("POST {url} answered {s}: {snippet}"))),
    }
}

fn exchange<S: Read + Write>(mut s: S, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(head)?;
    s.write_all(body)?;
    s.flush()?;
    let mut out = Vec::new();
    // Read until the server closes (Connection: close), at most the cap plus headers.
    let mut limited = s.take((MAX_RESPONSE + 16 * 1024) as u64);
    match limited.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // Some servers reset or end TLS without close_notify after answering: keep what came.
        Err(_) if !out.is_empty() => Ok(out),
        Err(e) => Err(e),
    }
}

fn exchange_tls(stream: TcpStream, host: &str, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    });
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    exchange(rustls::StreamOwned::new(conn, stream), head, body)
}

/// Status and body of an HTTP/1.x answer (chunked or not).
fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status: u16 = head.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"));
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..i]).ok()?.split(';').next()?.trim(), 16).ok()?;
            if size == 0 || rest.len() < i + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[(i + 4 + size).min(rest.len())..];
        }
        body = out;
    }
    body.truncate(MAX_RESPONSE);
    Some(Response { status, body: String::from_utf8_lossy(&body).into_owned() })
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

    #[test]
    fn urls_and_answers_parse() {
        let t = parse_url("https://Hooks.Example:8443/a/b?x=1#frag").unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port, t.path.as_str()), (true, "hooks.example", 8443, "/a/b?x=1"));
        let t = parse_url("http://[::1]/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert!(parse_url("http://user:pw@h/").is_err());
        let r = parse_response(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "{\"a\":1}"));
    }

    /// A real TLS server on loopback with a self-signed certificate (openssl
    /// and Python's ssl module): the client must speak TLS and refuse it.
    #[test]
    fn https_verifies_the_certificate() {
        let dir = std::env::temp_dir().join(format!("picket-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = "import http.server, ssl, sys\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nctx.load_cert_chain('cert.pem', 'key.pem')\nsrv = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.BaseHTTPRequestHandler)\nsrv.socket = ctx.wrap_socket(srv.socket, server_side=True)\nsrv.serve_forever()\n";
        let mut child = std::process::Command::new("python3").args(["-c", server, &port.to_string()]).current_dir(&dir).stderr(std::process::Stdio::null()).spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the TLS server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let e = post_json(&format!("https://127.0.0.1:{port}/hook"), b"{}", &[], true).unwrap_err();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.message().contains("certificate"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_answer_parses_or_is_refused_without_panicking(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = parse_response(&raw);
        }

        #[test]
        fn chunked_bodies_round_trip(body in "[ -~]{0,300}", chunk in 1usize..64) {
            let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for c in body.as_bytes().chunks(chunk) {
                raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                raw.extend_from_slice(c);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n\r\n");
            proptest::prop_assert_eq!(parse_response(&raw).unwrap().body, body);
        }

        #[test]
        fn any_url_parses_or_is_refused_without_panicking(url in "\\PC{0,80}") {
            if let Ok(t) = parse_url(&url) {
                proptest::prop_assert!(t.path.starts_with('/'));
                proptest::prop_assert!(!t.host.contains(char::is_whitespace));
            }
        }
    }
}
