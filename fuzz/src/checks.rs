//! The properties every fuzz target asserts, one function a target, shared by the fuzz targets
//! (through this crate) and `tests/fuzz_regressions.rs` (which includes this file by path), so
//! the corpus replayed by `cargo test` meets exactly the checks the fuzzer ran.
//!
//! Each function feeds its bytes to the decoder the daemon runs on them, panics only when a
//! property fails (a panic is what the fuzzer reports as a crash), and returns what it decoded,
//! so a test can also assert that a valid seed stays valid.

use std::path::Path;

use callmetrics::config::{Config, ConfigError, LimitsConfig};
use callmetrics::control::protocol::{
    read_message, read_message_within, write_message, ProtocolError, Request, Response,
    MAX_REQUEST_BYTES,
};
use callmetrics::event::Event;
use callmetrics::ingest::decode::{decode_json, decode_msgpack, msgpack_value_len, Decoded};

/// What a line or frame decoded to: `None` if the decoder refused it as malformed, else the
/// events it accepted and the count it refused (validation errors, or a batch over the limit).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Intake {
    pub events: Vec<Event>,
    pub refused: usize,
}

/// One JSON line (what the connection hands the decoder: the line without its newline) through
/// `decode_json` with the default limits.
pub fn json_line(line: &[u8]) -> Option<Intake> {
    let limits = LimitsConfig::default();
    let decoded = decode_json(line, &limits.event_limits(), limits.max_batch_events).ok()?;
    Some(check_decoded(decoded, &limits))
}

/// One `MessagePack` frame body through `decode_msgpack` with the default limits.
pub fn msgpack_frame(body: &[u8]) -> Option<Intake> {
    let limits = LimitsConfig::default();
    let decoded = decode_msgpack(body, &limits.event_limits(), limits.max_batch_events).ok()?;
    // A body the decoder took is exactly one value, so the length reader must agree: the
    // decoder relies on it to refuse trailing bytes.
    assert_eq!(
        msgpack_value_len(body),
        Some(body.len()),
        "a decoded frame's value length disagrees with its size"
    );
    Some(check_decoded(decoded, &limits))
}

/// The properties of any decoded line or frame: a batch stays within its limit, and every event
/// accepted re-encodes (as the JSON a client sends, and as `MessagePack`) into the same event.
fn check_decoded(decoded: Decoded, limits: &LimitsConfig) -> Intake {
    let results = match decoded {
        Decoded::One(result) => vec![result],
        Decoded::Batch(results) => {
            assert!(
                results.len() <= limits.max_batch_events,
                "a batch of {} items was decoded past the limit",
                results.len()
            );
            results
        }
        Decoded::TooLarge { events } => {
            assert!(
                events > limits.max_batch_events,
                "a batch of {events} items was refused as too large"
            );
            return Intake {
                events: Vec::new(),
                refused: events,
            };
        }
    };
    let mut intake = Intake::default();
    for result in results {
        match result {
            Ok(event) => {
                assert_round_trips(&event, limits);
                intake.events.push(event);
            }
            Err(error) => {
                // Every refusal is a reply's text: it must say something.
                assert!(!error.to_string().is_empty());
                intake.refused += 1;
            }
        }
    }
    intake
}

fn assert_round_trips(event: &Event, limits: &LimitsConfig) {
    let value = event.to_json();
    let json = serde_json::to_vec(&value).expect("a JSON value serializes");
    let back = decode_json(&json, &limits.event_limits(), limits.max_batch_events);
    assert_eq!(
        back,
        Ok(Decoded::One(Ok(event.clone()))),
        "the event re-encoded as {} decodes differently",
        String::from_utf8_lossy(&json)
    );
    let packed = rmp_serde::to_vec_named(&value).expect("a JSON value packs");
    let back = decode_msgpack(&packed, &limits.event_limits(), limits.max_batch_events);
    assert_eq!(
        back,
        Ok(Decoded::One(Ok(event.clone()))),
        "the event re-encoded as MessagePack {packed:02x?} decodes differently"
    );
}

/// What a control message decoded to, as the daemon reads a request and the CLI a response.
#[derive(Debug)]
pub struct Control {
    pub request: Result<Request, ProtocolError>,
    pub response: Result<Response, ProtocolError>,
}

/// The bytes of a control connection through `read_message_within` as the daemon reads a
/// request (capped at `MAX_REQUEST_BYTES`) and through `read_message` as the CLI reads a
/// response; whatever decodes must be written back by `write_message` into bytes that read
/// back to the same message.
pub fn control_message(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Control {
    rt.block_on(async {
        let request = read_message_within::<_, Request>(&mut &bytes[..], MAX_REQUEST_BYTES).await;
        if let Ok(req) = &request {
            let mut wire = Vec::new();
            write_message(&mut wire, req)
                .await
                .expect("a request writes");
            let back: Request = read_message(&mut wire.as_slice())
                .await
                .expect("a written request reads back");
            assert_eq!(&back, req, "a request changed through write and read");
        }
        let response = read_message::<_, Response>(&mut &bytes[..]).await;
        if let Ok(resp) = &response {
            // Responses carry floats (a NaN is not equal to itself), so the check is that the
            // written bytes are a fixed point: write, read, write again gives the same bytes.
            let mut wire = Vec::new();
            write_message(&mut wire, resp)
                .await
                .expect("a response writes");
            let back: Response = read_message(&mut wire.as_slice())
                .await
                .expect("a written response reads back");
            let mut again = Vec::new();
            write_message(&mut again, &back)
                .await
                .expect("a response writes");
            assert_eq!(wire, again, "a response changed through write and read");
        }
        Control { request, response }
    })
}

/// A current-thread runtime for [`control_message`], built once by the caller.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds")
}

/// Config text through `Config::parse` (TOML, then validation). A refusal must name what is
/// wrong, and an invalid value its key and a line inside the text; an accepted config must give
/// every queue its parameters. (A config is not written back as TOML anywhere: its durations
/// serialize as integer milliseconds for the CLI, so a text round trip is no property.)
pub fn config_text(text: &str) -> Option<Config> {
    let path = Path::new("fuzz.toml");
    match Config::parse(text, path) {
        Ok(cfg) => {
            for queue in cfg.queues.keys() {
                let params = cfg.queue_params(queue);
                assert!((0.0..=1.0).contains(&params.target), "{queue}: {params:?}");
            }
            // Every objective the validation accepts can be built (its calendar included).
            if let Err(problems) = callmetrics::sla::objective::objectives(&cfg) {
                panic!("an accepted [[sla]] entry cannot be built: {problems:?}");
            }
            Some(cfg)
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty(), "a config refused with no problem");
            let lines = text.split('\n').count();
            for p in &problems {
                assert!(!p.key.is_empty() && !p.message.is_empty(), "{p:?}");
                if let Some(line) = p.line {
                    assert!(
                        (1..=lines).contains(&line),
                        "{p:?} in a text of {lines} lines"
                    );
                }
            }
            None
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            None
        }
    }
}
