//! PBX sources: turning what a PBX already writes into the crate's own [`crate::event::Event`]s.
//!
//! Each source has a name that namespaces its call ids (`<name>:<id>`), so two sources never
//! collide. Parsing and mapping are pure (no I/O); the CLI's `import` reads the files.

pub mod asterisk;
