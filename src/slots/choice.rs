//! Which connection makes room when every slot is taken: the one idle longest, if any has been
//! idle long enough. Pure: the entries and the time are passed in.

use std::time::{Duration, Instant};

/// One connection as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    /// When the connection last became idle; meaningless while `busy`.
    pub idle_since: Instant,
    /// It holds part of a message, or owes replies not yet written.
    pub busy: bool,
}

/// The connection idle longest at `now`, among those not busy and idle for at least `min_idle`;
/// on a tie, the lowest id (the one that connected first). `None` when no connection qualifies.
///
/// `min_idle` keeps connections that merely paused between two messages of a steady stream from
/// being closed under load: only a connection that has been quiet a while gives its slot up.
#[must_use]
pub fn longest_idle(
    entries: impl IntoIterator<Item = Entry>,
    now: Instant,
    min_idle: Duration,
) -> Option<u64> {
    entries
        .into_iter()
        .filter(|e| !e.busy && now.saturating_duration_since(e.idle_since) >= min_idle)
        .min_by_key(|e| (e.idle_since, e.id))
        .map(|e| e.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(1);

    fn entry(id: u64, idle_since: Instant, busy: bool) -> Entry {
        Entry {
            id,
            idle_since,
            busy,
        }
    }

    #[test]
    fn the_one_idle_longest_is_chosen() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(60);
        let entries = [
            entry(1, t0 + Duration::from_secs(30), false),
            entry(2, t0 + Duration::from_secs(5), false),
            entry(3, t0 + Duration::from_secs(50), false),
        ];
        assert_eq!(longest_idle(entries, now, MIN), Some(2));
    }

    #[test]
    fn busy_connections_are_never_chosen_however_old() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(3600);
        let entries = [
            entry(1, t0, true),
            entry(2, t0 + Duration::from_secs(3000), false),
        ];
        assert_eq!(longest_idle(entries, now, MIN), Some(2));
        assert_eq!(longest_idle([entry(1, t0, true)], now, MIN), None);
    }

    #[test]
    fn connections_idle_less_than_the_minimum_are_not_chosen() {
        let t0 = Instant::now();
        let entries = [
            entry(1, t0, false),
            entry(2, t0 + Duration::from_millis(100), false),
        ];
        // 999 ms after the oldest went idle: nobody qualifies yet.
        assert_eq!(
            longest_idle(entries, t0 + Duration::from_millis(999), MIN),
            None
        );
        // At exactly the minimum the oldest does, the other not yet.
        assert_eq!(longest_idle(entries, t0 + MIN, MIN), Some(1));
    }

    #[test]
    fn ties_go_to_the_first_connected_and_an_empty_table_gives_none() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(10);
        let entries = [
            entry(7, t0, false),
            entry(3, t0, false),
            entry(5, t0, false),
        ];
        assert_eq!(longest_idle(entries, now, MIN), Some(3));
        assert_eq!(longest_idle([], now, MIN), None);
    }

    #[test]
    fn an_idle_since_in_the_future_does_not_qualify() {
        // A clock read before the entry was updated must not underflow into "idle forever".
        let now = Instant::now();
        let entries = [entry(1, now + Duration::from_secs(5), false)];
        assert_eq!(longest_idle(entries, now, MIN), None);
    }
}
