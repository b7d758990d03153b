//! The command line: `run` (the daemon), `check-config`, and the client subcommands.
