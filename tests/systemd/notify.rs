//! `sd_notify`: READY=1 once both sockets accept, WATCHDOG=1 at half of `WATCHDOG_USEC`, STATUS=,
//! STOPPING=1 on SIGTERM, exit 0; received on a datagram socket the test binds.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Daemon, DEADLINE, START_DEADLINE};

/// One datagram received on the notify socket, and when.
struct Note {
    at: Instant,
    text: String,
}

impl Note {
    fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }
}

/// Receives on `sock` until `stop`, forwarding every datagram. Draining all the time matters:
/// the kernel queues only a few datagrams (`net.unix.max_dgram_qlen`) before the sender blocks.
fn receive_notes(sock: UnixDatagram, stop: Arc<AtomicBool>, tx: mpsc::Sender<Note>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("set a read timeout");
    let mut buf = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let note = Note {
                    at: Instant::now(),
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                };
                if tx.send(note).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("receiving on the notify socket failed: {e}"),
        }
    }
}

/// Takes notes until one has `line`; every note taken is appended to `seen`.
fn wait_note(
    rx: &mpsc::Receiver<Note>,
    line: &str,
    limit: Duration,
    seen: &mut Vec<Note>,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(note) => {
                let found = note.has(line);
                seen.push(note);
                if found {
                    return seen.len() - 1;
                }
            }
            Err(e) => panic!(
                "no {line} within {limit:?} ({e}); received: {:?}",
                seen.iter().map(|n| &n.text).collect::<Vec<_>>()
            ),
        }
    }
}

#[test]
fn notify_ready_watchdog_stopping() {
    let mut d = Daemon::configure("");
    let notify_path = d.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let receiver = {
        let stop = stop.clone();
        thread::spawn(move || receive_notes(sock, stop, tx))
    };

    d.spawn_with(
        &[],
        &[
            ("NOTIFY_SOCKET", notify_path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("400000")),
        ],
    );
    let mut seen = Vec::new();
    let ready = wait_note(&rx, "READY=1", START_DEADLINE, &mut seen);
    // Right at READY=1 both sockets must take connections.
    let events = UnixStream::connect(&d.events);
    let control = UnixStream::connect(&d.control);
    assert!(
        events.is_ok() && control.is_ok(),
        "READY=1 came before the sockets accept: events {events:?}, control {control:?}\nlog:\n{}",
        d.log_tail()
    );
    drop((events, control));
    let ready_at = seen[ready].at;
    let status = seen[ready]
        .text
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .map_or_else(
            || panic!("READY=1 came without STATUS=: {:?}", seen[ready].text),
            str::to_string,
        );
    assert!(
        status.contains("events accepted"),
        "unexpected STATUS= text: {status:?}"
    );

    // WATCHDOG_USEC=400000: a ping every 200 ms, so at least 3 in the 1.5 s after READY.
    let until = ready_at + Duration::from_millis(1500);
    let from = seen.len();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(note) => seen.push(note),
            Err(_) => break,
        }
    }
    let pings: Vec<Duration> = seen[from..]
        .iter()
        .filter(|n| n.has("WATCHDOG=1") && n.at <= until)
        .map(|n| n.at - ready_at)
        .collect();
    assert!(
        pings.len() >= 3,
        "only {} WATCHDOG=1 within 1.5 s of READY=1 (at {pings:?})",
        pings.len()
    );
    assert!(
        !seen.iter().any(|n| n.has("STOPPING=1")),
        "STOPPING=1 before any stop signal"
    );

    // The daemon answers as usual meanwhile.
    assert_eq!(d.status()["ingest"]["events_accepted"], json!(0));

    let exit = d.terminate();
    wait_note(&rx, "STOPPING=1", DEADLINE, &mut seen);
    assert!(
        exit.success(),
        "the daemon exited with {exit} after SIGTERM; log:\n{}",
        d.log_tail()
    );
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    receiver.join().expect("the notify receiver");
    println!(
        "notify: READY=1 with STATUS={status:?}; WATCHDOG=1 at {pings:?} after it; STOPPING=1"
    );
}
