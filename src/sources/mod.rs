//! PBX sources: turning what a PBX already writes into the crate's own [`crate::event::Event`]s.
//!
//! Each source has a name that namespaces its call ids (`<name>:<id>`), so two sources never
//! collide. Parsing and mapping are pure (no I/O); the CLI's `import` reads the files, and
//! [`follow`] follows one inside the daemon (the daemon's task that drives it is
//! `daemon/sources.rs`); [`freeswitch`] reads `mod_callcenter`'s events from the event socket
//! (driven by `daemon/freeswitch.rs`).

pub mod asterisk;
pub mod follow;
pub mod freeswitch;

/// FNV-1a, 64 bits, of a file's first complete line: its epoch and uniqueid (or the queue's
/// start line's epoch) name the file whatever later grows, gets rotated or compressed.
#[must_use]
pub fn fingerprint(first_line: &[u8]) -> u64 {
    first_line.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
