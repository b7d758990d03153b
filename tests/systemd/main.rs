//! systemd integration of the real binary, and its Debian package:
//!
//! - the units pass `systemd-analyze verify` and score well in `systemd-analyze security`;
//! - `sd_notify`: READY=1 once both sockets accept, WATCHDOG=1 at half of `WATCHDOG_USEC`, STATUS=,
//!   STOPPING=1 on SIGTERM, exit 0;
//! - socket activation through `systemd-socket-activate` (the sockets passed as fds 3 and 4 win
//!   over the config's paths);
//! - SIGTERM in the middle of a pipelined stream: every line gets its reply or the connection
//!   closes, and everything acknowledged is there after a restart;
//! - SIGHUP reloads the config; a broken config is refused, logged with its key, and the old one
//!   stays;
//! - `packaging/build-deb.sh` builds a .deb holding the binary, units, sysusers and tmpfiles
//!   snippets, the config as a conffile, the man page and the completions.
//!
//! Tools come from Debian packages that `.ci/run` installs (`systemd`, `dpkg-dev`) and from
//! `cargo install cargo-deb`; a missing tool fails the test with the package to install.
//!
//! One module a theme: `units`, `notify`, `activation`, `sigterm`, `sighup`, `deb`.

#[path = "../support/mod.rs"]
mod support;

mod activation;
mod deb;
mod notify;
mod sighup;
mod sigterm;
mod units;

use std::io::ErrorKind;
use std::process::{Command, Output, Stdio};

/// The crate's root (where `systemd/`, `config/` and `packaging/` are).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs a tool the test needs; a tool that is not installed fails the test naming what provides it.
fn run_tool(cmd: &mut Command, provider: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "`{program}` is not installed: {provider} (.ci/run installs it before the tests)"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

const SYSTEMD_PKG: &str = "install the Debian package `systemd`";

fn both_streams(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
