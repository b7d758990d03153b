//! The interval history's reports as a test sees them: the calendar of the tests' time zone,
//! the counters a report row carries and the figures derived from them, and `report` run
//! through the CLI (for `tests/history.rs` and `tests/history_tags.rs`).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{json, Value};

use std::time::Instant;

use super::{json_of, now_ms, Daemon, DEADLINE};

/// The zone the history tests' daemons run in (it has DST).
pub const ZONE: &str = "Europe/Paris";

/// A daemon config in [`ZONE`] with windows up to a week, then `history`.
pub fn config(history: &str) -> String {
    format!(
        "\n[general]\ntime_zone = \"{ZONE}\"\n\n[metrics]\nwindows = [\"5m\", \"1h\", \"168h\"]\n\n{history}"
    )
}

pub fn tz() -> TimeZone {
    TimeZone::get(ZONE).expect("zone")
}

/// The counters of a report row, counted by a test from the calls it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub offered: u64,
    pub answered: u64,
    pub answered_within: u64,
    pub abandoned: u64,
    pub abandoned_within: u64,
    pub short_abandoned: u64,
    pub overflow: u64,
    pub handled: u64,
    pub wait_sum_ms: u64,
    pub wait_max_ms: u64,
    pub abandon_wait_sum_ms: u64,
    pub talk_sum_ms: u64,
    pub acw_sum_ms: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.offered += o.offered;
        self.answered += o.answered;
        self.answered_within += o.answered_within;
        self.abandoned += o.abandoned;
        self.abandoned_within += o.abandoned_within;
        self.short_abandoned += o.short_abandoned;
        self.overflow += o.overflow;
        self.handled += o.handled;
        self.wait_sum_ms += o.wait_sum_ms;
        self.wait_max_ms = self.wait_max_ms.max(o.wait_max_ms);
        self.abandon_wait_sum_ms += o.abandon_wait_sum_ms;
        self.talk_sum_ms += o.talk_sum_ms;
        self.acw_sum_ms += o.acw_sum_ms;
    }

    pub fn named(&self) -> [(&'static str, u64); 13] {
        [
            ("offered", self.offered),
            ("answered", self.answered),
            ("answered_within", self.answered_within),
            ("abandoned", self.abandoned),
            ("abandoned_within", self.abandoned_within),
            ("short_abandoned", self.short_abandoned),
            ("overflow", self.overflow),
            ("handled", self.handled),
            ("wait_sum_ms", self.wait_sum_ms),
            ("wait_max_ms", self.wait_max_ms),
            ("abandon_wait_sum_ms", self.abandon_wait_sum_ms),
            ("talk_sum_ms", self.talk_sum_ms),
            ("acw_sum_ms", self.acw_sum_ms),
        ]
    }
}

pub fn zoned(ms: i64) -> jiff::Zoned {
    Timestamp::from_millisecond(ms)
        .expect("instant")
        .to_zoned(tz())
}

pub fn day_start(d: Date) -> i64 {
    d.to_zoned(tz()).expect("date").timestamp().as_millisecond()
}

pub fn today() -> Date {
    zoned(now_ms()).date()
}

/// The start of the `by` period holding `ms`, computed with jiff's own calendar arithmetic.
pub fn period_start(by: &str, ms: i64) -> i64 {
    let z = zoned(ms);
    let start = match by {
        "hour" => z
            .with()
            .minute(0)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .expect("hour"),
        "day" => z.start_of_day().expect("day"),
        "week" => {
            let back = i64::from(z.date().weekday().to_monday_zero_offset());
            (z.date() - back.days()).to_zoned(tz()).expect("week")
        }
        "month" => z
            .first_of_month()
            .expect("month")
            .start_of_day()
            .expect("month"),
        other => panic!("no period {other}"),
    };
    start.timestamp().as_millisecond()
}

/// Runs `args`, which must fail with every one of `needles` in its error.
pub fn refused(d: &Daemon, args: &[&str], needles: &[&str]) {
    let out = d.query(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err}");
    }
}

pub fn report(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["report", "--json"];
    all.extend_from_slice(args);
    json_of(&format!("{all:?}"), &d.query(&all))
}

pub fn close_enough(a: Option<f64>, b: &Value, what: &str) {
    match (a, b.as_f64()) {
        (None, None) => assert!(b.is_null(), "{what}: {b} for null"),
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            "{what}: {y}, expected {x}"
        ),
        (x, _) => panic!("{what}: {b}, expected {x:?}"),
    }
}

pub fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Checks one report row against `c`: every counter exact (the largest wait only where something
/// was offered), and service level, ASA, AHT and abandon rate within 1e-9 of their formulas.
pub fn check_row(row: &Value, c: &Counts, here: &str) {
    for (name, v) in c.named() {
        if name == "wait_max_ms" && c.offered == 0 {
            continue;
        }
        assert_eq!(row[name], json!(v), "{here}: {name}");
    }
    close_enough(
        ratio(
            c.answered_within,
            c.answered + c.abandoned - c.short_abandoned,
        ),
        &row["service_level"],
        &format!("{here}: service_level"),
    );
    close_enough(
        ratio(c.wait_sum_ms, c.answered),
        &row["asa_ms"],
        &format!("{here}: asa_ms"),
    );
    close_enough(
        ratio(c.talk_sum_ms + c.acw_sum_ms, c.handled),
        &row["aht_ms"],
        &format!("{here}: aht_ms"),
    );
    close_enough(
        ratio(
            c.abandoned - c.short_abandoned,
            c.offered - c.short_abandoned,
        ),
        &row["abandon_rate"],
        &format!("{here}: abandon_rate"),
    );
}

/// Flushes until every call sent is in the history: the calls sent last are folded once their
/// reorder grace has passed.
pub fn flush_until(d: &Daemon, offered: u64, from: &str) {
    let deadline = Instant::now() + 3 * DEADLINE;
    loop {
        let out = d.query(&["flush"]);
        assert!(
            out.status.success(),
            "flush: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = report(
            d,
            &["--by", "month", "--by-dimension", "all", "--from", from],
        );
        let have: u64 = r["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["offered"].as_u64().unwrap_or(0))
            .sum();
        if have == offered {
            return;
        }
        assert!(
            have < offered,
            "{have} offered in the history, {offered} sent"
        );
        assert!(
            Instant::now() < deadline,
            "{have} of {offered} offered in the history: {}",
            d.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
