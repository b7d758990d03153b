//! Slow channels with a real daemon: e-mails and web forms on a business-hours wait clock
//! (docs/slow-channels.md). The hand-worked example of the docs, an e-mail received Friday
//! 19:30 and answered Monday 11:15 within 4 business hours, one answered Monday 13:30 after
//! them, a web form whose Friday was a holiday, expiry after a multi-day `max_call_duration`
//! counted in business time, and `calls` with each item's clock, deadline and time left, the
//! same after `kill -9` and a restart.
//!
//! The daemon measures against its own clock, so the scenario is laid out around now: the zone
//! is the fixed offset that makes the local time now between 14:00 and 15:00, "Monday" is
//! today, "Saturday" and "Sunday" the two days before (closed), "Friday" the day before those.
//! Every other day is open 08:00–12:00 and 13:00–18:00.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{json, Value};
use support::{Daemon, DEADLINE};

const H: i64 = 3_600_000;
const M: i64 = 60_000;

/// The scenario's zone and dates.
struct Scene {
    zone_name: String,
    tz: TimeZone,
    monday: Date,
}

impl Scene {
    /// The fixed-offset zone in which now reads between 14:00 and 15:00.
    fn now() -> Scene {
        let utc_hour = i64::from(Timestamp::now().to_zoned(TimeZone::UTC).hour());
        // 14 − h lies in −9..=14, every one an `Etc/GMT` zone (whose sign is inverted).
        let offset = 14 - utc_hour;
        let zone_name = match offset {
            0 => "Etc/GMT".to_string(),
            o if o > 0 => format!("Etc/GMT-{o}"),
            o => format!("Etc/GMT+{}", -o),
        };
        let tz = TimeZone::get(&zone_name).unwrap();
        let monday = Timestamp::now().to_zoned(tz.clone()).date();
        Scene {
            zone_name,
            tz,
            monday,
        }
    }

    /// `days` days from "Monday" (today) at `hh:mm` local, epoch ms.
    fn at(&self, days: i64, hh: i8, mm: i8) -> i64 {
        let date = self
            .monday
            .checked_add(jiff::Span::new().days(days))
            .unwrap();
        date.at(hh, mm, 0, 0)
            .to_zoned(self.tz.clone())
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn date(&self, days: i64) -> Date {
        self.monday
            .checked_add(jiff::Span::new().days(days))
            .unwrap()
    }

    /// Weekly hours open 08:00–12:00 and 13:00–18:00 but on "Saturday" and "Sunday".
    fn hours(&self) -> String {
        let closed = [self.date(-1).weekday(), self.date(-2).weekday()];
        let days = [
            (Weekday::Monday, "mon"),
            (Weekday::Tuesday, "tue"),
            (Weekday::Wednesday, "wed"),
            (Weekday::Thursday, "thu"),
            (Weekday::Friday, "fri"),
            (Weekday::Saturday, "sat"),
            (Weekday::Sunday, "sun"),
        ];
        let open: Vec<String> = days
            .iter()
            .filter(|(d, _)| !closed.contains(d))
            .map(|(_, k)| format!("{k} = [\"08:00-12:00\", \"13:00-18:00\"]"))
            .collect();
        format!("{{ {} }}", open.join(", "))
    }

    fn config(&self) -> String {
        format!(
            r#"
[general]
time_zone = "{zone}"

[channels.email]
threshold = "4h"
max_call_duration = "2d"
clock = "business_hours"
hours = {hours}

[channels.webform]
threshold = "4h"
clock = "business_hours"
hours = {hours}
holidays = ["{friday}"]
"#,
            zone = self.zone_name,
            hours = self.hours(),
            friday = self.date(-3),
        )
    }
}

fn send(d: &Daemon, events: &[Value]) {
    let mut conn = d.json_conn();
    let reply = conn.request(&Value::Array(events.to_vec()).to_string());
    assert_eq!(reply["ok"], true, "{reply}");
}

fn start(id: &str, queue: &str, channel: &str, ts: i64) -> Value {
    json!({"type": "start", "call_id": id, "ts": ts, "queue": queue, "channel": channel})
}

fn answer(id: &str, ts: i64) -> Value {
    json!({"type": "answer", "call_id": id, "ts": ts, "agent": "alice"})
}

fn row<'a>(rows: &'a [Value], queue: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["queue"] == queue)
        .unwrap_or_else(|| panic!("no row for {queue} in {rows:?}"))
}

/// Polls `what` until `done` holds or `limit` passes.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut get: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let t0 = Instant::now();
    loop {
        let v = get();
        if done(&v) {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn waits_deadlines_and_expiry_run_on_business_hours() {
    let s = Scene::now();
    let d = Daemon::start(&s.config());
    let fri_evening = s.at(-3, 19, 30);

    // The hand-worked example: Friday 19:30 → Monday 11:15 is Monday 08:00–11:15, 3 h 15 of
    // business time (within 4 h); Friday 19:30 → Monday 13:30 is 08:00–12:00 and 13:00–13:30,
    // 4 h 30 (not within). On the wall clock both waited more than 60 hours.
    send(
        &d,
        &[
            start("mail-within", "mail", "email", fri_evening),
            answer("mail-within", s.at(0, 11, 15)),
            json!({"type": "end", "call_id": "mail-within", "ts": s.at(0, 11, 40)}),
            start("mail-late", "mail", "email", fri_evening),
            answer("mail-late", s.at(0, 13, 30)),
            json!({"type": "end", "call_id": "mail-late", "ts": s.at(0, 13, 45)}),
        ],
    );
    // A web form received Friday 10:00, a holiday: its clock starts Monday 08:00, so an answer
    // at 11:00 waited 3 h (within). Without the holiday it would have waited 2 + 5 + 3 = 10 h.
    send(
        &d,
        &[
            start("form-1", "forms", "webform", s.at(-3, 10, 0)),
            answer("form-1", s.at(0, 11, 0)),
            json!({"type": "end", "call_id": "form-1", "ts": s.at(0, 11, 5)}),
        ],
    );

    let rows = wait_for(
        "the answered items in metrics",
        DEADLINE,
        || d.metrics("24h", "queue"),
        |rows| {
            rows.iter()
                .map(|r| r["answered"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 3
        },
    );
    let mail = row(&rows, "mail");
    assert_eq!(mail["answered"], 2, "{mail}");
    assert_eq!(mail["answered_within"], 1, "{mail}");
    assert_eq!(
        mail["wait_sum_ms"],
        (3 * H + 15 * M) + (4 * H + 30 * M),
        "{mail}"
    );
    assert_eq!(mail["wait_max_ms"], 4 * H + 30 * M, "{mail}");
    let forms = row(&rows, "forms");
    assert_eq!(forms["answered_within"], 1, "{forms}");
    assert_eq!(forms["wait_sum_ms"], 3 * H, "{forms}");

    // Open items. Received Friday 19:30 and still waiting: deadline Monday 12:00, overdue by
    // the business time since (12:00–13:00 is closed). Received Monday 13:30: deadline 17:30.
    // Received ten days ago at 09:00: 48 business hours (the 2d of max_call_duration) have
    // passed, so it expires; the Friday one has waited 63 wall hours, more than 2 days, but
    // only some 6 business hours, and stays.
    let voice_start = support::now_ms() - 5_000;
    send(
        &d,
        &[
            start("mail-open", "mail", "email", fri_evening),
            start("mail-new", "mail", "email", s.at(0, 13, 30)),
            start("mail-stale", "mail", "email", s.at(-10, 9, 0)),
            start("voice-1", "support", "voice", voice_start),
        ],
    );
    let segs = wait_for(
        "the stale e-mail to expire",
        // The expiry scan runs once a minute, 10 s at least after the item's last event.
        Duration::from_secs(60) + DEADLINE * 3,
        || d.calls(),
        |segs| segs.len() == 3 && !segs.iter().any(|s| s["call_id"] == "mail-stale"),
    );
    let asked = support::now_ms();
    assert_eq!(d.status()["engine"]["expired_segments"], 1);
    let find = |id: &str| {
        segs.iter()
            .find(|s| s["call_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {segs:?}"))
    };
    let open = find("mail-open");
    assert_eq!(open["clock"], "business_hours", "{open}");
    assert_eq!(open["deadline_ms"], s.at(0, 12, 0), "{open}");
    // Overdue by now − 13:00 (local now is past 14:00), to the time the list was made.
    let overdue = asked - s.at(0, 13, 0);
    let left = open["time_left_ms"].as_i64().unwrap();
    assert!(
        left <= -(overdue - 30_000) && left >= -overdue,
        "{left} for {overdue} overdue"
    );
    let new = find("mail-new");
    assert_eq!(new["deadline_ms"], s.at(0, 17, 30), "{new}");
    let left = new["time_left_ms"].as_i64().unwrap();
    let until = s.at(0, 17, 30) - asked;
    assert!(
        left >= until && left <= until + 30_000,
        "{left} for {until}"
    );
    let voice = find("voice-1");
    assert_eq!(voice["clock"], "wall", "{voice}");
    assert_eq!(voice["deadline_ms"], voice_start + 20_000, "{voice}");

    // --sort deadline: the overdue e-mail first, then the voice call, then the new e-mail.
    let out = d.query(&["calls", "--json", "--sort", "deadline"]);
    let sorted = support::json_of("calls --sort deadline", &out);
    let ids: Vec<&str> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mail-open", "voice-1", "mail-new"]);
    let table = String::from_utf8(d.query(&["calls", "--sort", "deadline"]).stdout).unwrap();
    let first = table.lines().nth(1).unwrap_or_default();
    assert!(
        first.starts_with("mail-open") && first.contains("business") && first.contains(" -"),
        "{table}"
    );

    // Open items are durable: after `kill -9` and a restart the same items wait with the same
    // deadlines, and the expired one stays expired.
    let mut d = d;
    d.kill();
    d.restart();
    let after = d.calls();
    let mut ids: Vec<(&str, &Value)> = after
        .iter()
        .map(|s| (s["call_id"].as_str().unwrap(), &s["deadline_ms"]))
        .collect();
    ids.sort_by_key(|(id, _)| *id);
    assert_eq!(
        ids,
        [
            ("mail-new", &json!(s.at(0, 17, 30))),
            ("mail-open", &json!(s.at(0, 12, 0))),
            ("voice-1", &json!(voice_start + 20_000)),
        ]
    );
}
