//! Fuzz target: arbitrary bytes as one MessagePack frame body through the daemon's intake decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = callmetrics_fuzz::checks::msgpack_frame(data);
});
