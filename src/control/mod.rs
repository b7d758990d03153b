//! The control socket: one protocol definition shared by daemon and CLI, the server, and the client.

pub mod client;
pub mod protocol;
pub mod server;
