//! A running `picket serve` in a temporary directory, with a user, an
//! organization `acme`, a project `acme/web`, a DSN and an API token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test: `picket`, or a distribution with more plugins
/// linked in (this harness is shared with the example plugin crate's tests).
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_picket") {
    Some(b) => b,
    None => match option_env!("CARGO_BIN_EXE_picket-acme") {
        Some(b) => b,
        None => panic!("no picket binary in this crate"),
    },
};

/// The repository root (for fixtures and SDK scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().find(|d| d.join("Cargo.lock").exists() && d.join("crates").is_dir()).unwrap().to_path_buf()
}

/// Where `scripts/install-test-deps.sh` installed the real SDKs.
pub fn deps_dir() -> PathBuf {
    let dir = std::env::var_os("PICKET_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/picket-test-deps"));
    assert!(
        dir.join(".stamp").exists(),
        "the real SDKs are not installed in {}: run scripts/install-test-deps.sh (scripts/test does)",
        dir.display()
    );
    dir
}

/// Runs an SDK script with the DSN; returns the event ids it printed as
/// one JSON object on its last line.
pub fn run_sdk(program: PathBuf, script: PathBuf, p: &Picket) -> std::collections::HashMap<String, String> {
    let out = Command::new(&program).arg(&script).arg(&p.dsn).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{} failed:\n{}\n{}", script.display(), stdout, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("no ids printed ({e}):\n{stdout}"))
}

/// Runs a script from `tests/sdk/python` with the real `sentry-sdk`.
#[allow(dead_code)] // used by the example plugin crate's tests
pub fn run_python_sdk(script: &str, p: &Picket) -> std::collections::HashMap<String, String> {
    run_sdk(deps_dir().join("py-sdk/bin/python"), repo_root().join("tests/sdk/python").join(script), p)
}

pub struct Picket {
    pub dir: PathBuf,
    pub port: u16,
    pub dsn: String,
    pub public_key: String,
    pub project_id: i64,
    pub token: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn unique_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("picket-e2e-{}-{}-{n}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Picket {
    /// Sets up accounts and starts the server.
    pub fn start(name: &str) -> Picket {
        Picket::start_with(name, &[])
    }

    /// Like [`Picket::start`] with extra `PICKET_*` variables.
    pub fn start_with(name: &str, env_extra: &[(&str, &str)]) -> Picket {
        let dir = unique_dir(name);
        let port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("PICKET_BIND".into(), format!("127.0.0.1:{port}")),
            ("PICKET_DATA_DIR".into(), dir.join("data").display().to_string()),
            ("PICKET_LOG".into(), "info".into()),
        ];
        // The test's own variables come last, so they win (e.g. `PICKET_LOG`).
        env.extend(env_extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut p = Picket { dir, port, dsn: String::new(), public_key: String::new(), project_id: 0, token: String::new(), env, child: None };
        p.cli_ok(&["createuser", "--email", "admin@example.com", "--password", "correct horse battery", "--superuser"]);
        p.cli_ok(&["org", "create", "acme", "--name", "Acme"]);
        let out = p.cli_ok(&["project", "create", "acme/web", "--platform", "python"]);
        p.dsn = last_line(&out);
        p.public_key = p.dsn.split("://").nth(1).unwrap().split('@').next().unwrap().to_string();
        p.project_id = p.dsn.rsplit('/').next().unwrap().parse().unwrap();
        p.token = last_line(&p.cli_ok(&["token", "create", "--email", "admin@example.com"]));
        p.spawn();
        p
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A `picket` command with this server's settings.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir).env_remove("PICKET_CONFIG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs a CLI command against this server's data.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "picket {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `picket serve` and waits for it to answer.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("serve.log")).unwrap();
        let child = self.command().arg("serve").stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(format!("{}/_health/", self.base_url())) {
                if r.status().is_success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("picket did not start; log:\n{}", self.log());
    }

    /// Kills the server with SIGKILL (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        unsafe_sigterm(c.id());
        c.wait().unwrap()
    }

    /// The serving process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// An authenticated API request; returns status and JSON body (or Null).
    pub fn api_request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value, reqwest::header::HeaderMap) {
        let client = reqwest::blocking::Client::new();
        let url = format!("{}{}", self.base_url(), path);
        let mut req = client.request(method.parse().unwrap(), url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
    }

    /// GET that must succeed.
    pub fn api(&self, path: &str) -> Value {
        let (status, body, _) = self.api_request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// All issues of acme/web for a query (`None` = every status).
    pub fn issues(&self, query: Option<&str>) -> Vec<Value> {
        let q = query.unwrap_or("");
        let path = format!("/api/0/projects/acme/web/issues/?query={}", urlencode(q));
        self.api(&path).as_array().unwrap().clone()
    }

    /// Sends an event to acme/web's store endpoint; it must be accepted.
    #[allow(dead_code)] // not used by the example plugin crate's tests
    pub fn store(&self, event: &Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/api/{}/store/?sentry_key={}", self.base_url(), self.project_id, self.public_key))
            .json(event)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    }

    /// Stored events of acme/web (digested).
    pub fn event_count(&self) -> i64 {
        self.api("/api/0/projects/acme/web/stats/")["events"].as_i64().unwrap()
    }

    /// Waits until `f` holds, or panics with the server log.
    pub fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log());
    }

    pub fn wait_for_events(&self, n: i64) {
        self.wait_for(&format!("{n} events"), || self.event_count() >= n);
    }

    /// The full event as the API shows it.
    pub fn event(&self, event_id: &str) -> Value {
        self.api(&format!("/api/0/projects/acme/web/events/{event_id}/"))
    }
}

impl Drop for Picket {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

pub fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A raw HTTP/1.1 exchange: what a real SDK's bytes look like on the wire.
pub struct RawResponse {
    pub status: u16,
    pub body: String,
}

/// Sends a request (request line and headers, then the body). Framing
/// headers are set here: `Content-Length`, or with `chunked` the body is sent
/// in chunks as @sentry/node does; the connection is closed after the answer.
pub fn send_raw(port: u16, head: &str, body: &[u8], chunked: bool) -> RawResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut lines: Vec<String> = head
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
            !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection")
        })
        .collect();
    lines.push("Connection: close".into());
    lines.push(if chunked { "Transfer-Encoding: chunked".into() } else { format!("Content-Length: {}", body.len()) });
    let mut req = Vec::new();
    req.extend_from_slice(lines.join("\r\n").as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    if chunked {
        for chunk in body.chunks(1000) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(body);
    }
    stream.write_all(&req).unwrap();
    let mut resp = Vec::new();
    let _ = stream.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawResponse { status, body: body.to_string() }
}
