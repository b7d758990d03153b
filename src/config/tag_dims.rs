//! `history.tag_dimensions` and `history.max_tag_values`: the tag names the interval history is
//! also kept by (`callmetrics report --by-dimension tag`), and how many `name=value` keys it may
//! hold; their checks, each problem named by its key.

use std::collections::BTreeSet;

/// Most tag names the history may be kept by: each adds a bucket per value to every interval,
/// so a long list would multiply the state the rule "keys × buckets" bounds.
pub const MAX_TAG_DIMENSIONS: usize = 8;

/// Most bytes of a tag name: longer ones could not be event tag keys under the default string
/// limit anyway, and every bucket key repeats the name.
pub const MAX_TAG_NAME_BYTES: usize = 64;

/// Most `name=value` keys `history.max_tag_values` may allow (the other dimensions' limits are
/// in the thousands too).
pub const MAX_TAG_VALUES: usize = 100_000;

/// Default `history.max_tag_values`.
pub const DEFAULT_MAX_TAG_VALUES: usize = 1_000;

/// Problems of the two settings, as (dotted key, message).
pub(super) fn problems(names: &[String], max_values: usize) -> Vec<(String, String)> {
    const KEY: &str = "history.tag_dimensions";
    let mut out = Vec::new();
    if names.len() > MAX_TAG_DIMENSIONS {
        out.push((
            KEY.into(),
            format!(
                "{} tag names, at most {MAX_TAG_DIMENSIONS} may be listed",
                names.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for name in names {
        if name.is_empty() || name.len() > MAX_TAG_NAME_BYTES || name.chars().any(char::is_control)
        {
            out.push((
                KEY.into(),
                format!("tag name {name:?} must be 1 to {MAX_TAG_NAME_BYTES} bytes without control characters"),
            ));
        } else if name.contains('=') {
            // Rows are keyed `name=value`: the first `=` must end the name.
            out.push((
                KEY.into(),
                format!("tag name `{name}` must not contain `=`"),
            ));
        } else if !seen.insert(name.as_str()) {
            out.push((KEY.into(), format!("tag name `{name}` is listed twice")));
        }
    }
    if !(1..=MAX_TAG_VALUES).contains(&max_values) {
        out.push((
            "history.max_tag_values".into(),
            format!("{max_values} must be from 1 to {MAX_TAG_VALUES}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};

    fn problems(text: &str) -> Vec<(String, String)> {
        match Config::parse(text, Path::new("agent.toml")) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| (p.key, p.message)).collect()
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn tag_dimensions_default_to_none_and_parse_when_listed() {
        let cfg = Config::parse("", Path::new("agent.toml")).unwrap();
        assert!(cfg.history.tag_dimensions.is_empty());
        assert_eq!(cfg.history.max_tag_values, 1_000);
        let cfg = Config::parse(
            "[history]\ntag_dimensions = [\"tier\", \"customer\"]\nmax_tag_values = 50\n",
            Path::new("agent.toml"),
        )
        .unwrap();
        assert_eq!(cfg.history.tag_dimensions, ["tier", "customer"]);
        assert_eq!(cfg.history.max_tag_values, 50);
    }

    #[test]
    fn bad_tag_names_and_limits_are_refused_naming_the_key() {
        let p = problems(
            "[history]\ntag_dimensions = [\"tier\", \"tier\", \"a=b\", \"\"]\nmax_tag_values = 0\n",
        );
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "history.tag_dimensions",
                "history.tag_dimensions",
                "history.tag_dimensions",
                "history.max_tag_values"
            ],
            "{p:?}"
        );
        assert!(p[0].1.contains("twice"), "{p:?}");
        assert!(p[1].1.contains('='), "{p:?}");
        assert!(p[2].1.contains("1 to 64 bytes"), "{p:?}");
        let nine: Vec<String> = (0..9).map(|i| format!("\"t{i}\"")).collect();
        let p = problems(&format!(
            "[history]\ntag_dimensions = [{}]\n",
            nine.join(", ")
        ));
        assert!(p[0].1.contains("at most 8"), "{p:?}");
        // An unknown key in the section is refused, as everywhere.
        assert!(Config::parse(
            "[history]\ntag_dimension = [\"tier\"]\n",
            Path::new("a.toml")
        )
        .is_err());
    }
}
