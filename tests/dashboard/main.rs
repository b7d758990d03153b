//! The Grafana boards of `dashboards/`, each against the real database it reads: every panel
//! query, its variables substituted, answers the figures computed here from the calls sent to real
//! daemons; the variables' `label_values` queries list the hosts and queues; and the JSON holds
//! what Grafana needs to provision or import it (ids, grid, the `${datasource}` variable
//! everywhere).
//!
//! `influx`: `callmetrics.json` over a real `VictoriaMetrics` fed by the influx sinks of two
//! daemons, late calls (corrections) included. `prometheus`: `callmetrics-prometheus.json` over a
//! real `VictoriaMetrics` scraping the `/metrics` of two daemons. `figures` holds what both share:
//! the figures of the calls, what each query must answer and with which tolerance, the board
//! checks. Needs Debian's `victoria-metrics` package, which `.ci/run` installs; without it the
//! tests fail saying so.

#[path = "../support/mod.rs"]
mod support;

// The upstream tests' calls and daemon driving; this crate uses part of them.
#[allow(dead_code)]
#[path = "../upstream/calls.rs"]
mod calls;
#[allow(dead_code)]
#[path = "../upstream/drive.rs"]
mod drive;

mod figures;
mod influx;
mod prometheus;

use std::time::Duration;

/// The `upstream.host_id` `drive::config` writes (the tests here pass their own).
const HOST: &str = "pbx-test-01";
/// The sink's name in every config here.
const SINK: &str = "central";
/// `metrics.interval` (the default).
const INTERVAL_MS: i64 = 900_000;
/// How long shipping or scraping may take.
const SHIP_DEADLINE: Duration = Duration::from_secs(30);
/// Poll period of every wait.
const POLL: Duration = Duration::from_millis(50);
