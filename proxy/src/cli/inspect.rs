//! `portcullis inspect FILE...`: what each certificate in PEM files says.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use portcullis_rotator::identity::certs_from_pem;
use portcullis_rotator::inspect::{CertSummary, unix_seconds};

/// Prints every certificate found; fails when a file has none or cannot be read.
pub fn run(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let now = unix_seconds(SystemTime::now());
    let mut failed = false;
    for file in files {
        let what = file.display().to_string();
        let certs = std::fs::read(file)
            .map_err(|err| anyhow::anyhow!("{what}: {err}"))
            .and_then(|pem| certs_from_pem(&pem, &what).map_err(anyhow::Error::from));
        let certs = match certs {
            Ok(certs) => certs,
            Err(err) => {
                eprintln!("{err}");
                failed = true;
                continue;
            }
        };
        for (index, der) in certs.iter().enumerate() {
            println!("{what} [{index}]");
            match CertSummary::from_der(der) {
                Ok(summary) => print_summary(&summary, now),
                Err(err) => {
                    println!("  error: {err}");
                    failed = true;
                }
            }
            println!();
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_summary(cert: &CertSummary, now: i64) {
    println!("  subject:     {}", cert.subject);
    println!("  issuer:      {}", cert.issuer);
    println!("  serial:      {}", cert.serial);
    if let Some(id) = &cert.spiffe_id {
        println!("  spiffe id:   {id}");
    }
    for dns in &cert.dns_names {
        println!("  dns:         {dns}");
    }
    for uri in &cert.uris {
        println!("  uri:         {uri}");
    }
    for ip in &cert.ip_addresses {
        println!("  ip:          {ip}");
    }
    println!("  not before:  {}", format_time(cert.not_before));
    println!("  not after:   {}", format_time(cert.not_after));
    let left = cert.not_after - now;
    if left > 0 {
        println!("  time left:   {}", format_duration(left));
    } else {
        println!("  time left:   EXPIRED {} ago", format_duration(-left));
    }
    println!("  key type:    {}", cert.key_type);
    println!("  ca:          {}", if cert.is_ca { "yes" } else { "no" });
    println!("  sha256:      {}", cert.sha256);
}

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn format_duration(seconds: i64) -> String {
    let (days, rest) = (seconds / 86400, seconds % 86400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}
