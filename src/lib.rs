//! callmetrics: a call-center metrics agent.
//!
//! Map of the crate:
//! - [`event`]: the event model and its validation (no I/O).
//! - [`config`]: TOML configuration, defaults and validation.
//! - [`engine`]: segments, rolling aggregates and metrics; pure, time passed in.
//! - [`store`]: every sled call: event log, checkpoints, size cap.
//! - [`ingest`]: event socket listeners and framing (JSON lines, MessagePack frames).
//! - [`control`]: the control protocol shared by daemon and CLI, its server and client.
//! - [`daemon`]: start-up order, group commit, ticker, shutdown.
//! - [`systemd`]: socket activation and sd_notify.
//! - [`cli`]: the command line: the daemon entry and every client subcommand.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod ingest;
pub mod store;
pub mod systemd;
pub mod upstream;
