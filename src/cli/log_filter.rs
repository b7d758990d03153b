//! The daemon's log filter: `--log-level`, `RUST_LOG` or `general.log_level`, parsed into
//! tracing-subscriber's `Targets`.
//!
//! The syntax is `RUST_LOG`'s as the daemon documents it: comma-separated directives, each a
//! level (`info`), a target and a level (`callmetrics::store=debug`) or a bare target (all its
//! levels). `Targets` does this without tracing-subscriber's `env-filter` feature and the regex
//! engine it brings (about 150 KB of the binary); what `env-filter` adds beyond it, span and
//! field filters (`[span{field=value}]`), matches nothing here: the daemon opens no spans. Such
//! a directive is refused by name rather than read as a target.

use tracing_subscriber::filter::{LevelFilter, Targets};

/// Why a filter string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{directive}`: {reason}")]
pub struct FilterError {
    /// The directive at fault, as written (trimmed).
    pub directive: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses `directives` (e.g. `info` or `warn,callmetrics=debug`). Spaces around a directive and
/// empty directives are ignored, as `env-filter` did; a string with no directive at all is
/// refused (it would silence every log line).
pub fn parse(directives: &str) -> Result<Targets, FilterError> {
    let mut targets = Targets::new();
    let mut any = false;
    for raw in directives.split(',') {
        let directive = raw.trim();
        if directive.is_empty() {
            continue;
        }
        let err = |reason| FilterError {
            directive: directive.to_owned(),
            reason,
        };
        if directive.contains(['[', ']', '{', '}']) {
            return Err(err(
                "span and field filters (`[…]`) are not supported; give a target and a level",
            ));
        }
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => {
                if level.contains('=') {
                    return Err(err("more than one `=`"));
                }
                // LevelFilter reads an empty string as `error`; `target=` is a mistake.
                if level.is_empty() {
                    return Err(err(
                        "no level after `=` (off, error, warn, info, debug or trace)",
                    ));
                }
                let Ok(level) = level.parse::<LevelFilter>() else {
                    return Err(err(
                        "unknown level (off, error, warn, info, debug or trace)",
                    ));
                };
                (Some(target), level)
            }
            None => match directive.parse::<LevelFilter>() {
                Ok(level) => (None, level),
                // A bare target: all its levels, as `env-filter` reads it.
                Err(_) => (Some(directive), LevelFilter::TRACE),
            },
        };
        match target {
            Some("") => return Err(err("no target before `=`")),
            Some(t) if !t.chars().all(|c| c.is_alphanumeric() || "_:-".contains(c)) => {
                return Err(err(
                    "a target is a module path: letters, digits, `_`, `:` and `-` only",
                ));
            }
            Some(t) => targets = targets.with_target(t, level),
            None => targets = targets.with_default(level),
        }
        any = true;
    }
    if !any {
        return Err(FilterError {
            directive: directives.trim().to_owned(),
            reason: "no directive: give a level (off, error, warn, info, debug or trace)",
        });
    }
    Ok(targets)
}

/// The filter the daemon logs with: the first of `--log-level`, `RUST_LOG` (when set and not
/// empty) and `general.log_level` that parses, else `info`; with a warning for each one given
/// but refused, naming where it came from and what is used instead.
pub fn choose(cli: Option<&str>, env: Option<&str>, config: &str) -> (Targets, Vec<String>) {
    let candidates = [
        cli.map(|s| ("--log-level", s)),
        env.filter(|s| !s.trim().is_empty())
            .map(|s| ("RUST_LOG", s)),
        Some(("general.log_level", config)),
    ];
    let mut refused: Vec<(&str, FilterError)> = Vec::new();
    let mut chosen = None;
    for (source, text) in candidates.into_iter().flatten() {
        match parse(text) {
            Ok(t) => {
                chosen = Some((source, text, t));
                break;
            }
            Err(e) => refused.push((source, e)),
        }
    }
    let (used, targets) = match chosen {
        Some((source, text, t)) => (format!("{source} `{}`", text.trim()), t),
        None => (
            "`info`".to_owned(),
            Targets::new().with_default(LevelFilter::INFO),
        ),
    };
    let warnings = refused
        .into_iter()
        .map(|(source, e)| format!("ignoring the log filter of {source}, {e}; using {used}"))
        .collect();
    (targets, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enables(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn a_bare_level_sets_the_default() {
        let t = parse("info").unwrap();
        assert!(enables(&t, "callmetrics::store", Level::INFO));
        assert!(!enables(&t, "callmetrics::store", Level::DEBUG));
        let t = parse("WARN").unwrap();
        assert!(!enables(&t, "x", Level::INFO));
        assert!(enables(&t, "x", Level::WARN));
    }

    #[test]
    fn targets_and_levels_the_longest_prefix_wins() {
        let t = parse("warn, callmetrics=debug ,callmetrics::store=error,").unwrap();
        assert!(enables(&t, "callmetrics::ingest", Level::DEBUG));
        assert!(!enables(&t, "callmetrics::ingest", Level::TRACE));
        assert!(!enables(&t, "callmetrics::store::group", Level::WARN));
        assert!(enables(&t, "callmetrics::store::group", Level::ERROR));
        assert!(enables(&t, "hyper", Level::WARN));
        assert!(!enables(&t, "hyper", Level::INFO));
    }

    #[test]
    fn a_bare_target_takes_all_its_levels_and_nothing_else() {
        let t = parse("callmetrics").unwrap();
        assert!(enables(&t, "callmetrics::store", Level::TRACE));
        assert!(!enables(&t, "sled", Level::ERROR));
    }

    #[test]
    fn bad_directives_are_refused_by_name() {
        for (text, directive) in [
            ("callmetrics=loud", "callmetrics=loud"),
            ("info,callmetrics=", "callmetrics="),
            ("=debug", "=debug"),
            ("a=b=c", "a=b=c"),
            ("[conn{id=3}]=debug", "[conn{id=3}]=debug"),
            ("info,sled warn", "sled warn"),
            (" , ", ","),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.directive, directive, "{text}");
        }
        assert_eq!(
            parse("callmetrics=loud").unwrap_err().to_string(),
            "`callmetrics=loud`: unknown level (off, error, warn, info, debug or trace)"
        );
    }

    #[test]
    fn the_first_source_that_parses_wins_and_refusals_are_named() {
        let (t, w) = choose(Some("debug"), Some("error"), "warn");
        assert!(enables(&t, "x", Level::DEBUG));
        assert!(w.is_empty());

        let (t, w) = choose(None, Some(""), "warn");
        assert!(enables(&t, "x", Level::WARN) && !enables(&t, "x", Level::INFO));
        assert!(w.is_empty(), "an empty RUST_LOG counts as unset");

        let (t, w) = choose(Some("loud"), None, "warn");
        // `loud` is a valid bare target: env-filter read it so too.
        assert!(enables(&t, "loud", Level::TRACE) && !enables(&t, "x", Level::ERROR));
        assert!(w.is_empty());

        let (t, w) = choose(Some("x=loud"), Some("a b"), "error");
        assert!(enables(&t, "x", Level::ERROR) && !enables(&t, "x", Level::WARN));
        assert_eq!(
            w,
            [
                "ignoring the log filter of --log-level, `x=loud`: unknown level (off, error, \
                 warn, info, debug or trace); using general.log_level `error`",
                "ignoring the log filter of RUST_LOG, `a b`: a target is a module path: \
                 letters, digits, `_`, `:` and `-` only; using general.log_level `error`",
            ]
        );

        let (t, w) = choose(None, None, "");
        assert!(enables(&t, "x", Level::INFO) && !enables(&t, "x", Level::DEBUG));
        assert_eq!(w.len(), 1);
        assert!(w[0].ends_with("; using `info`"), "{}", w[0]);
    }
}
