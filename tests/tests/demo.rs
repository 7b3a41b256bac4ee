//! `portcullis demo` as a new user meets it, driven with curl as an independent client:
//! requests succeed through rotations, and strict mode refuses what it should.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_tests::proxy::{admin_request, binary, free_port};

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(port: u16, dir: &Path, args: &[&str], url: &str) -> Output {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "5",
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ])
        .arg("--cacert")
        .arg(dir.join("ca.pem"));
    for arg in args {
        command.arg(arg.replace("DIR", &dir.display().to_string()));
    }
    command
        .arg(url)
        .output()
        .expect("curl must be installed (tests/run.sh installs it)")
}

fn body(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_serves_through_rotations_and_strict_mode_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let child = Command::new(binary())
        .args([
            "demo",
            "--ttl",
            "8s",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--admin", &admin.to_string(), "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let _demo = Demo(child);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(
        admin_request(admin, "GET", "/readyz", "").await,
        Ok((200, _))
    ) {
        assert!(Instant::now() < deadline, "demo never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let url = format!("https://localhost:{port}/");
    let with_cert = ["--cert", "DIR/client.pem", "--key", "DIR/client-key.pem"];
    let mut serials = std::collections::BTreeSet::new();
    let mut requests = 0;
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let output = curl(port, dir.path(), &with_cert, &url);
        assert!(
            output.status.success() && body(&output).contains("hello from the upstream"),
            "request {requests} failed: {} {}",
            body(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            body(&output).contains("URI=spiffe://portcullis.demo/client"),
            "{}",
            body(&output)
        );
        requests += 1;
        let (_, status) = admin_request(admin, "GET", "/status", "").await.unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        serials.insert(status["certificate"]["serial"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        serials.len() >= 3,
        "{} serials in 15 s of 8 s certificates",
        serials.len()
    );

    // Permissive: no certificate and plaintext still get through.
    let output = curl(port, dir.path(), &[], &url);
    assert!(
        body(&output).contains("hello from the upstream"),
        "permissive, no cert"
    );

    let switch = Command::new(binary())
        .args(["mode", "strict", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    assert!(
        switch.status.success(),
        "{}",
        String::from_utf8_lossy(&switch.stderr)
    );

    let output = curl(port, dir.path(), &[], &url);
    assert!(
        !output.status.success() && body(&output).is_empty(),
        "strict, no cert: {output:?}"
    );
    let output = curl(port, dir.path(), &[], &format!("http://127.0.0.1:{port}/"));
    assert!(
        !body(&output).contains("hello"),
        "strict, plaintext: {output:?}"
    );
    let intruder = [
        "--cert",
        "DIR/intruder.pem",
        "--key",
        "DIR/intruder-key.pem",
    ];
    let output = curl(port, dir.path(), &intruder, &url);
    assert!(
        !output.status.success() && body(&output).is_empty(),
        "strict, intruder: {output:?}"
    );
    let output = curl(port, dir.path(), &with_cert, &url);
    assert!(
        body(&output).contains("hello from the upstream"),
        "strict, client: {output:?}"
    );
}
