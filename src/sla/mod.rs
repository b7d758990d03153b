//! SLA contracts: service-hours calendars, objectives built from `[[sla]]`, their per-period
//! compliance and Erlang C staffing (see docs/sla.md). Pure computations, time passed in.
//!
//! - [`calendar`]: weekly hours and holidays in a zone; business time between instants.
//! - [`objective`]: an `[[sla]]` entry ready to judge calls: scope, wait clock, periods.
//! - [`compliance`]: value so far, status and margin in calls of one objective in one period.
//! - [`erlang`]: Erlang C service level, ASA and the fewest agents for a target.

pub mod calendar;
pub mod compliance;
pub mod erlang;
pub mod objective;
