//! `bench-certs`: writes the ECDSA P-256 certificate set every peer is benchmarked with.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "bench-certs",
    about = "Writes the benchmark CA, server and client certificates"
)]
struct Options {
    /// Directory to write into.
    #[arg(long, default_value = "bench-certs")]
    out: PathBuf,
    /// Prepared server certificate pairs for file rotation.
    #[arg(long, default_value_t = 4)]
    rotation_pairs: usize,
    /// Validity of the leaves, in days.
    #[arg(long, default_value_t = 7)]
    days: u64,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    let ttl = Duration::from_secs(options.days * 24 * 3600);
    portcullis_bench::certs::write_set(&options.out, options.rotation_pairs, ttl)?;
    println!("wrote certificates to {}", options.out.display());
    Ok(())
}
