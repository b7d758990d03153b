//! The `callmetrics` binary: parse the command line and hand over to the library.

use clap::Parser;

/// jemalloc with its background thread (settings in `.cargo/config.toml`): freed memory goes
/// back to the system within seconds, where glibc's arenas kept ~60 MiB of what sled's write
/// path and a compaction free (see the README's memory section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    callmetrics::cli::main_with(callmetrics::cli::Cli::parse())
}
