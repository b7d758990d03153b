//! The `callmetrics` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    callmetrics::cli::main_with(callmetrics::cli::Cli::parse())
}
