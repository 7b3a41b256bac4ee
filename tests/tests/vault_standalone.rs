//! `portcullis rotate` (the standalone rotator) against a real OpenBao: sink files get the
//! right content and modes, and the reload actions run (a command, and a signal to a PID).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use portcullis_rotator::inspect::CertSummary;
use portcullis_rotator::standalone::{self, StandaloneConfig};
use portcullis_tests::bao::Bao;

fn config(bao: &Bao, dir: &Path, extra: &str) -> StandaloneConfig {
    let config: StandaloneConfig =
        toml::from_str(&config_text(bao, dir, extra)).expect("standalone config");
    config.check().expect("valid config");
    config
}

/// The configuration file's text: Vault source, identity, cache, and four sinks in `dir`.
fn config_text(bao: &Bao, dir: &Path, extra: &str) -> String {
    let token_file = bao.dir().join("token");
    std::fs::write(&token_file, bao.token()).expect("token file");
    format!(
        r#"
        [source]
        kind = "vault"
        address = "{addr}"
        role = "web"
        common_name = "agent.example.org"
        dns_names = ["agent.example.org"]
        uri_sans = ["spiffe://example.org/agent"]
        auth = {{ method = "token", token_file = "{token}" }}
        renew = {{ min_interval = "1s" }}

        [identity]
        spiffe_id = "spiffe://example.org/agent"

        [cache]
        dir = "{dir}/cache"

        [[sink]]
        path = "{dir}/chain.pem"
        layout = "chain"

        [[sink]]
        path = "{dir}/key.pem"
        layout = "key"

        [[sink]]
        path = "{dir}/ca.pem"
        layout = "ca"
        mode = "0640"

        [[sink]]
        path = "{dir}/combined.pem"
        layout = "combined"
        {extra}
        "#,
        addr = bao.addr(),
        token = token_file.display(),
        dir = dir.display(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn serial_of(path: &Path) -> String {
    let pem = std::fs::read(path).expect("read");
    let certs = portcullis_rotator::identity::certs_from_pem(&pem, "sink").expect("certs");
    CertSummary::from_der(&certs[0]).expect("parse").serial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_every_layout_with_its_mode_and_signals_the_daemon() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();

    // A stand-in daemon that exits with 7 on SIGHUP, which proves the signal reached it. It
    // installs its own handler, as a daemon does, so an ignored SIGHUP inherited from the
    // test's parent (under `nohup`, say) does not matter, and says when the handler is in.
    let mut daemon = std::process::Command::new("python3")
        .args([
            "-c",
            "import signal, sys, time\n\
             signal.signal(signal.SIGHUP, lambda *_: sys.exit(7))\n\
             print('ready', flush=True)\n\
             time.sleep(30)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the stand-in daemon (python3)");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(daemon.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("stand-in output");
    assert_eq!(ready.trim(), "ready", "the stand-in daemon did not start");
    std::fs::write(out.join("daemon.pid"), daemon.id().to_string()).expect("pid file");
    let extra = format!(
        "[[reload]]\nsignal = \"HUP\"\npid_file = \"{}\"\n\n\
         [[reload]]\ncommand = [\"cp\", \"{chain}\", \"{copy}\"]\n",
        out.join("daemon.pid").display(),
        chain = out.join("chain.pem").display(),
        copy = out.join("reloaded.pem").display(),
    );

    standalone::run(config(&bao, out, &extra), true)
        .await
        .expect("once");

    assert_eq!(mode(&out.join("chain.pem")), 0o644);
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(mode(&out.join("ca.pem")), 0o640);
    assert_eq!(mode(&out.join("combined.pem")), 0o600);

    let chain = std::fs::read_to_string(out.join("chain.pem")).expect("chain");
    let key = std::fs::read_to_string(out.join("key.pem")).expect("key");
    let combined = std::fs::read_to_string(out.join("combined.pem")).expect("combined");
    let ca = std::fs::read_to_string(out.join("ca.pem")).expect("ca");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(combined, format!("{chain}{key}"));
    let root = bao.cli_json(&["read", "pki/cert/ca"]);
    let root = root["data"]["certificate"]
        .as_str()
        .expect("root")
        .trim()
        .to_owned();
    assert_eq!(ca.trim(), root, "the CA file holds the mount's issuer");
    let summary = CertSummary::from_der(
        &portcullis_rotator::identity::certs_from_pem(chain.as_bytes(), "chain").expect("pem")[0],
    )
    .expect("parse");
    assert_eq!(
        summary.spiffe_id.as_deref(),
        Some("spiffe://example.org/agent")
    );

    let status = daemon.wait().expect("daemon exit");
    assert_eq!(status.code(), Some(7), "the daemon got SIGHUP");
    let copy = std::fs::read_to_string(out.join("reloaded.pem")).expect("reload command ran");
    assert_eq!(copy, chain, "the command ran after the files were written");
    assert!(
        out.join("cache/current/key.pem").exists(),
        "the cache is written too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rewrites_files_at_each_renewal_and_reloads_each_time() {
    let bao = Bao::start();
    bao.bootstrap_pki("5s");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_path_buf();
    let extra = format!(
        "[[reload]]\ncommand = [\"cp\", \"{chain}\", \"{copy}\"]\n",
        chain = out.join("chain.pem").display(),
        copy = out.join("reloaded.pem").display(),
    );
    let task = tokio::spawn(standalone::run(config(&bao, &out, &extra), false));

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 && tokio::time::Instant::now() < deadline {
        if out.join("reloaded.pem").exists() {
            let serial = serial_of(&out.join("reloaded.pem"));
            if !seen.contains(&serial) {
                assert_eq!(
                    serial,
                    serial_of(&out.join("chain.pem"))
                        .clone()
                        .max(serial.clone())
                );
                seen.push(serial);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "three renewals reloaded, saw {seen:?}");
    assert!(!task.is_finished(), "the daemon keeps running");
    task.abort();
}

#[test]
fn the_agent_examples_in_deploy_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agents");
    let mut parsed = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/agents") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        let config: StandaloneConfig =
            toml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(!config.sinks.is_empty(), "{}", path.display());
        for sink in &config.sinks {
            sink.mode_bits()
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
        for reload in &config.reloads {
            reload
                .check()
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
        parsed += 1;
    }
    assert_eq!(parsed, 3, "consul, nomad and vault examples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_is_retried_and_the_new_files_stay() {
    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_path_buf();

    // A reload that fails the first time and succeeds the next, copying the chain it saw.
    let script = out.join("reload.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e \"$0.tried\" ]; then cp '{chain}' '{copy}'; exit 0; fi\n\
             touch \"$0.tried\"; echo 'daemon not ready' >&2; exit 1\n",
            chain = out.join("chain.pem").display(),
            copy = out.join("reloaded.pem").display(),
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let extra = format!("[[reload]]\ncommand = [\"{}\"]\n", script.display());
    let task = tokio::spawn(standalone::run(config(&bao, &out, &extra), false));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !out.join("reloaded.pem").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload was never retried"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        out.join("reload.sh.tried").exists(),
        "the first attempt failed"
    );
    let chain = std::fs::read_to_string(out.join("chain.pem")).expect("chain");
    let copy = std::fs::read_to_string(out.join("reloaded.pem")).expect("copy");
    assert_eq!(copy, chain, "the files written before the failure stayed");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotate_command_writes_files_serves_metrics_and_stops_on_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let bao = Bao::start();
    bao.bootstrap_pki("60s");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], portcullis_tests::bao::free_port()));
    let extra = format!("[[reload]]\ncommand = [\"true\"]\n\n[metrics]\nlisten = \"{metrics}\"\n");
    let config_path = out.join("rotate.toml");
    std::fs::write(&config_path, config_text(&bao, out, &extra)).expect("config");
    let mut child = std::process::Command::new(portcullis_tests::proxy::binary())
        .args(["rotate", "--config"])
        .arg(&config_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(out.join("rotate.log")).expect("log file"))
        .spawn()
        .expect("portcullis rotate");

    let scrape = || async move {
        let mut stream = tokio::net::TcpStream::connect(metrics).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        Some(text)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        if let Some(text) = scrape().await {
            if text.contains("portcullis_sink_reload_actions_total") {
                break text;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload counted in /metrics; log:\n{}",
            std::fs::read_to_string(out.join("rotate.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(text.contains("result=\"ok\""), "{text}");
    assert!(
        text.contains("portcullis_certificate_seconds_to_expiry{source=\"vault\"}"),
        "{text}"
    );
    assert!(out.join("chain.pem").exists() && out.join("key.pem").exists());
    assert_eq!(mode(&out.join("key.pem")), 0o600);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("portcullis rotate did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
