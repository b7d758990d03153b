//! SLA contracts: service-hours calendars, Erlang C staffing and per-period compliance of an
//! objective (see docs/sla.md). Pure computations, time passed in; the daemon wires them to
//! the stored history.

pub mod calendar;
pub mod erlang;
