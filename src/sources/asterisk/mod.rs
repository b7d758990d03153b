//! Asterisk `queue_log`: the line format ([`line`]) and its mapping to call events ([`mapping`]).
//!
//! Pure: bytes in, [`crate::event::Event`]s and skip counts out. What each verb becomes is in
//! docs/sources.md.

pub mod line;
pub mod mapping;

pub use mapping::{Mapper, Options, Skipped, WithdrawAs};

#[cfg(test)]
mod tests;
