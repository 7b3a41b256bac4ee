//! The command line: `run`, `check`, `inspect`, `mode`, `demo`, `rotate`.

mod admin_client;
mod demo;
mod inspect;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::logging;
use crate::mode::Mode;

/// Portcullis: an mTLS sidecar proxy with zero-downtime certificate rotation.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a configuration file; exits non-zero with the reason when it is invalid.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Describe the certificates in PEM files: subject, SANs, SPIFFE ID, validity, key type.
    Inspect {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show or switch the client authentication mode of a running proxy.
    Mode {
        /// `permissive` or `strict`; omit to show the mode in force.
        mode: Option<Mode>,
        /// The admin API address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// File holding the admin bearer token (or set PORTCULLIS_ADMIN_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Run a self-contained demo: development CA, echo upstream, proxy and admin API.
    Demo(demo::DemoArgs),
    /// Run only the rotator, writing certificate files for daemons that read them from disk.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        /// Write the first certificate, run the reload actions, and exit (prestart tasks).
        #[arg(long)]
        once: bool,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let loaded = Config::load(&config)?;
            logging::init(loaded.log.format, loaded.log.level.as_deref());
            runtime()?.block_on(async {
                let running = crate::app::start(loaded, Some(config), None).await?;
                running.serve_until_signal().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let loaded = Config::load(&config)?;
            println!(
                "{}: valid ({} listener(s), mode {}, source {})",
                config.display(),
                loaded.listeners.len(),
                loaded.auth.mode,
                source_kind(&loaded)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { files } => inspect::run(&files),
        Command::Mode {
            mode,
            admin,
            token_file,
        } => {
            let token = admin_client::token(token_file.as_deref())?;
            let body = runtime()?.block_on(admin_client::mode(admin, mode, token.as_deref()))?;
            print!("{body}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate { config, once } => {
            let loaded = portcullis_rotator::standalone::StandaloneConfig::load(&config)?;
            logging::init(crate::config::LogFormat::Text, None);
            let metrics = crate::metrics::install().map_err(anyhow::Error::msg)?;
            let render: portcullis_rotator::exposition::Render =
                std::sync::Arc::new(move || metrics.render());
            let rotate =
                portcullis_rotator::standalone::run_with_metrics(loaded, once, Some(render));
            runtime()?.block_on(rotate)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            logging::init(crate::config::LogFormat::Text, None);
            runtime()?.block_on(demo::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn source_kind(config: &Config) -> String {
    let debug = format!("{:?}", config.source);
    debug.split('(').next().unwrap_or_default().to_lowercase()
}

/// The async runtime: one worker thread per CPU the process may use (its affinity mask and
/// cgroup quota), and a single-threaded runtime when that is one CPU. With one CPU the
/// multi-threaded scheduler only adds hand-offs between the main thread and its one worker:
/// pinned to one core, the single-threaded runtime cut Portcullis's added p99 latency at
/// 2,000 requests/s by a median 38 µs and its CPU per keep-alive request by up to 18 %
/// (alternating runs, see bench/peers/notes.md).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
