//! FreeSWITCH `mod_callcenter` over the inbound event socket: the wire format ([`wire`]) and
//! the mapping of `CUSTOM callcenter::info` events to call events ([`mapping`]), both pure; the
//! client that connects, authenticates and subscribes ([`client`], network I/O). The daemon's
//! task that drives them is `daemon/freeswitch.rs`; docs/sources.md has the mapping table.

pub mod client;
pub mod mapping;
pub mod wire;

pub use mapping::{Mapper, Skipped};

#[cfg(test)]
mod tests;
