//! `mesh-agent`: the Dubbo mesh agent binary.
//!
//! For now it only carries debugging tools (`decode`); the consumer and provider roles will be further
//! subcommands of [`Command`].

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod decode;
mod run;

/// Exit status for any failure reported as `error: ...` (clap uses the same for usage errors).
const EXIT_FAILURE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "mesh-agent", version, about = "Dubbo mesh agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the consumer agent: HTTP in, Dubbo out to provider agents.
    Consumer(config::ConsumerArgs),
    /// Run the provider agent: in from consumer agents, to the local Dubbo provider; registers in etcd.
    Provider(config::ProviderArgs),
    /// Decode one hex-encoded Dubbo frame (or, with --hessian, one bare Hessian 2 value) and print it as JSON.
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Consumer(args) => config::run_consumer(&args),
        Command::Provider(args) => config::run_provider(&args),
        Command::Decode(args) => decode::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error chain: `{:#}` joins contexts with ": ". Written without
            // `eprintln!` so that a closed stderr cannot turn into a panic.
            let line = format!("error: {e:#}").replace('\n', " ");
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
