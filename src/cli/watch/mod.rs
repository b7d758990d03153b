//! `callmetrics watch`: a live wallboard in the terminal, one row per queue (or agent, or
//! channel) with its service level against target and the real-time figures, refreshed every
//! second over the control socket.
//!
//! `app.rs` holds the state and what keys and answers do to it, `render.rs` draws it,
//! `poll.rs` runs the loop that asks the daemon and reads the keys. This file checks there is a
//! terminal and sets it up and back.

mod app;
mod poll;
mod render;

use std::io::{self, IsTerminal, Stdout};
use std::path::Path;
use std::process::ExitCode;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

use super::error::CliError;

/// Shows the wallboard of the daemon at `socket` until a quit key; refuses without a terminal.
pub async fn watch(socket: &Path) -> Result<ExitCode, CliError> {
    if !io::stdout().is_terminal() {
        return Err(CliError::NotATerminal);
    }
    let mut screen = Screen::enter().map_err(CliError::Terminal)?;
    let result = poll::run(socket, &mut screen.terminal).await;
    // The screen is restored before the caller prints any error, so the error stays visible.
    drop(screen);
    result.map(|()| ExitCode::SUCCESS)
}

/// The terminal in raw mode on its alternate screen, cursor hidden, for as long as it lives:
/// dropping it (also while a panic unwinds) gives the shell its screen back.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> io::Result<Screen> {
        // A panic's message is printed before the stack unwinds to `Drop`: on the alternate
        // screen it would vanish with it. Leave the screen first, then report as before.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            leave(&mut io::stdout());
            report(info);
        }));
        enable_raw_mode()?;
        let mut out = io::stdout();
        let entered = execute!(out, EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(out)));
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                leave(&mut io::stdout());
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        leave(self.terminal.backend_mut());
    }
}

/// Back to the main screen with the cursor shown and the line discipline restored. Failures are
/// not reported: this runs on the way out, and there is nothing left to draw an error on.
fn leave(out: &mut impl io::Write) {
    let _ = execute!(out, LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
}
