//! The command line. Thin: it parses, talks to the engine and prints.

mod get;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Something went wrong before or outside a job (bad input, store, config).
    pub const FAILURE: u8 = 1;
    /// Usage error (clap's own code).
    pub const USAGE: u8 = 2;
    /// The job ended in ERROR (a fatal transfer error); it was cancelled.
    pub const JOB_ERROR: u8 = 3;
    /// Another engine holds the data directory.
    pub const ENGINE_BUSY: u8 = 4;
    /// Interrupted (Ctrl+C): the job was suspended and can be resumed.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 error before or outside a job, 2 usage error, \
3 the job ended in ERROR (it was cancelled), 4 another Ferry engine is using the data directory, \
130 interrupted (the job is suspended; run the same command again to resume it).";

#[derive(Parser, Debug)]
#[command(name = "ferry", version, about = "Background transfers with the job model of BITS", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download URLs now, as one FOREGROUND job, and wait for it.
    ///
    /// The files are named after the last segment of each URL's path. Transient errors are
    /// retried; a fatal error cancels the job. Ctrl+C suspends the job: run the same command again
    /// to resume it where it stopped.
    #[command(after_help = EXIT_CODES)]
    Get(GetArgs),
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Priority of the job: foreground, high, normal or low.
    #[arg(long, default_value = "foreground", value_parser = parse_priority)]
    pub priority: crate::job::Priority,
    /// Folder the files go to (default: the current folder).
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// No progress bar; errors are still printed.
    #[arg(short, long)]
    pub quiet: bool,
    /// Replace destination files that already exist (by default Ferry refuses to).
    #[arg(long)]
    pub overwrite: bool,
    /// The URLs to download (http:// or https://).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
}

fn parse_priority(text: &str) -> Result<crate::job::Priority, String> {
    crate::job::Priority::parse(text)
        .ok_or_else(|| format!("{text:?} is not a priority: use foreground, high, normal or low"))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry: cannot start: {e}");
            return exit::FAILURE;
        }
    };
    match cli.command {
        Command::Get(args) => runtime.block_on(get::run(args)),
    }
}
