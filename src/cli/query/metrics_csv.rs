//! `metrics --csv`: the rows of `metrics --json` as CSV for spreadsheets (RFC 4180: one header
//! line, CRLF line ends, a field quoted when it holds a comma, a quote or a line break, quotes
//! doubled). Columns are the JSON's keys in the JSON's order; the two maps are flattened in
//! place, in their own key order: `bands` into `bands_<threshold ms>` (answered within),
//! `service_levels` into `service_levels_<formula>`. A `null` figure is an empty field. No rows
//! give no output, not even a header (the band columns come from the rows).

use serde_json::Value;

/// One row as (column, field) pairs, maps flattened, in the JSON's order.
fn flatten(row: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(fields) = row {
        for (name, v) in fields {
            match v {
                Value::Object(inner) => {
                    for (k, v) in inner {
                        out.push((format!("{name}_{k}"), field(v)));
                    }
                }
                v => out.push((name.clone(), field(v))),
            }
        }
    }
    out
}

/// A value as the text of a CSV field, before quoting.
fn field(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Appends `s` as one field, quoted when it must be.
fn push_field(line: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        line.push('"');
        line.push_str(&s.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(s);
    }
}

fn push_line<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f);
    }
    out.push_str("\r\n");
}

/// The CSV text of rows as `metrics --json` prints them (each a JSON object).
#[must_use]
pub(super) fn render_csv(rows: &[Value]) -> String {
    let rows: Vec<Vec<(String, String)>> = rows.iter().map(flatten).collect();
    // Every row of one answer has the same columns; a column only some rows have (a band added
    // by a reload between two keys' rows cannot happen in one answer, but be safe) is appended.
    let mut header: Vec<&str> = Vec::new();
    for row in &rows {
        for (name, _) in row {
            if !header.contains(&name.as_str()) {
                header.push(name);
            }
        }
    }
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    push_line(&mut out, header.iter().copied());
    for row in &rows {
        push_line(
            &mut out,
            header.iter().map(|h| {
                row.iter()
                    .find(|(name, _)| name == h)
                    .map_or("", |(_, v)| v.as_str())
            }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::query::fixtures::{busy, row};
    use crate::engine::{MetricsRow, Realtime};

    fn json_rows(rows: &[MetricsRow]) -> Vec<Value> {
        rows.iter().map(MetricsRow::to_json).collect()
    }

    /// A minimal RFC 4180 reader, to read back what was written.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut lines = Vec::new();
        let (mut line, mut field, mut quoted) = (Vec::new(), String::new(), false);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => line.push(std::mem::take(&mut field)),
                ('\r', false) => {}
                ('\n', false) => {
                    line.push(std::mem::take(&mut field));
                    lines.push(std::mem::take(&mut line));
                }
                (c, _) => field.push(c),
            }
        }
        lines
    }

    #[test]
    fn columns_follow_the_json_keys_with_maps_flattened_and_nulls_empty() {
        let mut counts = busy();
        counts.bands.extend([(10_000, 3), (20_000, 5)]);
        let rows = vec![
            row("support", counts.clone(), Realtime::default()),
            row("sales, \"east\"\nfloor", counts, Realtime::default()),
        ];
        let json = json_rows(&rows);
        let text = render_csv(&json);
        assert!(text.ends_with("\r\n"));
        let table = parse(&text);
        assert_eq!(table.len(), 3, "{text}");
        let header = &table[0];
        // Every JSON key, in its order, the maps in place of their key.
        let mut want = Vec::new();
        for (k, v) in json[0].as_object().unwrap() {
            match v {
                Value::Object(m) => want.extend(m.keys().map(|i| format!("{k}_{i}"))),
                _ => want.push(k.clone()),
            }
        }
        assert_eq!(header, &want);
        assert!(header.contains(&"service_levels_offered".to_string()));
        assert!(header.contains(&"bands_20000".to_string()));
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        assert_eq!(table[2][col("queue")], "sales, \"east\"\nfloor");
        assert_eq!(table[1][col("queue")], "support");
        assert_eq!(table[1][col("offered")], json[0]["offered"].to_string());
        assert_eq!(table[1][col("wait_p90_ms")], "", "null is an empty field");
        assert_eq!(
            table[1][col("service_levels_offered")],
            json[0]["service_levels"]["offered"].to_string()
        );
        assert_eq!(table[1][col("bands_20000")], "5");
        assert_eq!(render_csv(&[]), "");
    }
}
