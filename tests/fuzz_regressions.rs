//! The fuzz corpora as a regression suite: every seed in `fuzz/corpus/<target>/` and every input
//! that once made a target fail, kept in `fuzz/regressions/<target>/`, goes through the same
//! checks the fuzz targets run (`fuzz/src/checks.rs`, included here), so `cargo test` replays
//! them without the nightly toolchain. A panic in a check is a failure; the seeds known to be
//! valid must also decode to events (or a config, or a message).

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Seeds and regressions of `target`; the seeds must not be empty (a corpus lost by a move
/// would otherwise pass unnoticed).
fn all_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let seeds = inputs("corpus", target);
    assert!(
        seeds.len() >= 10,
        "fuzz/corpus/{target} holds {} files",
        seeds.len()
    );
    seeds
        .into_iter()
        .chain(inputs("regressions", target))
        .collect()
}

#[test]
fn json_line_corpus() {
    let mut accepted = 0;
    for (_, bytes) in all_inputs("json_line") {
        let intake = checks::json_line(&bytes);
        accepted += intake.map_or(0, |i| i.events.len());
    }
    // The seeds taken from the layout-1 fixture and the README examples are valid events.
    assert!(
        accepted >= 20,
        "only {accepted} events decoded from the seeds"
    );
    // A few by name: a fixture line, a batch, and a refusal.
    let one = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/json_line")
            .join(name);
        checks::json_line(&std::fs::read(path).unwrap())
    };
    let first = one("seed-000").expect("a fixture line decodes");
    assert_eq!((first.events.len(), first.refused), (1, 0));
    assert!(one("seed-034").is_none(), "a line cut short is malformed");
}

#[test]
fn msgpack_frame_corpus() {
    let mut accepted = 0;
    for (_, bytes) in all_inputs("msgpack_frame") {
        accepted += checks::msgpack_frame(&bytes).map_or(0, |i| i.events.len());
    }
    assert!(
        accepted >= 20,
        "only {accepted} events decoded from the seeds"
    );
}

#[test]
fn control_message_corpus() {
    let rt = checks::runtime();
    let (mut requests, mut responses) = (0, 0);
    for (path, bytes) in all_inputs("control_message") {
        let decoded = checks::control_message(&rt, &bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The captured seeds are what the CLI sent and the daemon answered.
        if name.starts_with("seed-req-") {
            assert!(decoded.request.is_ok(), "{name}: {:?}", decoded.request);
            requests += 1;
        }
        if name.starts_with("seed-resp-") {
            assert!(decoded.response.is_ok(), "{name}: {:?}", decoded.response);
            responses += 1;
        }
    }
    assert!(
        requests >= 5 && responses >= 5,
        "{requests} requests, {responses} responses"
    );
}

#[test]
fn config_text_corpus() {
    let mut valid = 0;
    for (_, bytes) in all_inputs("config_text") {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            valid += usize::from(checks::config_text(text).is_some());
        }
    }
    // The shipped example, each of its sections and the sink example are valid.
    assert!(valid >= 10, "only {valid} seeds are valid configs");
    let example = include_str!("../config/agent.toml");
    assert!(checks::config_text(example).is_some());
}
