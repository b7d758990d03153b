//! The daemon's stop signal as its tasks see it: a `watch` channel set to `true` once, when the
//! daemon stops. A sender that is gone counts as a stop too (nobody could ever ask for one).

use std::time::Duration;

use tokio::sync::watch;

/// Whether the stop was asked for (or its sender is gone), without waiting.
#[must_use]
pub fn is_signalled(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once the stop is asked for, or its sender is gone.
pub async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Sleeps `delay`; false when the stop came first.
pub async fn sleep_unless_signalled(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => !is_signalled(shutdown),
        () = signalled(shutdown) => false,
    }
}
