//! Fuzz target: arbitrary UTF-8 text as a config file through TOML parsing and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The config is read as a string; bytes that are not UTF-8 never reach the parser.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = callmetrics_fuzz::checks::config_text(text);
    }
});
