//! A full disk loses nothing, on a real small file system: the store lives on an 8 MiB tmpfs
//! mounted by the test (which needs root, as in CI; without it the test fails and says so).
//!
//! Events go in until the daemon refuses them. Then, with the disk still full: `status`, `calls`
//! and `metrics` answer at once, SIGTERM stops the daemon within seconds, and a new start is
//! refused cleanly without touching the store. Once space is freed, the next start has every
//! acknowledged call, and the refused events, sent again, are taken and counted exactly once.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cli, now_ms, run_to_exit, Daemon, BIN};

/// A tmpfs mounted on a folder for the life of the value.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root (CI runs it as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { at: at.to_owned() }
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// An abandoned call: start, then end ten seconds later.
fn call(i: usize, base: i64) -> [Value; 2] {
    let id = format!("full-{i}-with-a-longer-call-id-as-some-pbxes-make-them");
    let ts = base + (i as i64 % 3_000_000);
    [
        json!({"type":"start","call_id":id,"queue":format!("q{}", i % 7),"ts":ts}),
        json!({"type":"end","call_id":id,"ts":ts + 10_000,"reason":"abandoned"}),
    ]
}

fn offered(d: &Daemon) -> u64 {
    d.metrics("24h", "all")[0]["offered"].as_u64().unwrap_or(0)
}

/// Fills what is left of the file system holding `dir` with a file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", path.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run dd");
    // dd stops with an error when the disk is full: that is the point.
    let _ = status;
    path
}

#[test]
fn a_full_disk_loses_nothing_acknowledged() {
    let mut d = Daemon::configure("[limits]\nmax_batch_events = 1000\nmax_line_bytes = 1048576\n");
    let store = d.dir.path().join("store");
    let fs = Tmpfs::mount(&store, "8m");
    d.restart();

    // Calls of the last hour, 250 per line, until the daemon refuses.
    let base = now_ms() - 3_600_000;
    let mut conn = d.json_conn();
    let mut acked: Vec<[bool; 2]> = Vec::new();
    let mut refusal: Option<Value> = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        let first = acked.len();
        let batch: Vec<Value> = (first..first + 250).flat_map(|i| call(i, base)).collect();
        let reply = conn.request(&Value::Array(batch).to_string());
        let failed: Vec<usize> = reply["failed"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["index"].as_u64().map(|i| i as usize))
                    .collect()
            })
            .unwrap_or_default();
        for k in 0..250 {
            acked.push([!failed.contains(&(2 * k)), !failed.contains(&(2 * k + 1))]);
        }
        if reply["ok"] != json!(true) {
            refusal.get_or_insert(reply);
            // A few more lines, all refused, as a PBX keeps sending.
            if acked.len() > first + 250 * 4 || failed.len() == 500 {
                break;
            }
        }
    }
    let refusal = refusal.expect("the daemon never refused within 3 minutes on an 8 MiB disk");
    let text = refusal.to_string();
    assert!(
        text.contains("disk full") || text.contains("store.max_bytes"),
        "the refusal does not say the disk is full: {text}"
    );
    let full_calls = acked.iter().filter(|a| a[0] && a[1]).count() as u64;
    assert!(full_calls > 1000, "only {full_calls} calls were taken");
    assert_eq!(
        offered(&d),
        full_calls,
        "offered calls vs fully acknowledged calls"
    );

    // Queries answer at once although the store cannot write.
    for args in [
        &["status", "--json"][..],
        &["calls", "--json"],
        &["metrics", "--json", "--window", "24h"],
    ] {
        let t = Instant::now();
        let out = d.query(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{args:?} took {:?}",
            t.elapsed()
        );
    }

    // Really full: nothing left at all. SIGTERM still stops it within seconds.
    let filler = fill(&store);
    let t = Instant::now();
    let _ = d.terminate();
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "SIGTERM took {:?}",
        t.elapsed()
    );

    // A start on the full disk is refused cleanly, saying why.
    let out = run_to_exit(
        Command::new(BIN).arg("run").arg("--config").arg(&d.config),
        Duration::from_secs(20),
    );
    let status = out.status;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "a start on a full disk succeeded: {log}");
    assert!(
        log.contains("disk full"),
        "the refusal does not say the disk is full: {log}"
    );

    // Space freed: everything acknowledged is back.
    std::fs::remove_file(&filler).expect("remove the filler");
    fs.resize("64m");
    d.restart();
    assert_eq!(
        offered(&d),
        full_calls,
        "after space was freed and a restart"
    );

    // The refused events, sent again, are stored and counted once; the taken ones are duplicates.
    let mut conn = d.json_conn();
    let again: Vec<Value> = acked
        .iter()
        .enumerate()
        .flat_map(|(i, ok)| {
            let [s, e] = call(i, base);
            [(!ok[0]).then_some(s), (!ok[1]).then_some(e)]
                .into_iter()
                .flatten()
        })
        .collect();
    for chunk in again.chunks(500) {
        let reply = conn.request(&Value::Array(chunk.to_vec()).to_string());
        assert_eq!(reply["ok"], json!(true), "{reply}");
    }
    // A client that resends a whole recent batch: the events already stored are duplicates.
    let first_refused = acked
        .iter()
        .position(|a| !(a[0] && a[1]))
        .unwrap_or(acked.len());
    let recent: Vec<Value> = (first_refused.saturating_sub(100)..first_refused)
        .flat_map(|i| call(i, base))
        .collect();
    let reply = conn.request(&Value::Array(recent).to_string());
    assert_eq!(reply["ok"], json!(true), "{reply}");
    // Let the reorder grace pass so every call is folded.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(offered(&d), acked.len() as u64, "every call exactly once");
    d.stop();
    let out = cli(["status", "--socket", &d.control_arg()]);
    assert!(!out.status.success(), "the daemon still answers after stop");
}
