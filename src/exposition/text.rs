//! The Prometheus text exposition format, version 0.0.4: families with their HELP and TYPE
//! lines, samples with escaped label values, histograms as cumulative `_bucket` lines with an
//! inclusive `le`, `_sum` and `_count`.

use std::fmt::{Display, Write};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as its TYPE line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A whole exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The samples of one family.
pub struct Samples<'a> {
    name: &'a str,
    body: String,
}

impl Exposition {
    /// Writes one family: `name` is the full sample name (with `_total` for counters); a family
    /// whose `write` adds no sample is left out whole (no HELP without samples).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, write: impl FnOnce(&mut Samples)) {
        let mut s = Samples {
            name,
            body: String::new(),
        };
        write(&mut s);
        if s.body.is_empty() {
            return;
        }
        // Writing into a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self.out.push_str(&s.body);
    }

    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

impl Samples<'_> {
    /// One sample of the family's own name.
    pub fn value(&mut self, labels: &[(&str, &str)], v: impl Display) {
        self.line("", labels, None, v);
    }

    /// A histogram: `bounds` in the unit of the samples, `counts` non-cumulative with one more
    /// than `bounds` (the last is past every bound), and the sum of the observations.
    pub fn histogram(&mut self, labels: &[(&str, &str)], bounds: &[f64], counts: &[u64], sum: f64) {
        let mut cumulative = 0u64;
        for (i, b) in bounds.iter().enumerate() {
            cumulative += counts.get(i).copied().unwrap_or(0);
            self.line("_bucket", labels, Some(&b.to_string()), cumulative);
        }
        let count: u64 = counts.iter().sum();
        self.line("_bucket", labels, Some("+Inf"), count);
        self.line("_sum", labels, None, sum);
        self.line("_count", labels, None, count);
    }

    fn line(&mut self, suffix: &str, labels: &[(&str, &str)], le: Option<&str>, v: impl Display) {
        let b = &mut self.body;
        b.push_str(self.name);
        b.push_str(suffix);
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        let mut first = true;
        for (k, val) in all {
            b.push(if first { '{' } else { ',' });
            first = false;
            b.push_str(k);
            b.push_str("=\"");
            escape_label(val, b);
            b.push('"');
        }
        if !first {
            b.push('}');
        }
        let _ = writeln!(b, " {v}");
    }
}

/// A label value as the format wants it: backslash, double quote and line feed escaped.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed escaped.
fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "Things.", |s| {
            s.value(&[("queue", "a\"b\\c\nd")], 3);
        });
        e.family("empty", Kind::Gauge, "Left out.", |_| {});
        assert_eq!(
            e.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{queue=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_inf_sum_and_count() {
        let mut e = Exposition::default();
        e.family("w_seconds", Kind::Histogram, "Waits.", |s| {
            s.histogram(&[("q", "a")], &[2.5, 20.0], &[1, 2, 4], 99.5);
        });
        let text = e.finish();
        for line in [
            "w_seconds_bucket{q=\"a\",le=\"2.5\"} 1",
            "w_seconds_bucket{q=\"a\",le=\"20\"} 3",
            "w_seconds_bucket{q=\"a\",le=\"+Inf\"} 7",
            "w_seconds_sum{q=\"a\"} 99.5",
            "w_seconds_count{q=\"a\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
