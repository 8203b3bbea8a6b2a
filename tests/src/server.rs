//! The real `auditlog` binary on a loopback port, for the end-to-end tests of the server.
//!
//! [`ServerProcess::start`] runs `auditlog serve` on a free `127.0.0.1` port with a data
//! directory and a known admin token, waits for `/healthz`, and kills the process when dropped.
//! The binary is found next to the test executable (`target/<profile>/auditlog`); it belongs to
//! another package, so `cargo build -p auditlog` must have run first (tests/run-all.sh does).
//! The HTTP helpers ([`call`], [`Reply`]) use `ureq`, shared by both end-to-end test files.

use std::io::{Read, Write};

use serde_json::Value;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token every test server is started with (`AUDITLOG_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "alt_e2e_admin_secret_0123456789abcdef";

/// How long a server may take to answer `/healthz` (a debug build replaying a WAL is slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the `auditlog` binary built in the same target directory as the running test.
pub fn auditlog_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/<test> -> target/<profile>/auditlog
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    let binary = profile_dir.join(format!("auditlog{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the auditlog binary is missing at {}: run `cargo build -p auditlog` (same profile) \
         before these tests (tests/run-all.sh does)",
        binary.display()
    );
    binary
}

/// A free loopback port: bound, then released for the server to take.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET path` over a fresh connection; the status code, or `None` when nothing answered.
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// A running `auditlog serve`; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts a server on `data_dir` (created if missing); its output goes to `<data_dir>.log`.
    pub fn start(data_dir: &Path) -> Self {
        let mut last_error = String::new();
        // A port found free can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            match Self::try_start(data_dir, free_port(), None) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("auditlog serve did not start: {last_error}");
    }

    /// [`ServerProcess::start`] with a TOML configuration file holding `config` (written next
    /// to the data directory, `<data_dir>.toml`); flags still set the data directory and port.
    pub fn start_with_config(data_dir: &Path, config: &str) -> Self {
        let path = data_dir.with_extension("toml");
        std::fs::write(&path, config).expect("write the configuration file");
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(data_dir, free_port(), Some(&path)) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("auditlog serve did not start: {last_error}");
    }

    fn try_start(data_dir: &Path, port: u16, config: Option<&Path>) -> Result<Self, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("log file {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(auditlog_binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("AUDITLOG_") {
                command.env_remove(key);
            }
        }
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(addr.to_string())
            .env("AUDITLOG_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| format!("cannot run the auditlog binary: {e}"))?;
        let mut server = ServerProcess {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log_path,
        };
        let started = Instant::now();
        loop {
            if get_status(addr, "/healthz") == Some(200) {
                return Ok(server);
            }
            let child = server.child.as_mut().expect("child is running");
            if let Ok(Some(status)) = child.try_wait() {
                server.child = None;
                return Err(format!("exited with {status}; log:\n{}", server.log()));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "no answer on {addr}/healthz after {START_TIMEOUT:?}; log:\n{}",
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (acknowledged events must survive it) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (at most `within`) for the server to exit; its exit status, or
    /// `None` if it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the server and starts it again on the same data directory and port (clients
    /// that reconnect to the same address find it again).
    pub fn restart_on_same_port(&mut self) {
        self.kill();
        let port = self.addr.port();
        let mut last_error = String::new();
        for _ in 0..50 {
            match Self::try_start(&self.data_dir, port, None) {
                Ok(restarted) => {
                    *self = restarted;
                    return;
                }
                Err(error) => last_error = error,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("auditlog serve did not start again on port {port}: {last_error}");
    }

    /// Kills the server and starts it again on the same data directory (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        let restarted = ServerProcess::start(&self.data_dir);
        *self = restarted;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// HTTP client helpers shared by the end-to-end tests.

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP answer, whatever its status.
impl Reply {
    /// The value of header `name` (lowercase), if the answer has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "answer is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("answer is UTF-8")
    }
}

/// Creates a token through the API with the admin token: `(id, secret)`.
pub fn create_token(
    server: &ServerProcess,
    name: &str,
    role: &str,
    tenants: &[&str],
) -> (String, String) {
    let body = serde_json::json!({ "name": name, "role": role, "tenants": tenants }).to_string();
    let reply = call(
        "POST",
        &server.url("/v1/tokens"),
        Some(ADMIN_TOKEN),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(reply.status, 201, "create token: {}", reply.text());
    let answer = reply.json();
    (
        answer["id"].as_str().unwrap().to_string(),
        answer["token"].as_str().unwrap().to_string(),
    )
}

/// Revokes the token with id `id` through the API with the admin token (and checks the 204).
pub fn revoke_token(server: &ServerProcess, id: &str) {
    let reply = call(
        "DELETE",
        &server.url(&format!("/v1/tokens/{id}")),
        Some(ADMIN_TOKEN),
        &[],
        None,
    );
    assert_eq!(reply.status, 204, "revoke token {id}: {}", reply.text());
}

/// Sends a request to the server under test; any status is an answer, a transport error panics.
pub fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut request = agent.request(method, url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request.send_bytes(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_string();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_string();
            Some((name, value))
        })
        .collect();
    let mut body = Vec::new();
    response
        .into_reader()
        .read_to_end(&mut body)
        .expect("read the answer");
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}
