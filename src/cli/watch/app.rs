//! The wallboard's state and what each key and each answer of the daemon do to it: the window
//! and dimension shown, the rows of the last answer, whether the daemon answers, the scroll
//! position. No I/O and no clock of its own: the poll loop feeds it keys, answers and the time,
//! the renderer reads it.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::{DimKind, MetricsQuery, MetricsRow};

/// The trailing windows of the default config, shown until the daemon's `status` names the
/// configured ones.
const DEFAULT_WINDOWS: [&str; 4] = ["5m", "15m", "1h", "24h"];
/// Always offered besides the trailing windows.
pub(super) const TODAY: &str = "today";
/// The dimensions `d` cycles through; the single `all` row says little on a wallboard.
pub(super) const DIMENSIONS: [DimKind; 3] = [DimKind::Queue, DimKind::Agent, DimKind::Channel];
/// How long the notice that the daemon answers again stays on screen.
pub(super) const BACK_NOTICE: Duration = Duration::from_secs(15);
/// Rows moved by Page Up and Page Down when the screen's height is not known yet.
const MIN_PAGE: usize = 1;

/// Whether the daemon answers.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Link {
    /// Nothing heard since the wallboard started.
    Connecting,
    /// It answered the last request; `back` is set when it had been away before.
    Up { back: Option<Back> },
    /// The last request got no answer; `reason` is the client's one-line error.
    Down {
        reason: String,
        /// When the first failed request of this spell came back (instant and wall clock).
        since: Instant,
        since_clock: String,
        /// Failed requests in this spell.
        tries: u32,
    },
}

/// The daemon answered again after an absence.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Back {
    pub at: Instant,
    pub clock: String,
    pub away: Duration,
}

/// What the screen shows below the header.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// No answer to the current window and dimension yet.
    Waiting,
    Rows(Vec<MetricsRow>),
    /// The daemon answered the query with an error (e.g. a window a reload removed).
    Refused(String),
}

/// What the poll loop learnt from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Fetched {
    /// The configured trailing windows, from `status`.
    Windows(Vec<String>),
    Rows {
        query: MetricsQuery,
        rows: Vec<MetricsRow>,
    },
    Refused {
        query: MetricsQuery,
        message: String,
    },
    /// No answer: the client's error, one line.
    Unreachable(String),
}

/// What the loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Quit,
    /// Ask the daemon now rather than at the next tick.
    Refresh,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct App {
    /// The control socket as shown in the header.
    pub socket: String,
    /// Trailing windows then `today`; never empty.
    windows: Vec<String>,
    window: usize,
    dimension: usize,
    pub answer: Answer,
    pub link: Link,
    /// Wall-clock time of the last answer.
    pub updated: Option<String>,
    /// Index of the first row shown.
    pub scroll: usize,
    /// Rows the table has room for, set by the loop from the terminal's height.
    page: usize,
}

impl App {
    pub fn new(socket: String) -> App {
        let mut windows: Vec<String> = DEFAULT_WINDOWS.iter().map(|w| (*w).to_string()).collect();
        windows.push(TODAY.into());
        App {
            socket,
            windows,
            window: 0,
            dimension: 0,
            answer: Answer::Waiting,
            link: Link::Connecting,
            updated: None,
            scroll: 0,
            page: MIN_PAGE,
        }
    }

    /// The question the screen shows the answer to.
    pub fn query(&self) -> MetricsQuery {
        MetricsQuery {
            window: Some(self.window_name().to_string()),
            by: self.dimension(),
            key: None,
        }
    }

    pub fn window_name(&self) -> &str {
        &self.windows[self.window]
    }

    pub fn windows(&self) -> &[String] {
        &self.windows
    }

    pub fn dimension(&self) -> DimKind {
        DIMENSIONS[self.dimension]
    }

    /// Sets how many rows the table shows, and keeps the last page full.
    pub fn set_page(&mut self, rows: usize) {
        self.page = rows.max(MIN_PAGE);
        self.scroll = self.scroll.min(self.last_scroll());
    }

    fn row_count(&self) -> usize {
        match &self.answer {
            Answer::Rows(rows) => rows.len(),
            Answer::Waiting | Answer::Refused(_) => 0,
        }
    }

    /// The scroll position that shows the last row at the bottom.
    fn last_scroll(&self) -> usize {
        self.row_count().saturating_sub(self.page)
    }

    fn scroll_by(&mut self, down: bool, by: usize) {
        self.scroll = if down {
            self.scroll.saturating_add(by).min(self.last_scroll())
        } else {
            self.scroll.saturating_sub(by)
        };
    }

    /// Shows another window or dimension: the rows on screen answered the old one, so they go.
    fn select(&mut self, window: usize, dimension: usize) {
        if (window, dimension) != (self.window, self.dimension) {
            self.window = window;
            self.dimension = dimension;
            self.answer = Answer::Waiting;
            self.scroll = 0;
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        // Terminals that report releases (kitty's protocol, Windows) would act twice otherwise.
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let (windows, dimensions) = (self.windows.len(), DIMENSIONS.len());
        match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit;
            }
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('r') => return Action::Refresh,
            KeyCode::Char(c @ '1'..='9') => {
                let i = (c as usize) - ('1' as usize);
                if i < windows {
                    self.select(i, self.dimension);
                }
            }
            KeyCode::Char('w') | KeyCode::Tab => {
                self.select((self.window + 1) % windows, self.dimension);
            }
            KeyCode::Char('W') | KeyCode::BackTab => {
                self.select((self.window + windows - 1) % windows, self.dimension);
            }
            KeyCode::Char('d') => self.select(self.window, (self.dimension + 1) % dimensions),
            KeyCode::Char('D') => {
                self.select(self.window, (self.dimension + dimensions - 1) % dimensions);
            }
            KeyCode::Down | KeyCode::Char('j') => self.scroll_by(true, 1),
            KeyCode::Up | KeyCode::Char('k') => self.scroll_by(false, 1),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll_by(true, self.page),
            KeyCode::PageUp => self.scroll_by(false, self.page),
            KeyCode::Home | KeyCode::Char('g') => self.scroll = 0,
            KeyCode::End | KeyCode::Char('G') => self.scroll = self.last_scroll(),
            _ => {}
        }
        Action::Continue
    }

    /// Takes what the poll loop learnt at `now` (`clock`: the wall-clock time to show).
    pub fn on_fetch(&mut self, fetched: Fetched, now: Instant, clock: &str) {
        match fetched {
            Fetched::Unreachable(reason) => {
                self.answer = Answer::Waiting;
                self.scroll = 0;
                match &mut self.link {
                    Link::Down {
                        reason: last,
                        tries,
                        ..
                    } => {
                        *last = reason;
                        *tries = tries.saturating_add(1);
                    }
                    Link::Connecting | Link::Up { .. } => {
                        self.link = Link::Down {
                            reason,
                            since: now,
                            since_clock: clock.to_string(),
                            tries: 1,
                        };
                    }
                }
            }
            Fetched::Windows(configured) => {
                self.answered(now, clock);
                self.set_windows(configured);
            }
            Fetched::Rows { query, rows } => {
                self.answered(now, clock);
                // An answer to a window or dimension no longer shown is dropped.
                if query == self.query() {
                    self.answer = Answer::Rows(rows);
                    self.scroll = self.scroll.min(self.last_scroll());
                    self.updated = Some(clock.to_string());
                }
            }
            Fetched::Refused { query, message } => {
                self.answered(now, clock);
                if query == self.query() {
                    self.answer = Answer::Refused(message);
                    self.scroll = 0;
                }
            }
        }
    }

    /// The daemon answered: a spell without it ends here.
    fn answered(&mut self, now: Instant, clock: &str) {
        match &self.link {
            Link::Down { since, .. } => {
                self.link = Link::Up {
                    back: Some(Back {
                        at: now,
                        clock: clock.to_string(),
                        away: now.saturating_duration_since(*since),
                    }),
                };
            }
            Link::Connecting => self.link = Link::Up { back: None },
            Link::Up { .. } => {}
        }
    }

    /// The daemon's trailing windows, then `today`; the window shown stays if it is still there.
    fn set_windows(&mut self, configured: Vec<String>) {
        let mut windows: Vec<String> = configured.into_iter().filter(|w| w != TODAY).collect();
        windows.push(TODAY.into());
        if windows == self.windows {
            return;
        }
        let shown = self.window_name().to_string();
        let window = windows.iter().position(|w| *w == shown);
        self.windows = windows;
        if let Some(i) = window {
            self.window = i;
        } else {
            self.window = 0;
            self.answer = Answer::Waiting;
            self.scroll = 0;
        }
    }

    /// The notice that the daemon is back, while it is recent.
    pub fn back_notice(&self, now: Instant) -> Option<&Back> {
        match &self.link {
            Link::Up { back: Some(b) } if now.saturating_duration_since(b.at) < BACK_NOTICE => {
                Some(b)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::query::fixtures::{busy, row};
    use super::*;
    use crate::engine::Realtime;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn press(app: &mut App, c: char) -> Action {
        app.on_key(key(KeyCode::Char(c)))
    }

    fn rows(n: usize) -> Vec<MetricsRow> {
        (0..n)
            .map(|i| row(&format!("q{i:02}"), busy(), Realtime::default()))
            .collect()
    }

    /// An app that got `n` rows for what it shows.
    fn showing(n: usize) -> App {
        let mut app = App::new("/run/callmetrics/control.sock".into());
        let t = Instant::now();
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows: rows(n),
            },
            t,
            "10:00:00",
        );
        app
    }

    #[test]
    fn number_keys_pick_a_window_and_w_cycles_through_them() {
        let mut app = App::new("s".into());
        assert_eq!(app.window_name(), "5m");
        assert_eq!(app.query().window.as_deref(), Some("5m"));
        assert_eq!(press(&mut app, '3'), Action::Continue);
        assert_eq!(app.window_name(), "1h");
        assert_eq!(press(&mut app, '5'), Action::Continue);
        assert_eq!(app.window_name(), TODAY);
        // No sixth window: nothing changes.
        press(&mut app, '6');
        assert_eq!(app.window_name(), TODAY);
        // w wraps from today to the first; W goes back.
        press(&mut app, 'w');
        assert_eq!(app.window_name(), "5m");
        press(&mut app, 'w');
        assert_eq!(app.window_name(), "15m");
        press(&mut app, 'W');
        press(&mut app, 'W');
        assert_eq!(app.window_name(), TODAY);
        assert_eq!(app.on_key(key(KeyCode::Tab)), Action::Continue);
        assert_eq!(app.window_name(), "5m");
    }

    #[test]
    fn d_cycles_queue_agent_channel() {
        let mut app = App::new("s".into());
        let mut seen = vec![app.dimension()];
        for _ in 0..3 {
            press(&mut app, 'd');
            seen.push(app.dimension());
        }
        assert_eq!(
            seen,
            [
                DimKind::Queue,
                DimKind::Agent,
                DimKind::Channel,
                DimKind::Queue
            ]
        );
        press(&mut app, 'D');
        assert_eq!(app.query().by, DimKind::Channel);
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_r_refreshes() {
        let mut app = App::new("s".into());
        assert_eq!(press(&mut app, 'q'), Action::Quit);
        assert_eq!(app.on_key(key(KeyCode::Esc)), Action::Quit);
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        // A plain c is not a quit.
        assert_eq!(press(&mut app, 'c'), Action::Continue);
        assert_eq!(press(&mut app, 'r'), Action::Refresh);
        // A key's release does nothing (else each key would act twice where releases are reported).
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(app.on_key(release), Action::Continue);
    }

    #[test]
    fn switching_drops_the_rows_of_the_old_view_and_late_answers_to_it() {
        let mut app = showing(3);
        let old = app.query();
        assert!(matches!(&app.answer, Answer::Rows(r) if r.len() == 3));
        press(&mut app, 'w');
        assert_eq!(app.answer, Answer::Waiting);
        // The answer to the previous window arriving late is not shown under the new one.
        app.on_fetch(
            Fetched::Rows {
                query: old,
                rows: rows(2),
            },
            Instant::now(),
            "10:00:01",
        );
        assert_eq!(app.answer, Answer::Waiting);
        assert_eq!(app.updated.as_deref(), Some("10:00:00"));
        // Pressing the key of the window already shown keeps its rows.
        let mut app = showing(3);
        press(&mut app, '1');
        assert!(matches!(&app.answer, Answer::Rows(r) if r.len() == 3));
    }

    #[test]
    fn scrolling_stays_within_the_rows() {
        let mut app = showing(30);
        app.set_page(10);
        press(&mut app, 'k');
        assert_eq!(app.scroll, 0);
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.scroll, 1);
        app.on_key(key(KeyCode::PageDown));
        assert_eq!(app.scroll, 11);
        app.on_key(key(KeyCode::PageDown));
        app.on_key(key(KeyCode::PageDown));
        // 30 rows, 10 shown: the last page starts at row 20.
        assert_eq!(app.scroll, 20);
        app.on_key(key(KeyCode::Home));
        assert_eq!(app.scroll, 0);
        app.on_key(key(KeyCode::End));
        assert_eq!(app.scroll, 20);
        // A taller terminal shows more rows, so the last page starts earlier.
        app.set_page(25);
        assert_eq!(app.scroll, 5);
        // Fewer rows in the next answer pull the view up.
        let query = app.query();
        app.on_fetch(
            Fetched::Rows {
                query,
                rows: rows(12),
            },
            Instant::now(),
            "10:00:02",
        );
        assert_eq!(app.scroll, 0);
    }

    #[test]
    fn the_daemon_going_away_and_coming_back_is_tracked() {
        let mut app = App::new("s".into());
        assert_eq!(app.link, Link::Connecting);
        let t0 = Instant::now();
        app.on_fetch(
            Fetched::Rows {
                query: app.query(),
                rows: rows(2),
            },
            t0,
            "10:00:00",
        );
        assert_eq!(app.link, Link::Up { back: None });
        assert_eq!(app.back_notice(t0), None);

        let t1 = t0 + Duration::from_secs(5);
        app.on_fetch(Fetched::Unreachable("gone".into()), t1, "10:00:05");
        app.on_fetch(
            Fetched::Unreachable("still gone".into()),
            t1 + Duration::from_secs(1),
            "10:00:06",
        );
        assert_eq!(
            app.link,
            Link::Down {
                reason: "still gone".into(),
                since: t1,
                since_clock: "10:00:05".into(),
                tries: 2
            }
        );
        // No figures are shown while the daemon does not answer.
        assert_eq!(app.answer, Answer::Waiting);

        let t2 = t1 + Duration::from_secs(7);
        app.on_fetch(Fetched::Windows(vec!["5m".into()]), t2, "10:00:12");
        let back = app.back_notice(t2).expect("the back notice");
        assert_eq!(back.away, Duration::from_secs(7));
        assert_eq!(back.clock, "10:00:12");
        assert!(app.back_notice(t2 + BACK_NOTICE).is_none());
    }

    #[test]
    fn the_daemons_windows_replace_the_defaults_keeping_the_one_shown() {
        let mut app = App::new("s".into());
        press(&mut app, '2');
        assert_eq!(app.window_name(), "15m");
        let t = Instant::now();
        app.on_fetch(
            Fetched::Windows(vec!["15m".into(), "4h".into()]),
            t,
            "10:00:00",
        );
        assert_eq!(app.windows(), ["15m", "4h", TODAY]);
        assert_eq!(app.window_name(), "15m");
        // The window shown was removed by a reload: the first one is shown.
        app.on_fetch(
            Fetched::Windows(vec!["30m".into(), TODAY.into()]),
            t,
            "10:00:01",
        );
        assert_eq!(app.windows(), ["30m", TODAY]);
        assert_eq!(app.window_name(), "30m");
    }

    #[test]
    fn a_refusal_is_shown_for_the_view_it_answers() {
        let mut app = showing(1);
        let query = app.query();
        app.on_fetch(
            Fetched::Refused {
                query,
                message: "unknown window `5m`".into(),
            },
            Instant::now(),
            "10:00:01",
        );
        assert_eq!(app.answer, Answer::Refused("unknown window `5m`".into()));
        assert_eq!(app.link, Link::Up { back: None });
    }
}
