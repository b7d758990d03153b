//! The fuzz targets' shared checks (`checks.rs`, also replayed by `tests/fuzz_regressions.rs`).

pub mod checks;
