//! Callback commitments: a caller who leaves a queue with reason `callback` is promised a call
//! back by a deadline (the same business day, or within so many business hours of the service's
//! calendar). Pure parts so far: the promise and its deadline ([`promise`]) and the book of
//! requests, fulfilled on time, late or not at all ([`book`]). docs/callbacks.md says what is
//! built and what is not yet.

pub mod book;
pub mod promise;
