//! A store written by the first release opens in this one without losing an acknowledged event.
//!
//! `tests/fixtures/store-v1/` is a store of the first layout: the first release took the 1 090
//! events of `events.jsonl.gz` (300 complete calls, 10 answered and talking, 20 waiting), wrote a
//! checkpoint after the first 700, and was killed with SIGKILL right after acknowledging the rest
//! (so those are only in its log). Opening it migrates it; every figure must then be what the
//! events say, computed here from the events themselves, at the engine's own time (the fixture's
//! calls are older than every window by the time this runs, so the wall clock is not used).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use callmetrics::config::Config;
use callmetrics::engine::{DimKind, Engine, MetricsQuery};
use callmetrics::store::Store;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v1");

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open a fixture file"))
        .read_to_end(&mut out)
        .expect("decompress a fixture file");
    out
}

/// Per queue: (offered, answered, abandoned, handled, waiting now, talking now), from the events.
fn expected() -> BTreeMap<String, [u64; 6]> {
    let text = gunzip(&Path::new(FIXTURE).join("events.jsonl.gz"));
    let mut calls: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for line in String::from_utf8(text).expect("UTF-8").lines() {
        let v: Value = serde_json::from_str(line).expect("an event");
        let id = v["call_id"].as_str().expect("call_id").to_string();
        let kind = v["type"].as_str().expect("type").to_string();
        calls.entry(id).or_default().insert(kind, v);
    }
    let mut out: BTreeMap<String, [u64; 6]> = BTreeMap::new();
    for evs in calls.values() {
        let queue = evs["start"]["queue"].as_str().expect("queue").to_string();
        let row = out.entry(queue).or_default();
        let (answered, ended) = (evs.contains_key("answer"), evs.contains_key("end"));
        row[0] += u64::from(answered || ended);
        row[1] += u64::from(answered);
        row[2] += u64::from(!answered && ended);
        row[3] += u64::from(answered && evs.contains_key("wrapup"));
        row[4] += u64::from(!answered && !ended);
        row[5] += u64::from(answered && !ended);
    }
    out
}

fn figures(e: &Engine) -> BTreeMap<String, [u64; 6]> {
    e.metrics(&MetricsQuery {
        window: Some("24h".into()),
        by: DimKind::Queue,
        key: None,
    })
    .expect("metrics")
    .into_iter()
    .map(|r| {
        let c = &r.counts;
        let rt = &r.realtime;
        (
            r.key,
            [
                c.offered,
                c.answered,
                c.abandoned,
                c.handled,
                rt.waiting_now,
                rt.talking_now,
            ],
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_of_the_first_release_is_migrated_with_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(store_dir.join("blobs")).expect("create the store folder");
    std::fs::copy(Path::new(FIXTURE).join("conf"), store_dir.join("conf")).expect("copy conf");
    std::fs::write(
        store_dir.join("db"),
        gunzip(&Path::new(FIXTURE).join("db.gz")),
    )
    .expect("write db");
    let cfg = Config::default();
    let want = expected();
    assert_eq!(want.values().map(|r| r[0]).sum::<u64>(), 310);

    let store = Store::open(&store_dir, 1 << 20, 1 << 30).expect("open the old store");
    assert!(
        store.needs_migration().expect("schema"),
        "the fixture is of the first layout"
    );
    let (engine, _, last) = callmetrics::daemon::recover(&cfg, &store)
        .await
        .expect("migrate");
    assert!(last > 0, "the old log's groups count");
    assert!(!store.needs_migration().expect("schema"));
    assert_eq!(
        engine.stats().accepted,
        1090,
        "events the first release acknowledged"
    );
    assert_eq!(figures(&engine), want, "figures right after the migration");
    drop(engine);
    drop(store);

    // Opened again, in the new layout: the same figures, nothing migrated or replayed twice.
    let mut store = Store::open(&store_dir, 1 << 20, 1 << 30);
    for _ in 0..50 {
        if store.is_ok() {
            break;
        }
        // sled may still hold its lock for a moment after the first handle was dropped.
        std::thread::sleep(std::time::Duration::from_millis(100));
        store = Store::open(&store_dir, 1 << 20, 1 << 30);
    }
    let store = store.expect("reopen the migrated store");
    assert!(!store.needs_migration().expect("schema"));
    let (engine, replayed, _) = callmetrics::daemon::recover(&cfg, &store)
        .await
        .expect("recover");
    assert_eq!(replayed, 0, "the migration's checkpoint holds everything");
    assert_eq!(engine.stats().accepted, 1090);
    assert_eq!(figures(&engine), want, "figures after reopening");
}
