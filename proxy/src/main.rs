//! The `portcullis` command: see `portcullis --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use portcullis::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("portcullis: {err:#}");
            ExitCode::FAILURE
        }
    }
}
