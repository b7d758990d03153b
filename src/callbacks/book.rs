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
    /// When the callback was made, once it was (or the request was cancelled, see below).
    pub fulfilled_ms: Option<i64>,
    /// Closed by a `cancelled` outcome at `fulfilled_ms`: neither on time nor late.
    pub cancelled: bool,
    /// `no_answer` attempts so far.
    pub attempts: u32,
}

impl Request {
    /// Made by its deadline (inclusive).
    #[must_use]
    pub fn on_time(&self) -> bool {
        !self.cancelled && self.fulfilled_ms.is_some_and(|f| f <= self.deadline_ms)
    }
}

/// Requests made in a period, as of `now`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub requested: u64,
    pub on_time: u64,
    pub late: u64,
    /// Not made and past the deadline.
    pub missed: u64,
    /// Not made, deadline still ahead.
    pub open: u64,
    /// Withdrawn before being made: out of the measure.
    pub cancelled: u64,
}

impl Tally {
    /// Adds another tally's counts (a period's forgotten requests and those still held).
    pub fn add(&mut self, o: &Tally) {
        self.requested += o.requested;
        self.on_time += o.on_time;
        self.late += o.late;
        self.missed += o.missed;
        self.open += o.open;
        self.cancelled += o.cancelled;
    }

    /// Counts one request as it stands at `now_ms`.
    pub fn count(&mut self, r: &Request, now_ms: i64) {
        self.requested += 1;
        match r.fulfilled_ms {
            Some(_) if r.cancelled => self.cancelled += 1,
            Some(_) if r.on_time() => self.on_time += 1,
            Some(_) => self.late += 1,
            None if r.deadline_ms < now_ms => self.missed += 1,
            None => self.open += 1,
        }
    }
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
                cancelled: false,
                attempts: 0,
            },
        );
        true
    }

    /// The request of `call_id` was withdrawn at `at_ms`; the request as closed, or `None` when
    /// there is no open request for it.
    pub fn cancel(&mut self, call_id: &str, at_ms: i64) -> Option<&Request> {
        let r = self.requests.get_mut(call_id)?;
        if r.fulfilled_ms.is_some() {
            return None;
        }
        r.fulfilled_ms = Some(at_ms.max(r.requested_ms));
        r.cancelled = true;
        Some(r)
    }

    /// A callback of `call_id` was tried and nobody answered; false when no request is open.
    pub fn attempt(&mut self, call_id: &str) -> bool {
        match self.requests.get_mut(call_id) {
            Some(r) if r.fulfilled_ms.is_none() => {
                r.attempts = r.attempts.saturating_add(1);
                true
            }
            _ => false,
        }
    }

    /// Whether the request of `call_id` was closed at `at_ms` that way (`cancelled` or made):
    /// the same event again.
    #[must_use]
    pub fn closed_by(&self, call_id: &str, at_ms: i64, cancelled: bool) -> bool {
        self.requests.get(call_id).is_some_and(|r| {
            r.cancelled == cancelled && r.fulfilled_ms == Some(at_ms.max(r.requested_ms))
        })
    }

    /// When the request held for `call_id` (open or closed) was made.
    #[must_use]
    pub fn requested_at(&self, call_id: &str) -> Option<i64> {
        self.requests.get(call_id).map(|r| r.requested_ms)
    }

    /// Whether `call_id` has an open request.
    #[must_use]
    pub fn is_open(&self, call_id: &str) -> bool {
        self.requests
            .get(call_id)
            .is_some_and(|r| r.fulfilled_ms.is_none())
    }

    /// How many requests are open.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.requests
            .values()
            .filter(|r| r.fulfilled_ms.is_none())
            .count()
    }

    /// Every request held, by call id.
    pub fn iter(&self) -> impl Iterator<Item = &Request> {
        self.requests.values()
    }

    /// Holds a request as it was (a restored state).
    pub fn insert(&mut self, r: Request) {
        self.requests.insert(r.call_id.clone(), r);
    }

    /// Takes out the closed requests made before `before_ms`, for their period's counts to be
    /// kept without them.
    pub fn take_closed_before(&mut self, before_ms: i64) -> Vec<Request> {
        let ids: Vec<String> = self
            .requests
            .values()
            .filter(|r| r.fulfilled_ms.is_some() && r.requested_ms < before_ms)
            .map(|r| r.call_id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.requests.remove(id))
            .collect()
    }

    /// Takes out every request made before `before_ms`, open ones too (their period is no
    /// longer reported).
    pub fn take_all_before(&mut self, before_ms: i64) -> Vec<Request> {
        let ids: Vec<String> = self
            .requests
            .values()
            .filter(|r| r.requested_ms < before_ms)
            .map(|r| r.call_id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.requests.remove(id))
            .collect()
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

    /// Forgets the closed requests made before `before_ms` (once their period is reported), so
    /// the book holds the open requests and the current periods' closed ones, not every
    /// callback ever made. Returns how many were dropped.
    pub fn prune(&mut self, before_ms: i64) -> usize {
        let n = self.requests.len();
        self.requests
            .retain(|_, r| r.fulfilled_ms.is_none() || r.requested_ms >= before_ms);
        n - self.requests.len()
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
            t.count(r, now_ms);
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
                open: 1,
                cancelled: 0,
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
                open: 0,
                cancelled: 0,
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

        // Tuesday's period reported: Monday's closed requests go, the open ones stay.
        assert_eq!(b.prune(at("2026-12-08T00:00:00Z")), 2, "b and c");
        let left: Vec<&str> = b.requests.keys().map(String::as_str).collect();
        assert_eq!(left, ["a", "d", "e"]);
    }
}
