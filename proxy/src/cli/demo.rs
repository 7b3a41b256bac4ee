//! `portcullis demo`: everything on one machine, no configuration, no Vault.
//!
//! Starts a development CA issuing 60-second server certificates (renewed at 2/3 of their
//! lifetime), a small HTTP echo service as the upstream, the proxy in permissive mode and the
//! admin API; writes client credentials into a folder and prints what to try.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, info};

use portcullis_rotator::schedule::{RenewPolicy, humantime};
use portcullis_rotator::source::{DevCa, DevConfig, LeafSpec, SourceConfig};

use crate::authz::AllowList;
use crate::config::{
    AdminConfig, AuthConfig, Config, IdentityConfig, ListenerConfig, Protocol, ShutdownConfig,
    TlsConfig,
};
use crate::mode::Mode;

/// The trust domain of the demo's SPIFFE IDs.
const TRUST_DOMAIN: &str = "portcullis.demo";

/// Options of `portcullis demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the client certificate, key and CA bundle.
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
    /// Address of the proxy.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Lifetime of the proxy's certificates.
    #[arg(long, default_value = "60s", value_parser = humantime::parse)]
    ttl: Duration,
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("portcullis-demo")
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let ca = Arc::new(DevCa::new(
        "Portcullis demo CA",
        Duration::from_secs(7 * 86400),
    )?);
    write_credentials(&ca, &args.dir)?;
    let upstream = start_echo_upstream().await?;

    let config = demo_config(&args, upstream);
    let running = crate::app::start(config, None, Some(ca)).await?;
    anyhow::ensure!(
        running.wait_ready(Duration::from_secs(10)).await,
        "the development CA did not issue a certificate within 10 s"
    );
    print_instructions(&args, running.admin_address);
    running.serve_until_signal().await
}

fn demo_config(args: &DemoArgs, upstream: SocketAddr) -> Config {
    let source = DevConfig {
        common_name: "portcullis-demo".into(),
        dns_names: vec!["localhost".into()],
        uris: vec![format!("spiffe://{TRUST_DOMAIN}/proxy")],
        ip_addresses: vec![args.listen.ip()],
        ttl: args.ttl,
        renew: RenewPolicy::default(),
    };
    Config {
        admin: AdminConfig {
            listen: args.admin,
            token_file: None,
        },
        log: Default::default(),
        auth: AuthConfig {
            mode: Mode::Permissive,
            allow: AllowList {
                spiffe_trust_domains: vec![TRUST_DOMAIN.into()],
                ..Default::default()
            },
        },
        source: SourceConfig::Dev(source),
        identity: IdentityConfig::default(),
        cache: None,
        tls: TlsConfig::default(),
        shutdown: ShutdownConfig {
            drain_timeout: Duration::from_secs(5),
        },
        listeners: vec![ListenerConfig {
            name: Some("demo".into()),
            listen: args.listen,
            upstream: upstream.to_string(),
            protocol: Protocol::Http,
            proxy_protocol: false,
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }],
    }
}

/// Writes `ca.pem`, `client.pem` + `client-key.pem` (an authorized client) and
/// `intruder.pem` + `intruder-key.pem` (verified, but outside the allowed trust domain).
fn write_credentials(ca: &DevCa, dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    write(dir, "ca.pem", &ca.certificate_pem(), 0o644)?;

    let day = Duration::from_secs(86400);
    for (name, common_name, id) in [
        (
            "client",
            "demo-client",
            format!("spiffe://{TRUST_DOMAIN}/client"),
        ),
        (
            "intruder",
            "intruder",
            "spiffe://elsewhere.example/intruder".to_owned(),
        ),
    ] {
        let spec = LeafSpec {
            common_name: common_name.into(),
            uris: vec![id],
            ..Default::default()
        };
        let leaf = ca.issue(&spec, day)?;
        write(dir, &format!("{name}.pem"), &leaf.chain_pem(), 0o644)?;
        write(dir, &format!("{name}-key.pem"), &leaf.key_pem(), 0o600)?;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;

    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// An HTTP service that answers with what it received, identity headers included.
async fn start_echo_upstream() -> anyhow::Result<SocketAddr> {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = socket.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| async move {
                    Ok::<_, std::convert::Infallible>(echo(request))
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(err) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %err, "echo connection failed");
                }
            });
        }
    });
    info!(address = %address, "demo upstream (echo) listening");
    Ok(address)
}

fn echo(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let identity = request
        .headers()
        .get("x-forwarded-client-cert")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("(none: no verified client certificate)");
    let proto = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("?");
    let body = format!(
        "hello from the upstream\nrequest: {} {}\nclient connected with: {proto}\n\
         x-forwarded-client-cert: {identity}\n",
        request.method(),
        request.uri().path(),
    );
    Response::new(Full::new(Bytes::from(body)))
}

fn print_instructions(args: &DemoArgs, admin: SocketAddr) {
    let dir = args.dir.display();
    let port = args.listen.port();
    let host = if args.listen.ip().is_loopback() {
        "localhost".to_owned()
    } else {
        args.listen.ip().to_string()
    };
    println!(
        "\nPortcullis demo is running (permissive mode). Proxy https://{host}:{port}, \
         admin http://{admin}\n\
         Server certificates live {ttl}s and are renewed at 2/3 of their lifetime.\n\n\
         With the client certificate (authorized):\n  \
         curl --cacert {dir}/ca.pem --cert {dir}/client.pem --key {dir}/client-key.pem \
         https://{host}:{port}/\n\
         Without a client certificate:\n  \
         curl --cacert {dir}/ca.pem https://{host}:{port}/\n\
         Plaintext, on the same port:\n  \
         curl http://{listen}/\n\
         A verified certificate from outside the allowed trust domain:\n  \
         curl --cacert {dir}/ca.pem --cert {dir}/intruder.pem --key {dir}/intruder-key.pem \
         https://{host}:{port}/\n\n\
         Who strict mode would refuse:\n  \
         curl -s http://{admin}/metrics | grep would_reject\n\
         Switch to strict (then only the first command works):\n  \
         {exe} mode strict --admin {admin}\n  \
         (or: curl -X PUT --data strict http://{admin}/mode)\n\
         Watch the serving certificate rotate:\n  \
         curl -s http://{admin}/status\n\n\
         Ctrl-C stops the demo.\n",
        ttl = args.ttl.as_secs(),
        listen = args.listen,
        exe = std::env::current_exe()
            .map(|path| path.display().to_string())
            .unwrap_or_else(|_| "portcullis".into()),
    );
}
