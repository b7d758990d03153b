//! One Asterisk `queue_log` line split into its fields, without copying.
//!
//! The layout is the one `ast_queue_log` writes (`main/logger.c`, `apps/app_queue.c`):
//! `epoch|uniqueid|queuename|agent|event|data1|data2|…`. Older and newer Asterisk versions
//! differ only in how many data fields a verb has, so the data fields are kept as a list.

use thiserror::Error;

/// A `queue_log` line, its fields borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// Seconds since the epoch, as Asterisk writes them (whole seconds).
    pub epoch: i64,
    /// The channel's uniqueid, or a pseudo id (`NONE`, `REALTIME`, `MANAGER`, `CLI`).
    pub call_id: &'a str,
    pub queue: &'a str,
    pub agent: &'a str,
    pub verb: &'a str,
    /// `data1`, `data2`, …: the verb's own fields (possibly none).
    pub data: Vec<&'a str>,
}

impl Line<'_> {
    /// Data field `i` (0-based: `data1` is 0), or "" when the line has fewer.
    #[must_use]
    pub fn data(&self, i: usize) -> &str {
        self.data.get(i).copied().unwrap_or("")
    }
}

/// Why a line is not a `queue_log` line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LineError {
    #[error("not UTF-8 text")]
    NotText,
    #[error("fewer than the 5 fields epoch|uniqueid|queuename|agent|event")]
    TooFewFields,
    #[error("the time `{0}` is not whole seconds since the epoch")]
    BadEpoch(String),
}

impl LineError {
    /// A short name for counting skipped lines by reason.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            LineError::NotText => "not_text",
            LineError::TooFewFields => "too_few_fields",
            LineError::BadEpoch(_) => "bad_time",
        }
    }
}

/// Splits one line (its trailing `\n` or `\r\n` removed or not) into fields.
pub fn parse(raw: &[u8]) -> Result<Line<'_>, LineError> {
    let text = std::str::from_utf8(raw).map_err(|_| LineError::NotText)?;
    let text = text.trim_end_matches(['\n', '\r']);
    let mut fields = text.split('|');
    let mut next = || fields.next().ok_or(LineError::TooFewFields);
    let epoch_text = next()?;
    let call_id = next()?;
    let queue = next()?;
    let agent = next()?;
    let verb = next()?;
    let epoch = epoch_text
        .trim()
        .parse::<i64>()
        .map_err(|_| LineError::BadEpoch(epoch_text.chars().take(40).collect()))?;
    Ok(Line {
        epoch,
        call_id,
        queue,
        agent,
        verb,
        data: fields.collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_split_in_order() {
        let l = parse(b"1700000000|1700000000.12|support|NONE|ENTERQUEUE||5551234|1\n").unwrap();
        assert_eq!(l.epoch, 1_700_000_000);
        assert_eq!(l.call_id, "1700000000.12");
        assert_eq!(l.queue, "support");
        assert_eq!(l.agent, "NONE");
        assert_eq!(l.verb, "ENTERQUEUE");
        assert_eq!(l.data, ["", "5551234", "1"]);
        assert_eq!(l.data(5), "");
    }

    #[test]
    fn bad_lines_say_why() {
        assert_eq!(parse(b"1|2|3|4"), Err(LineError::TooFewFields));
        assert_eq!(
            parse(b"x|a|q|NONE|ABANDON").unwrap_err().reason(),
            "bad_time"
        );
        assert_eq!(parse(b"\xff|a|q|NONE|X"), Err(LineError::NotText));
        assert_eq!(
            parse(b"1|a|q|NONE|QUEUESTART\r\n").unwrap().data,
            Vec::<&str>::new()
        );
    }
}
