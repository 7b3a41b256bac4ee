//! The operator surface: the admin token, readiness, JSON logs, Unix-socket upstreams and the
//! idle timeout.

use std::time::{Duration, Instant};

use portcullis_tests::client::{self, tls_round_trip};
use portcullis_tests::pki::TestPki;
use portcullis_tests::proxy::{
    Portcullis, admin_request, admin_table, binary, files_source, main_listener,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "spiffe://test.local/client";

fn config(files: &portcullis_tests::pki::ServerFiles, upstream: &str, extra: &str) -> String {
    let source = files_source(files, "poll_interval = \"100ms\"");
    let listener = main_listener(upstream, "idle_timeout = \"500ms\"");
    format!("{extra}\n{source}\n{listener}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_guards_mutating_endpoints_and_never_shows_up_in_logs() {
    let pki = TestPki::new("admin CA");
    let files = pki.server_files("server");
    let token = "s3cr3t-admin-token-value";
    let token_file = pki.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_line = format!("token_file = \"{}\"", token_file.display());
    let admin = format!("{}\n[log]\nformat = \"json\"", admin_table(&token_line));
    let proxy = Portcullis::start(&config(&files, "127.0.0.1:9", &admin)).await;

    assert_eq!(
        proxy.admin_request("GET", "/status", "").await.unwrap().0,
        200
    );
    assert_eq!(
        proxy
            .admin_request("PUT", "/mode", "strict")
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        proxy.admin_request("POST", "/rotate", "").await.unwrap().0,
        401
    );
    assert_eq!(proxy.status().await["mode"], "permissive");

    let switch = |args: &[&str]| {
        std::process::Command::new(binary())
            .args(["mode", "strict", "--admin", &proxy.admin.to_string()])
            .args(args)
            .env_remove("PORTCULLIS_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let refused = switch(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
    let accepted = switch(&["--token-file", &token_file.display().to_string()]);
    assert!(accepted.status.success(), "{accepted:?}");
    assert_eq!(proxy.status().await["mode"], "strict");

    let log = proxy.log();
    assert!(!log.contains(token), "the token leaked into the log");
    assert!(!log.contains("PRIVATE KEY"), "key material in the log");
    let json_lines = log.lines().filter(|line| line.starts_with('{')).count();
    assert!(json_lines > 0, "no JSON log lines:\n{log}");
    for line in log.lines().filter(|line| line.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).expect("each log line is JSON");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_only_once_a_valid_certificate_is_served() {
    let pki = TestPki::new("ready CA");
    let files = pki.server_files("server");
    let (chain, key) = (
        std::fs::read_to_string(&files.cert).unwrap(),
        std::fs::read_to_string(&files.key).unwrap(),
    );
    std::fs::remove_file(&files.cert).unwrap();
    let proxy = Portcullis::spawn(&config(&files, "127.0.0.1:9", &admin_table("")));

    let deadline = Instant::now() + Duration::from_secs(10);
    while admin_request(proxy.admin, "GET", "/healthz", "")
        .await
        .map(|r| r.0)
        .ok()
        != Some(200)
    {
        assert!(
            Instant::now() < deadline,
            "admin API never came up:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = proxy.admin_request("GET", "/readyz", "").await.unwrap();
    assert_eq!(code, 503, "ready without a certificate");

    std::fs::write(&files.key, key).unwrap();
    std::fs::write(&files.cert, chain).unwrap();
    proxy.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_to_a_unix_socket_and_closes_idle_connections() {
    let pki = TestPki::new("unix CA");
    let files = pki.server_files("server");
    let socket_path = pki.dir.path().join("upstream.sock");
    let socket = tokio::net::UnixListener::bind(&socket_path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 1024];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let upstream = format!("unix:{}", socket_path.display());
    let proxy = Portcullis::start(&config(&files, &upstream, &admin_table(""))).await;
    let address = proxy.listener("main").await;
    let tls = client::config(&pki.ca_cert(), Some(&pki.client(CLIENT_ID)), &[]);

    let reply = tls_round_trip(address, tls.clone(), b"over a unix socket")
        .await
        .unwrap();
    assert_eq!(reply, b"over a unix socket");

    // Nothing moves for longer than idle_timeout (500 ms): the proxy closes the connection.
    let mut idle = client::connect(address, tls).await.unwrap();
    idle.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    idle.read_exact(&mut echo).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection still open after 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
}
