//! Which characters may reach an operator's terminal. Names (call ids, queues, agents, channels,
//! tags) refuse control characters and bidirectional overrides at intake; the CLI escapes any
//! that reach it anyway (names stored by an earlier version, error messages quoting input).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not appear in a name: C0 and C1 controls and DEL (escape sequences, bell,
/// carriage return and line feed forge or hide table rows), and the invisible marks that reorder
/// text (bidirectional embeddings, overrides and isolates, line and paragraph separators).
#[must_use]
pub fn is_refused(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// The first refused character of `s` and its byte offset.
#[must_use]
pub fn first_refused(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|&(_, c)| is_refused(c))
}

/// `s` as it may be printed on a terminal: each refused character written as `\u{XX}`, and a
/// backslash doubled when anything was escaped, so an escape cannot be forged.
#[must_use]
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if first_refused(s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_refused(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_refused_and_text_is_not() {
        for c in [
            '\u{1b}', '\u{7}', '\r', '\n', '\0', '\u{7f}', '\u{9b}', '\u{202e}', '\u{2066}',
        ] {
            assert!(is_refused(c), "{c:?}");
        }
        for c in ['a', 'é', '日', ' ', '-', '\u{1F4DE}', '\u{200D}'] {
            assert!(!is_refused(c), "{c:?}");
        }
        assert_eq!(first_refused("ok\u{1b}]0;PWNED\u{7}"), Some((2, '\u{1b}')));
        assert_eq!(first_refused("support-gold"), None);
    }

    #[test]
    fn the_terminal_sees_escapes_not_controls() {
        assert!(matches!(for_terminal("alice"), Cow::Borrowed("alice")));
        let shown = for_terminal("x\u{1b}]0;PWNED\u{7}\\y\r\nz");
        assert_eq!(shown, "x\\u{1b}]0;PWNED\\u{7}\\\\y\\u{d}\\u{a}z");
        assert!(!shown.chars().any(is_refused));
    }
}
