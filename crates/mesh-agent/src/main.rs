//! `mesh-agent`: the Dubbo mesh agent binary. Subcommands: the two roles (`consumer`: HTTP in, Dubbo out
//! to provider agents; `provider`: in from consumer agents, out to the local Dubbo provider, registered in
//! etcd) and a debugging tool (`decode`).
//!
//! A role loads its configuration (`config`: file, environment and flags, merged and validated), then either
//! prints it (`--print-config`) or runs (`run`).

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod config;
mod decode;
mod logging;
mod provider_registration;
mod run;

use config::{AgentConfig, Role};

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

/// `mesh-agent consumer`.
fn consumer(args: &config::ConsumerArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    if args.print_config() {
        return print_config(Role::Consumer, &config);
    }
    start_logging(Role::Consumer, &config)?;
    run::consumer(&config)
}

/// `mesh-agent provider`.
fn provider(args: &config::ProviderArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    if args.print_config() {
        return print_config(Role::Provider, &config);
    }
    start_logging(Role::Provider, &config)?;
    run::provider(&config, || args.load())
}

/// Installs the log subscriber (`MESH_LOG`, `log.format`) and logs the configuration the role runs with.
fn start_logging(role: Role, config: &AgentConfig) -> anyhow::Result<()> {
    logging::init(config.log.format)?;
    let etcd = config
        .etcd
        .as_ref()
        .map_or_else(|| "none".to_owned(), |e| e.endpoints.join(","));
    tracing::info!(
        %role,
        shards = config.runtime.shards,
        cores = ?config.runtime.cores,
        %etcd,
        log_format = ?config.log.format,
        "configuration loaded"
    );
    Ok(())
}

/// `--print-config`: the effective configuration, itself a valid config file.
fn print_config(role: Role, config: &AgentConfig) -> anyhow::Result<()> {
    let mut text = format!(
        "# mesh-agent {role}: effective configuration (flag > env > file > default)\n{}",
        config.to_toml()?
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Consumer(args) => consumer(&args),
        Command::Provider(args) => provider(&args),
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
