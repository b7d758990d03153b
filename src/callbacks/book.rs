//! The book of callback requests: opened when a segment leaves its queue with reason
//! `callback`, each with its deadline; closed when the callback is made. Pure: times passed in.
//! Counted per period by when the request was made: on time, late, missed (deadline passed and
//! still open at the period's evaluation), still open.

use std::collections::BTreeMap;

/// One callback request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub call_id: String,
    pub queue: String,
    pub requested_ms: i64,
    pub deadline_ms: i64,
    /// When the callback was made, once it was.
    pub fulfilled_ms: Option<i64>,
}

impl Request {
    /// Made by its deadline (inclusive).
    #[must_use]
    pub fn on_time(&self) -> bool {
        self.fulfilled_ms.is_some_and(|f| f <= self.deadline_ms)
    }
}

/// Requests made in a period, as of `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub requested: u64,
    pub on_time: u64,
    pub late: u64,
    /// Not made and past the deadline.
    pub missed: u64,
    /// Not made, deadline still ahead.
    pub open: u64,
}

/// Every request by call id (a call asks for one callback at a time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    requests: BTreeMap<String, Request>,
}

impl Book {
    /// Opens a request; false (and nothing changes) when the call already has an open one.
    pub fn request(
        &mut self,
        call_id: &str,
        queue: &str,
        requested_ms: i64,
        deadline_ms: i64,
    ) -> bool {
        if self
            .requests
            .get(call_id)
            .is_some_and(|r| r.fulfilled_ms.is_none())
        {
            return false;
        }
        self.requests.insert(
            call_id.to_string(),
            Request {
                call_id: call_id.to_string(),
                queue: queue.to_string(),
                requested_ms,
                deadline_ms,
                fulfilled_ms: None,
            },
        );
        true
    }

    /// The callback of `call_id` was made at `at_ms`; the request as closed, or `None` when
    /// there is no open request for it (a second fulfilment changes nothing).
    pub fn fulfil(&mut self, call_id: &str, at_ms: i64) -> Option<&Request> {
        let r = self.requests.get_mut(call_id)?;
        if r.fulfilled_ms.is_some() {
            return None;
        }
        r.fulfilled_ms = Some(at_ms.max(r.requested_ms));
        Some(r)
    }

    /// Open requests, the earliest deadline first.
    #[must_use]
    pub fn open_by_deadline(&self) -> Vec<&Request> {
        let mut open: Vec<&Request> = self
            .requests
            .values()
            .filter(|r| r.fulfilled_ms.is_none())
            .collect();
        open.sort_by_key(|r| (r.deadline_ms, r.requested_ms));
        open
    }

    /// Open requests past their deadline at `now_ms` (what raises an alert).
    #[must_use]
    pub fn overdue(&self, now_ms: i64) -> Vec<&Request> {
        self.open_by_deadline()
            .into_iter()
            .filter(|r| r.deadline_ms < now_ms)
            .collect()
    }

    /// Requests made in `[from_ms, to_ms)`, as they stand at `now_ms`.
    #[must_use]
    pub fn tally(&self, from_ms: i64, to_ms: i64, now_ms: i64) -> Tally {
        let mut t = Tally::default();
        for r in self
            .requests
            .values()
            .filter(|r| (from_ms..to_ms).contains(&r.requested_ms))
        {
            t.requested += 1;
            match r.fulfilled_ms {
                Some(_) if r.on_time() => t.on_time += 1,
                Some(_) => t.late += 1,
                None if r.deadline_ms < now_ms => t.missed += 1,
                None => t.open += 1,
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::promise::Promise;
    use crate::sla::calendar::{parse_day, ServiceHours, Week};

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn office() -> ServiceHours {
        let mut week: Week = Default::default();
        for day in week.iter_mut().take(5) {
            *day = parse_day(&["08:00-18:00".into()]).unwrap();
        }
        ServiceHours::new(jiff::tz::TimeZone::UTC, week, Vec::new()).unwrap()
    }

    #[test]
    fn fulfilled_late_and_never_fulfilled_are_counted_exactly() {
        let hours = office();
        let p = Promise::SameBusinessDay;
        let mut b = Book::default();
        let reqs = [
            ("a", "2026-12-07T09:00:00Z"), // Monday: due 18:00
            ("b", "2026-12-07T17:59:00Z"), // due 18:00 the same day
            ("c", "2026-12-07T19:00:00Z"), // closed: due Tuesday 18:00
            ("d", "2026-12-08T10:00:00Z"), // due Tuesday 18:00
            ("e", "2026-12-09T10:00:00Z"), // Wednesday, outside the period counted
        ];
        for (id, t) in reqs {
            let t = at(t);
            assert!(b.request(id, "support", t, p.deadline(&hours, t).unwrap()));
        }
        assert!(
            !b.request("a", "support", 0, 0),
            "one open request per call"
        );
        assert!(b.fulfil("a", at("2026-12-07T18:00:00Z")).unwrap().on_time());
        assert!(!b.fulfil("b", at("2026-12-07T18:00:01Z")).unwrap().on_time());
        assert!(b.fulfil("b", at("2026-12-07T18:30:00Z")).is_none());
        assert!(b.fulfil("c", at("2026-12-08T08:05:00Z")).unwrap().on_time());
        assert!(b.fulfil("zz", 0).is_none());

        let monday = at("2026-12-07T00:00:00Z");
        let wednesday = at("2026-12-09T00:00:00Z");
        // Tuesday 12:00: d is still open and not yet late.
        assert_eq!(
            b.tally(monday, wednesday, at("2026-12-08T12:00:00Z")),
            Tally {
                requested: 4,
                on_time: 2,
                late: 1,
                missed: 0,
                open: 1
            }
        );
        // Wednesday 09:00: d was never made by Tuesday 18:00.
        let now = at("2026-12-09T09:00:00Z");
        assert_eq!(
            b.tally(monday, wednesday, now),
            Tally {
                requested: 4,
                on_time: 2,
                late: 1,
                missed: 1,
                open: 0
            }
        );
        let overdue: Vec<&str> = b.overdue(now).iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(overdue, ["d"]);
        let open: Vec<&str> = b
            .open_by_deadline()
            .iter()
            .map(|r| r.call_id.as_str())
            .collect();
        assert_eq!(open, ["d", "e"]);
        // A call may ask again once its callback was made.
        assert!(b.request("a", "support", now, now + 1));
    }
}
