//! `portcullis inspect`: what a certificate file says, as an operator reads it.

use std::process::Command;
use std::time::Duration;

use portcullis_rotator::source::{DevCa, LeafSpec};
use portcullis_tests::proxy::binary;

#[test]
fn inspect_describes_every_certificate_and_fails_on_files_without_one() {
    let ca = DevCa::new("Inspect CA", Duration::from_secs(86400)).unwrap();
    let spec = LeafSpec {
        common_name: "payments".into(),
        dns_names: vec!["payments.service.consul".into()],
        uris: vec!["spiffe://example.org/ns/prod/payments".into()],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
    };
    // 1h 1m 30s: "time left" reads 1h 1m for the first 30 s, however slowly the binary starts.
    let leaf = ca.issue(&spec, Duration::from_secs(3690)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("chain.pem");
    std::fs::write(
        &chain,
        format!("{}{}", leaf.chain_pem(), ca.certificate_pem()),
    )
    .unwrap();

    let output = Command::new(binary())
        .arg("inspect")
        .arg(&chain)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "CN=payments",
        "issuer:      CN=Inspect CA",
        "spiffe id:   spiffe://example.org/ns/prod/payments",
        "dns:         payments.service.consul",
        "ip:          127.0.0.1",
        "key type:    ECDSA P-256",
        "time left:   1h 1m",
        "ca:          yes",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(text.matches("serial:").count(), 2, "{text}");

    let key = dir.path().join("key.pem");
    std::fs::write(&key, leaf.key_pem()).unwrap();
    let output = Command::new(binary())
        .arg("inspect")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no PEM certificate"),
        "{output:?}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("PRIVATE"),
        "key printed"
    );
}
