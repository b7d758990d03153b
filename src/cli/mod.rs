//! The command line: `run` (the daemon), `check-config`, and the client subcommands.
//!
//! `commands.rs` holds the grammar ([`Cli`]) and dispatch, [`query`] the subcommands that ask the
//! control socket, [`send`] the one that writes events, [`watch`] the live wallboard, [`error`] why a client subcommand failed,
//! `log_filter` the daemon's log filter.

mod commands;
pub mod error;
pub mod import;
mod log_filter;
pub mod query;
pub mod send;
pub mod watch;

pub use commands::{main_with, By, Cli, Command, Target, EXIT_CONFIG};
