//! `mpt`: Multitask Prompt Tuning from the command line.

mod common;
mod device;
mod model_cmd;
mod progress;
mod stages;
mod summary;

use clap::{Parser, Subcommand};

/// Multitask Prompt Tuning (ICLR 2023) on frozen transformers.
#[derive(Debug, Parser)]
#[command(name = "mpt", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect a backbone folder or run a forward pass.
    #[command(subcommand)]
    Model(model_cmd::ModelCmd),
    /// Stage 1: vanilla prompt tuning of one source task -> a teacher artifact.
    Teacher(stages::TeacherArgs),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let result = match cli.command {
        Command::Model(cmd) => model_cmd::run(cmd),
        Command::Teacher(args) => stages::teacher(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
