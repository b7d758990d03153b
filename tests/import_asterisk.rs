//! `callmetrics import --format asterisk-queue-log` against a real daemon: the figures of
//! `metrics --json` equal the fixture's calls counted by hand, for the plain file, a `.gz` copy,
//! and a second import of the same file.

mod support;

use std::time::{Duration, Instant};

use support::asterisk::{figures, recent_lines, want};
use support::{cli, Daemon};

fn import(d: &Daemon, file: &str) -> String {
    let out = cli([
        "import",
        "--format",
        "asterisk-queue-log",
        "--socket",
        d.events.to_str().unwrap(),
        "--ledger",
        d.dir.path().join("imports.ledger").to_str().unwrap(),
        file,
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn imported_figures_equal_the_hand_count_once_whatever_the_copies() {
    let d = Daemon::start("[metrics]\nwrapup_timeout = \"1s\"\n");
    // The fixture's calls, moved to the last half hour so that the 24h window holds them.
    let file = d.dir.path().join("day.queue_log");
    std::fs::write(&file, recent_lines(60).concat()).unwrap();
    let file = file.to_str().unwrap();
    let summary = import(&d, file);
    assert!(
        summary.contains("36 events sent: 36 accepted, 0 refused"),
        "{summary}"
    );
    assert!(summary.contains("half-written"), "{summary}");
    // Handled segments complete once the wrap-up timeout has passed after receipt.
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = want();
    while figures(&d) != want {
        assert!(Instant::now() < deadline, "{:?} != {want:?}", figures(&d));
        std::thread::sleep(Duration::from_millis(200));
    }
    let gz = d.dir.path().join("day.queue_log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &std::fs::read(file).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let again = import(&d, gz.to_str().unwrap());
    assert!(
        again.contains("(43 imported before, skipped), 0 events sent"),
        "{again}"
    );
    let again = import(&d, file);
    assert!(again.contains("0 events sent"), "{again}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(figures(&d), want);
}
