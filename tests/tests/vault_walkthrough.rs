//! The Vault walkthrough of the root `README.md`, run exactly as written: the shell blocks
//! between `<!-- walkthrough -->` and `<!-- /walkthrough -->`, in one bash, from the
//! repository root, against a real `bao server -dev` and the real binary. A new user's
//! experience, checked by what the commands print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The walkthrough sleeps about 40 s on purpose (to watch renewals); this bounds the rest.
const LIMIT: Duration = Duration::from_secs(150);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The `sh` blocks of the marked section, in order.
fn walkthrough_script(readme: &str) -> String {
    let start = readme
        .find("<!-- walkthrough -->")
        .expect("walkthrough start marker");
    let end = readme
        .find("<!-- /walkthrough -->")
        .expect("walkthrough end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[start..end].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, text) => {
                script.push_str(text);
                script.push('\n');
            }
            _ => {}
        }
    }
    assert!(!in_block, "unterminated code block in the walkthrough");
    script
}

/// Kills the walkthrough's whole process group (OpenBao, the upstream, Portcullis) on drop.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0)])
            .status();
    }
}

#[test]
fn the_readme_walkthrough_works_as_written() {
    let root = repo_root();
    // The walkthrough runs ./target/debug/portcullis: fail clearly when it is not built.
    portcullis_tests::proxy::binary();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let script = walkthrough_script(&readme);
    assert!(script.contains("bao server -dev") && script.contains("portcullis run"));

    let home = tempfile::tempdir().expect("home");
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new("bash")
            .arg("-s")
            .current_dir(&root)
            .env("HOME", home.path())
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        0,
    )
    .spawn()
    .expect("bash");
    let _group = Group(child.id());
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");

    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < LIMIT,
            "the walkthrough took longer than {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert!(output.status.success(), "the last step failed\n{context}");
    assert!(
        stdout.contains("bootstrap-pki: AppRole portcullis"),
        "{context}"
    );
    assert!(
        stdout.contains("\"spiffe_id\": \"spiffe://example.org/web\""),
        "{context}"
    );
    assert!(
        stdout.to_lowercase().contains("directory listing"),
        "mTLS client\n{context}"
    );
    assert!(
        stdout.contains("no client certificate: refused"),
        "{context}"
    );
    let mut serials: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("serving serial "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(serials.len(), 3, "{context}");
    serials.dedup();
    assert!(serials.len() >= 2, "the serial never changed\n{context}");
    let after_watch = stdout.rsplit("serving serial").next().unwrap_or_default();
    let compact: String = after_watch.split_whitespace().collect();
    assert!(
        compact.contains("\"result\":\"published\""),
        "POST /rotate\n{context}"
    );
    assert!(
        stdout.contains("portcullis_vault_token_ttl_seconds"),
        "{context}"
    );
}
