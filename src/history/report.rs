//! `callmetrics report`: the history's aggregates merged per period (hour, day, ISO week, month
//! in the configured zone) and per key (a queue, agent, channel, `all`, or a tag's `name=value`
//! of `history.tag_dimensions`), every counter and figure computed as `metrics` computes its
//! rows ([`Figures::of`], [`MetricsRow::to_json`]). Read from the store on demand, so the
//! daemon holds only the rows being built.
//!
//! Hours (and business hours, judged per interval by when it starts) come from the interval
//! aggregates, kept for `history.intervals_days`; days, weeks and months over all hours from
//! the daily ones, kept for `history.daily_days`. Only closed intervals are in the history:
//! periods starting after the last one closed are left out, and the report says up to when it
//! is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::dates::DateArg;
use super::period::{local_text, PeriodKind};
use super::{day_number, decode, local_date, parse_key, Horizons};
use crate::config::Config;
use crate::engine::report::{Realtime, RowParams};
use crate::engine::sketch::Sketch;
use crate::engine::{Agg, DimKind, Figures, MetricsRow};
use crate::sla::calendar::{first_reach, ServiceHours};
use crate::store::history::{time_key, DAYS, INTERVALS};
use crate::store::{Store, StoreError};

/// Most rows one report may have (periods × keys): beyond, the answer would pass the control
/// protocol's message size.
pub const MAX_ROWS: usize = 20_000;

/// A report question, as `callmetrics report` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportQuery {
    pub from: DateArg,
    /// Inclusive: `--from today --to today` is today.
    pub to: DateArg,
    pub by: PeriodKind,
    /// Only this queue (queue rows only).
    pub queue: Option<String>,
    pub dimension: DimKind,
    /// Only intervals starting in the service hours of a calendar.
    pub business_hours: bool,
    /// The `[[sla]]` objective whose hours and holidays are the business hours.
    pub calendar: Option<String>,
    /// Tag rows: only this tag name (one of `history.tag_dimensions`); all of them without it.
    #[serde(default)]
    pub tag: Option<String>,
}

/// One period of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    pub start_ms: i64,
    pub end_ms: i64,
    /// The bounds in the zone, RFC 3339 with the offset of the time.
    pub start: String,
    pub end: String,
    pub row: MetricsRow,
}

/// A report: its rows and what they cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub time_zone: String,
    pub from: Date,
    pub to: Date,
    pub by: PeriodKind,
    pub dimension: DimKind,
    /// `all`, or `business` with the calendar's name.
    pub hours: String,
    /// Every interval ending by this instant was closed into the history; none after it is in.
    pub complete_until_ms: Option<i64>,
    pub complete_until: Option<String>,
    pub rows: Vec<ReportRow>,
    /// Tag rows: the tag names reported.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Why a report cannot be made.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("--from {from} is after --to {to}")]
    FromAfterTo { from: Date, to: Date },
    #[error("--from/--to: {0} is outside the calendar")]
    OutOfRange(DateArg),
    #[error("--queue filters queue rows only; it cannot be combined with --by-dimension {0}")]
    QueueNeedsQueueDimension(&'static str),
    #[error(
        "--queue {queue}: no such queue in the configuration or in the history from {from} to {to}"
    )]
    UnknownQueue { queue: String, from: Date, to: Date },
    #[error("--calendar is used with --hours business only")]
    CalendarWithoutBusinessHours,
    #[error("--hours business needs --calendar NAME, the [[sla]] objective whose service hours to use (configured: {0})")]
    CalendarNeeded(String),
    #[error("--calendar {name}: no [[sla]] objective of that name (configured: {known})")]
    UnknownCalendar { name: String, known: String },
    #[error("--calendar {0}: its service hours cannot be built")]
    BadCalendar(String),
    #[error("{what} reads the {interval} interval history, kept for history.intervals_days = {days} days: the oldest interval kept starts {oldest}; for --from {from} report whole days (--by day, week or month, all hours), or use a later --from")]
    IntervalsTooOld {
        what: &'static str,
        interval: String,
        days: u32,
        oldest: String,
        from: Date,
    },
    #[error("--from {from}: daily history is kept for history.daily_days = {days} days; the oldest date kept is {oldest}")]
    DaysTooOld {
        from: Date,
        days: u32,
        oldest: String,
    },
    #[error("--by-dimension tag reports the tags named by history.tag_dimensions in the config, and it names none: list the tag names to keep the history by (e.g. tag_dimensions = [\"tier\"] under [history]) and reload")]
    NoTagDimensions,
    #[error("--tag chooses the tag name of --by-dimension tag; it cannot be combined with --by-dimension {0}")]
    TagNeedsTagDimension(&'static str),
    #[error("--tag {name}: not one of history.tag_dimensions (configured: {known})")]
    UnknownTag { name: String, known: String },
    #[error("the report would have {0} rows (periods × keys), more than {MAX_ROWS}: narrow --from/--to, use a longer --by, or choose --queue (queue rows) or --tag (tag rows)")]
    TooManyRows(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The report `q` asks for, from the history in `store`, at `now_ms`.
pub fn report(
    cfg: &Config,
    store: &Store,
    now_ms: i64,
    q: &ReportQuery,
) -> Result<Report, ReportError> {
    let tz = cfg.general.time_zone.zone();
    let today = local_date(&tz, now_ms).unwrap_or(Date::constant(1970, 1, 1));
    let from = q
        .from
        .resolve(today)
        .ok_or(ReportError::OutOfRange(q.from))?;
    let to = q.to.resolve(today).ok_or(ReportError::OutOfRange(q.to))?;
    if from > to {
        return Err(ReportError::FromAfterTo { from, to });
    }
    if q.queue.is_some() && q.dimension != DimKind::Queue {
        return Err(ReportError::QueueNeedsQueueDimension(q.dimension.name()));
    }
    let tags = tag_names(cfg, q)?;
    let hours = business_hours(cfg, q)?;
    let after = to.tomorrow().map_err(|_| ReportError::OutOfRange(q.to))?;
    let (Some(range_start), Some(range_end)) =
        (first_reach(&tz, from, 0), first_reach(&tz, after, 0))
    else {
        return Err(ReportError::OutOfRange(q.from));
    };

    let stats = store.history_stats()?;
    let horizons = Horizons::at(&cfg.history, &tz, now_ms);
    let from_intervals = q.by == PeriodKind::Hour || hours.is_some();
    let wanted = |kind: DimKind, name: &str| {
        kind == q.dimension
            && q.queue.as_deref().is_none_or(|k| k == name)
            // A tag key is `name=value`, and a configured name holds no `=`.
            && (kind != DimKind::Tag
                || name
                    .split_once('=')
                    .is_some_and(|(t, _)| tags.iter().any(|x| x == t)))
    };
    // (period start, key) → what the entries in it add up to.
    let mut sums: BTreeMap<(i64, String), Agg> = BTreeMap::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut failed = None;
    let period_of = |at: i64| q.by.bounds(&tz, at).map(|(s, _)| s.max(range_start));
    let mut add = |at: i64, name: &str, bytes: &[u8]| -> ControlFlow<()> {
        let Some(p) = period_of(at) else {
            return ControlFlow::Continue(());
        };
        match decode(bytes) {
            Ok(a) => {
                names.insert(name.to_string());
                sums.entry((p, name.to_string())).or_default().merge(&a);
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    if from_intervals {
        let interval = cfg.metrics.interval.0;
        let floor = horizons
            .intervals_from_ms
            .max(stats.intervals_from_ms.unwrap_or(i64::MIN));
        // The first interval start at or after the floor.
        let oldest = floor + (interval - floor.rem_euclid(interval)) % interval;
        if range_start < oldest {
            return Err(ReportError::IntervalsTooOld {
                what: if q.by == PeriodKind::Hour {
                    "--by hour"
                } else {
                    "--hours business"
                },
                interval: cfg.metrics.interval.to_string(),
                days: cfg.history.intervals_days,
                oldest: local_text(&tz, oldest),
                from,
            });
        }
        store.history_scan(
            &time_key(INTERVALS, range_start),
            &time_key(INTERVALS, range_end),
            |k, v| {
                let Some((_, at, kind, name)) = parse_key(k) else {
                    return ControlFlow::Continue(());
                };
                if !wanted(kind, name) || hours.as_ref().is_some_and(|h| !h.is_open(at)) {
                    return ControlFlow::Continue(());
                }
                add(at, name, v)
            },
        )?;
    } else {
        let floor = horizons.days_from.max(stats.days_from.unwrap_or(i64::MIN));
        if day_number(from) < floor {
            return Err(ReportError::DaysTooOld {
                from,
                days: cfg.history.daily_days,
                oldest: super::date_of(floor).map_or_else(|| floor.to_string(), |d| d.to_string()),
            });
        }
        store.history_scan(
            &time_key(DAYS, day_number(from)),
            &time_key(DAYS, day_number(after)),
            |k, v| {
                let Some((_, day, kind, name)) = parse_key(k) else {
                    return ControlFlow::Continue(());
                };
                let Some(at) = super::date_of(day).and_then(|d| first_reach(&tz, d, 0)) else {
                    return ControlFlow::Continue(());
                };
                if !wanted(kind, name) {
                    return ControlFlow::Continue(());
                }
                add(at, name, v)
            },
        )?;
    }
    if let Some(e) = failed {
        return Err(e.into());
    }

    match (&q.queue, q.dimension) {
        (Some(queue), _) => {
            if !names.contains(queue) && !cfg.queues.contains_key(queue) {
                return Err(ReportError::UnknownQueue {
                    queue: queue.clone(),
                    from,
                    to,
                });
            }
            names = BTreeSet::from([queue.clone()]);
        }
        (None, DimKind::All) => names = BTreeSet::from(["all".to_string()]),
        (None, _) => {}
    }

    // Every period of the range up to the last interval closed, clipped to the range.
    let until = stats.complete_until_ms.unwrap_or(i64::MIN);
    let mut periods = Vec::new();
    let mut at = range_start;
    while at < range_end && at < until {
        let Some((_, end)) = q.by.bounds(&tz, at) else {
            break;
        };
        let end = end.min(range_end);
        periods.push((at, end));
        at = end;
    }
    if periods.len().saturating_mul(names.len()) > MAX_ROWS {
        return Err(ReportError::TooManyRows(periods.len() * names.len()));
    }

    let bands: Vec<u64> = cfg.metrics.bands.iter().map(|b| b.0 as u64).collect();
    let mut rows = Vec::with_capacity(periods.len() * names.len());
    for (start, end) in periods {
        for name in &names {
            let mut counts = sums.remove(&(start, name.clone())).unwrap_or_default();
            // One shape for every row, as `metrics`: the configured bands always.
            for t in &bands {
                counts.bands.entry(*t).or_insert(0);
            }
            let p = if q.dimension == DimKind::Queue {
                cfg.queue_params(name)
            } else {
                cfg.defaults
            };
            let figures = Figures::of(&counts, p.formula);
            // The figures hold the quantiles; the histograms would only make the answer large.
            counts.wait_hist = Sketch::default();
            counts.handle_hist = Sketch::default();
            rows.push(ReportRow {
                start_ms: start,
                end_ms: end,
                start: local_text(&tz, start),
                end: local_text(&tz, end),
                row: MetricsRow {
                    window: q.by.name().to_string(),
                    dimension: q.dimension,
                    key: name.clone(),
                    counts,
                    figures,
                    params: RowParams::from(p),
                    realtime: Realtime::default(),
                },
            });
        }
    }
    Ok(Report {
        time_zone: cfg.general.time_zone.0.clone(),
        from,
        to,
        by: q.by,
        dimension: q.dimension,
        hours: match (&hours, &q.calendar) {
            (Some(_), Some(name)) => format!("business ({name})"),
            (Some(_), None) => "business".into(),
            (None, _) => "all".into(),
        },
        complete_until_ms: stats.complete_until_ms,
        complete_until: stats.complete_until_ms.map(|u| local_text(&tz, u)),
        rows,
        tags,
    })
}

/// The tag names a report's rows are of: `--tag`'s, or every configured one; none for the other
/// dimensions. Refused: tag rows without any configured name, `--tag` of another dimension or of
/// a name not configured.
fn tag_names(cfg: &Config, q: &ReportQuery) -> Result<Vec<String>, ReportError> {
    let configured = &cfg.history.tag_dimensions;
    if q.dimension != DimKind::Tag {
        return match q.tag {
            Some(_) => Err(ReportError::TagNeedsTagDimension(q.dimension.name())),
            None => Ok(Vec::new()),
        };
    }
    if configured.is_empty() {
        return Err(ReportError::NoTagDimensions);
    }
    match &q.tag {
        None => Ok(configured.clone()),
        Some(name) if configured.contains(name) => Ok(vec![name.clone()]),
        Some(name) => Err(ReportError::UnknownTag {
            name: name.clone(),
            known: configured.join(", "),
        }),
    }
}

/// The business hours asked for: `--calendar`'s objective, or the only objective when there
/// is one.
fn business_hours(cfg: &Config, q: &ReportQuery) -> Result<Option<ServiceHours>, ReportError> {
    let known = || {
        let names: Vec<&str> = cfg.sla.iter().map(|s| s.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    if !q.business_hours {
        return match q.calendar {
            Some(_) => Err(ReportError::CalendarWithoutBusinessHours),
            None => Ok(None),
        };
    }
    let entry = match &q.calendar {
        Some(name) => cfg.sla.iter().find(|s| &s.name == name).ok_or_else(|| {
            ReportError::UnknownCalendar {
                name: name.clone(),
                known: known(),
            }
        })?,
        None if cfg.sla.len() == 1 => &cfg.sla[0],
        None => return Err(ReportError::CalendarNeeded(known())),
    };
    entry
        .service_hours(&cfg.general.time_zone)
        .map(Some)
        .map_err(|_| ReportError::BadCalendar(entry.name.clone()))
}

impl ReportRow {
    /// The row as `report --json` prints it: a `metrics --json` row without its window and
    /// real-time figures, with the period's bounds.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut v = self.row.to_json();
        if let Value::Object(m) = &mut v {
            for gone in [
                "window",
                "waiting_now",
                "longest_wait_now_ms",
                "talking_now",
                "in_acw_now",
            ] {
                m.remove(gone);
            }
            m.insert("period".into(), self.row.window.clone().into());
            m.insert("period_start".into(), self.start.clone().into());
            m.insert("period_end".into(), self.end.clone().into());
            m.insert("period_start_ms".into(), self.start_ms.into());
            m.insert("period_end_ms".into(), self.end_ms.into());
        }
        v
    }
}

impl Report {
    /// The report as `report --json` prints it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "time_zone": self.time_zone,
            "from": self.from.to_string(),
            "to": self.to.to_string(),
            "by": self.by.name(),
            "dimension": self.dimension.name(),
            "hours": self.hours,
            "complete_until": self.complete_until,
            "complete_until_ms": self.complete_until_ms,
            "rows": self.rows.iter().map(ReportRow::to_json).collect::<Vec<_>>(),
        });
        if let (DimKind::Tag, Value::Object(m)) = (self.dimension, &mut v) {
            m.insert("tags".into(), self.tags.clone().into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::INTERVALS;
    use std::path::Path;

    const H: i64 = 3_600_000;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    /// One answered call (wait 10 s) per entry, under queue `q`.
    fn put(store: &Store, grain: u8, t: i64, q: &str, calls: u64) {
        let a = Agg {
            offered: calls,
            answered: calls,
            answered_within: calls,
            wait_sum_ms: 10_000 * calls,
            wait_max_ms: 10_000,
            ..Agg::default()
        };
        let k = super::super::entry_key(grain, t, DimKind::Queue, q);
        store
            .add_records_with_history(
                &[],
                &[],
                &[(k, super::super::encode(&a))],
                i64::MAX,
                1 << 20,
            )
            .unwrap();
    }

    fn query(by: PeriodKind, from: Date, to: Date) -> ReportQuery {
        ReportQuery {
            from: DateArg::Date(from),
            to: DateArg::Date(to),
            by,
            queue: None,
            dimension: DimKind::Queue,
            business_hours: false,
            calendar: None,
            tag: None,
        }
    }

    #[test]
    fn business_hours_count_intervals_starting_open_and_days_of_a_dst_change_have_23_hours() {
        let cfg = Config::parse(
            "[general]\ntime_zone = \"Europe/Paris\"\n\n[[sla]]\nname = \"desk\"\nmeasure = \"asa_max\"\ntarget = \"30s\"\nperiod = \"day\"\nhours = { sun = [\"08:00-12:00\"], mon = [\"08:00-12:00\"] }\nholidays = [\"2026-03-30\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 1 << 20, 1 << 30).unwrap();
        // Sunday 2026-03-29, the spring change in Paris: 07:45 (closed), 08:00 and 11:45 (open),
        // 12:00 (closed); Monday 30th is a holiday.
        for (t, n) in [
            ("2026-03-29T07:45:00+02:00", 1),
            ("2026-03-29T08:00:00+02:00", 2),
            ("2026-03-29T11:45:00+02:00", 4),
            ("2026-03-29T12:00:00+02:00", 8),
            ("2026-03-30T09:00:00+02:00", 16),
        ] {
            put(&store, INTERVALS, at(t), "support", n);
        }
        let now = at("2026-04-02T12:00:00+02:00");
        let day = |d| Date::constant(2026, 3, d);
        let mut q = query(PeriodKind::Day, day(29), day(30));
        q.business_hours = true;
        let r = report(&cfg, &store, now, &q).unwrap();
        let offered: Vec<u64> = r.rows.iter().map(|r| r.row.counts.offered).collect();
        assert_eq!(offered, vec![2 + 4, 0]);
        assert_eq!(r.rows[0].end_ms - r.rows[0].start_ms, 23 * H);
        assert_eq!(r.rows[0].start, "2026-03-29T00:00:00+01:00");
        assert_eq!(r.rows[0].row.figures.asa_ms, Some(10_000.0));

        // All hours, by hour: the hour after 01:00 is 03:00, and every interval counts.
        q.business_hours = false;
        q.by = PeriodKind::Hour;
        let r = report(&cfg, &store, now, &q).unwrap();
        assert_eq!(r.rows.len(), 23 + 24);
        assert_eq!(r.rows[2].start, "2026-03-29T03:00:00+02:00");
        let by_start: BTreeMap<&str, u64> = r
            .rows
            .iter()
            .map(|r| (&r.start[..], r.row.counts.offered))
            .collect();
        assert_eq!(by_start["2026-03-29T07:00:00+02:00"], 1);
        assert_eq!(by_start["2026-03-29T08:00:00+02:00"], 2);
        assert_eq!(by_start["2026-03-29T11:00:00+02:00"], 4);
        assert_eq!(by_start["2026-03-29T12:00:00+02:00"], 8);
        assert_eq!(r.rows.iter().map(|r| r.row.counts.offered).sum::<u64>(), 31);

        // A week from a Sunday is cut to the range (business hours read the intervals); a calendar that is not an objective is refused.
        q.by = PeriodKind::Week;
        q.business_hours = true;
        let r = report(&cfg, &store, now, &q).unwrap();
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[0].end, "2026-03-30T00:00:00+02:00");
        assert_eq!(r.rows[0].row.counts.offered, 6);
        q.calendar = Some("nope".into());
        let e = report(&cfg, &store, now, &q).unwrap_err().to_string();
        assert!(e.contains("--calendar nope") && e.contains("desk"), "{e}");
    }
}
