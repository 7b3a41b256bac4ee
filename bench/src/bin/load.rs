//! `portcullis-load`: the mTLS load client. See `--help`; the options are
//! [`portcullis_bench::LoadOptions`].

use anyhow::Context;
use clap::Parser;
use portcullis_bench::LoadOptions;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = LoadOptions::parse();
    let threads = options
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("building the runtime")?;

    let json = options.json;
    let json_out = options.json_out.clone();
    let report = runtime.block_on(portcullis_bench::run(options))?;
    let json_text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = json_out {
        std::fs::write(&path, &json_text).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{json_text}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
