//! The command line: `run` (the daemon), `check-config`, and the client subcommands.

mod commands;
pub mod error;
pub mod query;
pub mod send;

pub use commands::{main_with, By, Cli, Command, Target, EXIT_CONFIG};
