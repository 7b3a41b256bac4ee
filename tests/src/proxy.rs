//! Running the real `portcullis` binary: start with a configuration, talk to its admin API,
//! signal it, read its log.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pki::ServerFiles;

/// The binary under test: `PORTCULLIS_BIN`, else the workspace's debug build.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTCULLIS_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis");
    assert!(
        path.exists(),
        "the portcullis binary is missing at {}: run `cargo build --bin portcullis` first \
         (tests/run.sh does), or set PORTCULLIS_BIN",
        path.display()
    );
    path
}

/// The `[admin]` table of a test configuration: the admin API on a free port (the `{admin}`
/// placeholder [`Portcullis::spawn`] fills in), with `extra` keys added.
pub fn admin_table(extra: &str) -> String {
    format!("[admin]\nlisten = \"{{admin}}\"\n{extra}\n")
}

/// A `[source]` table reading `files`, with `extra` keys added.
pub fn files_source(files: &ServerFiles, extra: &str) -> String {
    format!(
        "\n[source]\nkind = \"files\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}\n",
        files.cert.display(),
        files.key.display(),
        files.ca.display(),
    )
}

/// A `[[listener]]` named `main` on a free loopback port forwarding to `upstream`, with `extra`
/// keys added.
pub fn main_listener(upstream: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "\n[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\
         {extra}\n"
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A running `portcullis run` process, killed on drop.
#[derive(Debug)]
pub struct Portcullis {
    child: Child,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Portcullis {
    /// Starts `portcullis run` with `config` (TOML). `{admin}` in the text is replaced by a
    /// free admin address. Waits until `/readyz` answers 200.
    pub async fn start(config: &str) -> Self {
        let portcullis = Self::spawn(config);
        portcullis.wait_ready().await;
        portcullis
    }

    /// Starts `portcullis run` pinned to CPU 0 (`taskset`), so that it may use one CPU only;
    /// waits until `/readyz` answers 200.
    pub async fn start_on_one_cpu(config: &str) -> Self {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", "0"]).arg(binary());
        let portcullis = Self::spawn_command(taskset, config);
        portcullis.wait_ready().await;
        portcullis
    }

    /// Starts the process without waiting for readiness.
    pub fn spawn(config: &str) -> Self {
        Self::spawn_command(Command::new(binary()), config)
    }

    /// Runs `command` (the binary, or a wrapper around it) with `run --config`.
    fn spawn_command(mut command: Command, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config.replace("{admin}", &admin.to_string()))
            .expect("write config");
        let log_path = dir.path().join("portcullis.log");
        let log = std::fs::File::create(&log_path).expect("log file");

        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info,portcullis=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn portcullis");
        Self {
            child,
            admin,
            config_path,
            log_path,
            _dir: dir,
        }
    }

    /// Waits for `/readyz`; panics with the log when it does not come.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.admin_request("GET", "/readyz", "").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("portcullis did not become ready; log:\n{}", self.log());
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`libc::SIGHUP`, `libc::SIGTERM`, ...).
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "portcullis did not exit; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One admin API request; returns the status code and body.
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        admin_request(self.admin, method, path, body).await
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = self
            .admin_request("GET", "/status", "")
            .await
            .expect("status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// The serial of the certificate being served, from `/status`.
    pub async fn serving_serial(&self) -> String {
        self.status().await["certificate"]["serial"]
            .as_str()
            .expect("serial")
            .to_owned()
    }

    /// The address of the listener named `name`, from `/status` (for `listen = ":0"` configs).
    pub async fn listener(&self, name: &str) -> SocketAddr {
        let status = self.status().await;
        let listeners = status["listeners"].as_array().expect("listeners");
        let listener = listeners
            .iter()
            .find(|l| l["name"] == name)
            .expect("listener by name");
        listener["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("socket address")
    }

    /// The value of one metric series from `/metrics`, matching every `label="value"` given.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self
            .admin_request("GET", "/metrics", "")
            .await
            .expect("metrics");
        metric_value(&text, name, labels)
    }

    /// Sets the mode through the admin API.
    pub async fn set_mode(&self, mode: &str) {
        let (code, body) = self
            .admin_request("PUT", "/mode", mode)
            .await
            .expect("mode");
        assert_eq!(code, 200, "{body}");
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the series of `name` whose labels include every pair in `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.1 request to the admin API.
pub async fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad response: {response}")))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        Ok((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await?
}
