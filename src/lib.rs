//! callmetrics: a call-center metrics agent.
//!
//! Map of the crate, in the order an event travels:
//! - [`ingest`]: event socket listeners, framing (JSON lines, `MessagePack` frames) and decoding.
//! - [`event`]: the event model and its validation (no I/O).
//! - [`daemon`]: start-up order, the committer (admit, write, flush, apply, reply), ticker, shutdown.
//! - [`store`]: every sled call: event log, checkpoints, outbox, byte cap and full-disk guards.
//! - [`engine`]: segments, rolling aggregates and metrics; pure, time passed in.
//! - [`control`]: the control protocol shared by daemon and CLI, its server and client.
//! - [`upstream`]: closed intervals into records, the durable outbox, sinks and delivery.
//! - [`history`]: closed intervals kept on disk per interval and per date, and reports from them.
//! - [`exposition`]: the optional Prometheus `/metrics` listener and its text format.
//! - [`alerts`]: breach alert rules, their durable state, and delivery to Alertmanager and webhooks.
//! - [`callbacks`]: callback promises, their deadlines and the book of requests (pure, not wired yet).
//! - [`cli`]: the command line: the daemon entry and every client subcommand.
//!
//! Beside them: [`config`] (TOML configuration, defaults and validation), [`units`] (durations,
//! zones, bucket spans, service-level formulas: the leaf both config and engine use),
//! [`shutdown`] (the stop signal every task watches), [`slots`] (connection caps where the
//! connection idle longest makes room), [`log_throttle`] (warnings a client can
//! repeat, logged once per interval with a count), [`printable`] (which characters a name may
//! hold and how the CLI escapes the others) and [`systemd`] (socket activation and `sd_notify`).
//!
//! One concern a file: the module map in README.md names every file and what it holds.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod callbacks;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod exposition;
pub mod history;
pub mod ingest;
pub mod log_throttle;
pub mod printable;
pub mod shutdown;
pub mod sla;
pub mod slots;
pub mod sources;
pub mod store;
pub mod systemd;
pub mod units;
pub mod upstream;
