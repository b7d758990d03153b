//! Why a client subcommand failed, and the exit code each failure gives.

use std::io;

use thiserror::Error;

use crate::control::client::ClientError;

/// Why a client subcommand failed; the caller prints `error: {e}` and exits with [`CliError::exit_code`].
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon understood the request and refused it, saying why.
    #[error("the daemon answered: {0}")]
    Daemon(String),
    #[error("the daemon answered {request} with a {got} response; is the CLI the same version as the daemon?")]
    Unexpected {
        request: &'static str,
        got: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Input { path: String, source: io::Error },
    /// Talking to the event socket went wrong after connecting (for `send`).
    #[error("{0}")]
    EventSocket(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    /// `watch` draws a live screen: without a terminal there is nothing to draw on.
    #[error("callmetrics watch needs a terminal, and its standard output is not one; for figures a script can read, use `callmetrics metrics --json`")]
    NotATerminal,
    /// The terminal refused to be set up, drawn on or read from (for `watch`).
    #[error("the terminal failed: {0}")]
    Terminal(io::Error),
}

impl CliError {
    /// 1 when the daemon answered with an error or the subcommand cannot run here (no terminal
    /// for `watch`); 2 when the daemon could not be asked or the exchange failed.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Daemon(_) | CliError::NotATerminal | CliError::Terminal(_) => 1,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn exit_codes_tell_refusal_from_unreachable() {
        assert_eq!(CliError::Daemon("no".into()).exit_code(), 1);
        let unreachable = ClientError::connect(Path::new("/x"), io::ErrorKind::NotFound.into());
        assert_eq!(CliError::from(unreachable).exit_code(), 2);
        assert_eq!(
            CliError::Unexpected {
                request: "status",
                got: "done"
            }
            .exit_code(),
            2
        );
        let no_tty = CliError::NotATerminal;
        assert_eq!(no_tty.exit_code(), 1);
        let msg = no_tty.to_string();
        assert!(
            !msg.contains('\n') && msg.contains("metrics --json"),
            "{msg}"
        );
    }
}
