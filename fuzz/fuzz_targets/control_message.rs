//! Fuzz target: arbitrary bytes as a control connection, read as a request and as a response.
#![no_main]

use std::sync::OnceLock;

// One runtime for the whole run: building one per input would cost more than the decoding.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rt = RUNTIME.get_or_init(callmetrics_fuzz::checks::runtime);
    let _ = callmetrics_fuzz::checks::control_message(rt, data);
});
