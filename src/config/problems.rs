//! Configuration errors: why a config was refused, every invalid value with its dotted key, and
//! the line the file writes each one on (from the spans the TOML parser keeps).

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a config could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Every value that is out of range or inconsistent, one line each.
    #[error("{}", problems_text(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One invalid value: its dotted key (array items by index, e.g. `upstream.sinks.1.url`), the
/// line the file writes it on (`None` for a default the file leaves out), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

fn problems_text(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!(
                "{}: line {line}: `{}`: {}",
                path.display(),
                p.key,
                p.message
            ),
            None => format!("{}: `{}`: {}", path.display(), p.key, p.message),
        })
        .collect();
    lines.join("\n")
}

/// The lines a config text writes its values on, from the spans the TOML parser keeps (parsed
/// once, however many problems are looked up).
pub(super) struct ValueLines<'t> {
    text: &'t str,
    root: Option<toml::Spanned<toml::de::DeTable<'t>>>,
}

impl<'t> ValueLines<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        ValueLines {
            text,
            root: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line on which the text writes the value of `key` (dotted; array items by
    /// index); `None` when the file leaves the key out.
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        use toml::de::{DeTable, DeValue};
        let mut table: &DeTable<'_> = self.root.as_ref()?.get_ref();
        let mut span = None;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (_, value) = table.iter().find(|(k, _)| k.get_ref() == part)?;
            let mut value = value;
            // An array of tables: the next part is the item's index.
            while let DeValue::Array(items) = value.get_ref() {
                let i: usize = parts.next()?.parse().ok()?;
                value = items.get(i)?;
            }
            span = Some(value.span());
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ if parts.peek().is_some() => return None,
                _ => {}
            }
        }
        let start = span?.start;
        Some(self.text.get(..start)?.matches('\n').count() + 1)
    }
}
