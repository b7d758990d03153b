//! The `callmetrics` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc with its background thread (settings in `.cargo/config.toml`; the thread is started
/// in `main`, for the daemon only): freed memory goes back to the system within seconds, where
/// glibc's arenas kept ~60 MiB of what sled's write path and a compaction free (see the README's
/// memory section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = callmetrics::cli::Cli::parse();
    if matches!(cli.command, callmetrics::cli::Command::Run { .. }) {
        // jemalloc's background thread returns freed pages within a second (the daemon's
        // memory bound relies on it). It is started here, for the daemon only: the CLI's
        // commands are short-lived, and starting it cost each of them ~0.8 ms of CPU.
        if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
            eprintln!("warning: jemalloc's background thread did not start ({e}); freed memory returns to the system more slowly");
        }
    }
    callmetrics::cli::main_with(cli)
}
