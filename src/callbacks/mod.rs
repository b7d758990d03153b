//! Callback commitments: a caller who leaves a queue with reason `callback` is promised a call
//! back by a deadline (the same business day, or within so many business hours of the service's
//! calendar). Pure: the promise and its deadline ([`promise`]) and the book of requests,
//! fulfilled on time, late, cancelled or not at all ([`book`]). The engine holds one book per
//! `callbacks_within` objective (src/engine/callbacks.rs); docs/callbacks.md describes it all.

pub mod book;
pub mod promise;
