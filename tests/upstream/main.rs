//! Upstream shipping, end to end: the real daemon closes past intervals into records and ships
//! them to the scripted receiver of `support::http` (a real HTTP/1.1 server injecting faults) or
//! to a real `VictoriaMetrics`. Each test checks what arrived against the agent's own figures and
//! against figures computed independently from the calls it sent.
//!
//! Every wait polls with a deadline; a missing prerequisite (the `victoria-metrics` binary) fails
//! the test with instructions instead of skipping it.
//!
//! The calls and their expected figures are in `calls`, driving the daemon and reading what the
//! receiver got in `drive`; one module a scenario: `faults`, `corrections`, `restart`,
//! `victoria`.

#[path = "../support/mod.rs"]
mod support;

mod calls;
mod corrections;
mod drive;
mod faults;
mod restart;
mod victoria;

use std::time::Duration;

/// The `upstream.host_id` of every daemon here.
const HOST: &str = "pbx-test-01";
/// The sink's name in every config here.
const SINK: &str = "central";
/// `metrics.interval` (the default).
const INTERVAL_MS: i64 = 900_000;
/// How long shipping may take once records are in the outbox (retries included).
const SHIP_DEADLINE: Duration = Duration::from_secs(30);
/// Poll period of every wait.
const POLL: Duration = Duration::from_millis(50);
