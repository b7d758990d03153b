//! The mapping of `queue_log` verbs to call events, one line at a time, with the little state a
//! call needs across lines (its open segment, a pending DID, how many queues it visited).
//!
//! Each queue visit of a uniqueid is its own call id: `<source>:<uniqueid>` for the first,
//! `<source>:<uniqueid>#2`, `#3`, … for the next. `queue_log` has whole seconds only, so an
//! overflow into a second queue often starts in the same second as the first visit; under one
//! call id the engine would take the second `start` for a duplicate of the first (same call,
//! type and time) and lose the visit. Distinct ids give one segment per queue whatever the times.

use std::collections::{BTreeMap, HashMap};

use super::line::{self, Line};
use crate::event::{EndReason, Event, EventKind};

/// Call ids Asterisk writes for lines that are about no call.
const PSEUDO_CALL_IDS: [&str; 4] = ["NONE", "REALTIME", "MANAGER", "CLI"];

/// Verbs about members, pauses, agents' ringing and the queue's configuration: no call event.
const NOT_CALL_VERBS: [&str; 20] = [
    "ADDMEMBER",
    "REMOVEMEMBER",
    "PAUSE",
    "UNPAUSE",
    "PAUSEALL",
    "UNPAUSEALL",
    "PENALTY",
    "QUEUESTART",
    "CONFIGRELOAD",
    "AGENTLOGIN",
    "AGENTLOGOFF",
    "AGENTCALLBACKLOGIN",
    "AGENTCALLBACKLOGOFF",
    "RINGNOANSWER",
    "RINGCANCELED",
    "INFO",
    "TRANSFER",
    "CALLBACKREQ",
    "MIXMONITOR",
    "RINGING",
];

/// Distinct unknown verbs counted by name; beyond this, under `(other)`, so a garbled file
/// cannot grow the counts without bound.
pub(super) const MAX_UNKNOWN_VERBS: usize = 64;

/// A call's state is dropped this long (source time) after its last line when no segment is
/// open, and twice as long when one is (the engine has expired it by then).
const FORGET_AFTER_S: i64 = 24 * 3600;
/// Lines between sweeps of forgotten calls.
const SWEEP_EVERY: u64 = 1 << 16;

/// What WITHDRAW (a caller leaving through the AMI `QueueWithdrawCaller`, e.g. for a callback)
/// ends a segment as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawAs {
    #[default]
    Exit,
    Callback,
}

/// How lines are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The source's name, the prefix of its call ids.
    pub source: String,
    pub withdraw: WithdrawAs,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source: "asterisk".into(),
            withdraw: WithdrawAs::Exit,
        }
    }
}

/// Lines skipped, by (reason, verb). Reasons: `member_or_config`, `pseudo_call_id`,
/// `unknown_verb`, `no_open_segment`, `repeated_connect`, `comment`, and the line errors of
/// [`line::LineError::reason`] (verb `-`).
pub type Skipped = BTreeMap<(&'static str, String), u64>;

#[derive(Debug, Default)]
struct CallState {
    /// Queue visits started so far (the next start is visit `visits + 1`).
    visits: u32,
    open: Option<Open>,
    /// A DID line's number, for the next start.
    did: Option<String>,
    last_epoch: i64,
}

#[derive(Debug)]
struct Open {
    call_id: String,
    answered: bool,
}

/// Maps `queue_log` lines, in file order, to events.
#[derive(Debug)]
pub struct Mapper {
    opts: Options,
    calls: HashMap<String, CallState>,
    skipped: Skipped,
    lines: u64,
}

impl Mapper {
    #[must_use]
    pub fn new(opts: Options) -> Self {
        Mapper {
            opts,
            calls: HashMap::new(),
            skipped: Skipped::new(),
            lines: 0,
        }
    }

    /// Lines seen (every call of [`Mapper::line`]).
    #[must_use]
    pub fn lines(&self) -> u64 {
        self.lines
    }

    #[must_use]
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Maps one complete line (with or without its newline), appending its events to `out`
    /// (none, one, or two when a re-entry closes the previous visit). Never fails: what it cannot
    /// use is counted in [`Mapper::skipped`].
    pub fn line(&mut self, raw: &[u8], out: &mut Vec<Event>) {
        self.lines += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if raw.first() == Some(&b'#') {
            self.skip("comment", "-");
            return;
        }
        let l = match line::parse(raw) {
            Ok(l) => l,
            Err(e) => {
                self.skip(e.reason(), "-");
                return;
            }
        };
        if self.lines.is_multiple_of(SWEEP_EVERY) {
            self.sweep(l.epoch);
        }
        if PSEUDO_CALL_IDS.contains(&l.call_id) || l.call_id.is_empty() {
            self.skip("pseudo_call_id", l.verb);
            return;
        }
        let ts = l.epoch.saturating_mul(1000);
        match l.verb {
            "DID" => {
                let st = self.state(&l);
                st.did = Some(l.data(0).to_string()).filter(|d| !d.is_empty());
            }
            "ENTERQUEUE" => self.enter(&l, ts, out),
            "CONNECT" => {
                let Some(open) = self.open_mut(&l) else {
                    self.skip("no_open_segment", l.verb);
                    return;
                };
                if open.answered {
                    self.skip("repeated_connect", l.verb);
                    return;
                }
                open.answered = true;
                let mut e = Event::new(EventKind::Answer, open.call_id.clone(), ts);
                e.agent = Some(l.agent.to_string()).filter(|a| !a.is_empty() && a != "NONE");
                out.push(e);
            }
            "COMPLETECALLER" => {
                self.end(&l, ts, EndReason::Completed, &[("hangup", "caller")], out);
            }
            "COMPLETEAGENT" => {
                self.end(&l, ts, EndReason::Completed, &[("hangup", "agent")], out);
            }
            "ABANDON" => {
                // Asterisk can log ABANDON for a caller who hangs up once an agent has answered
                // (during the agent's announcement, or a bridge that failed to start): the call
                // was answered, so it ends completed, the caller hanging up.
                if self.open_mut(&l).is_some_and(|o| o.answered) {
                    let tags = [("hangup", "caller"), ("asterisk", "abandon_after_connect")];
                    self.end(&l, ts, EndReason::Completed, &tags, out);
                } else {
                    self.end(&l, ts, EndReason::Abandoned, &[], out);
                }
            }
            "EXITWITHTIMEOUT" => self.end(&l, ts, EndReason::Timeout, &[], out),
            // EXITWITHKEY|key|position|origposition|waittime: the digit is no caller data. A
            // field longer than a few keys is no key: left out rather than have the daemon refuse
            // the whole `end` for an over-long tag.
            "EXITWITHKEY" => {
                let key = l.data(0).to_string();
                let tags = [("key", key.as_str())];
                let tags = if key.is_empty() || key.len() > 8 {
                    &tags[..0]
                } else {
                    &tags[..]
                };
                self.end(&l, ts, EndReason::Exit, tags, out);
            }
            "EXITEMPTY" => self.end(&l, ts, EndReason::Exit, &[], out),
            "WITHDRAW" => {
                let reason = match self.opts.withdraw {
                    WithdrawAs::Exit => EndReason::Exit,
                    WithdrawAs::Callback => EndReason::Callback,
                };
                self.end(&l, ts, reason, &[("asterisk", "withdraw")], out);
            }
            "BLINDTRANSFER" => {
                self.end(
                    &l,
                    ts,
                    EndReason::Transferred,
                    &[("transfer", "blind")],
                    out,
                );
            }
            // Two layouts: before Asterisk 12 `extension|context|holdtime|calltime|origposition`;
            // since, `BRIDGE|bridge_uniqueid|…`, `APP|app|…` or `LINK|channel1|channel2|…` (one
            // field more). The times are the line's own, so only the method is read.
            "ATTENDEDTRANSFER" => {
                let method = match l.data(0) {
                    "BRIDGE" => "bridge",
                    "APP" => "app",
                    "LINK" => "link",
                    _ => "extension",
                };
                let tags = [("transfer", "attended"), ("transfer_method", method)];
                self.end(&l, ts, EndReason::Transferred, &tags, out);
            }
            "AGENTDUMP" => self.end(&l, ts, EndReason::Exit, &[("asterisk", "agentdump")], out),
            "SYSCOMPAT" => self.end(&l, ts, EndReason::Exit, &[("asterisk", "syscompat")], out),
            verb if NOT_CALL_VERBS.contains(&verb) => self.skip("member_or_config", verb),
            verb => self.skip("unknown_verb", verb),
        }
    }

    /// ENTERQUEUE|url|callerid|position: a new visit. Nothing of the data is kept (the caller
    /// id is personal data). A visit still open is closed first, in the same second, as
    /// transferred: the call left that queue for this one without a line saying so.
    fn enter(&mut self, l: &Line<'_>, ts: i64, out: &mut Vec<Event>) {
        let source_len = self.opts.source.len();
        let mut call_id = String::with_capacity(source_len + l.call_id.len() + 4);
        call_id.push_str(&self.opts.source);
        call_id.push(':');
        call_id.push_str(l.call_id);
        let st = self.state(l);
        if let Some(prev) = st.open.take() {
            let mut e = Event::new(EventKind::End, prev.call_id, ts);
            e.reason = Some(EndReason::Transferred);
            out.push(e);
        }
        st.visits += 1;
        if st.visits > 1 {
            call_id.push('#');
            call_id.push_str(&st.visits.to_string());
        }
        let mut e = Event::new(EventKind::Start, call_id.clone(), ts);
        e.queue = Some(l.queue.to_string());
        if let Some(did) = st.did.take() {
            e.tags.push(("did".into(), did));
        }
        out.push(e);
        st.open = Some(Open {
            call_id,
            answered: false,
        });
    }

    /// Ends the open visit of the line's call with `reason` and `tags`.
    fn end(
        &mut self,
        l: &Line<'_>,
        ts: i64,
        reason: EndReason,
        tags: &[(&str, &str)],
        out: &mut Vec<Event>,
    ) {
        let Some(open) = self.calls.get_mut(l.call_id).and_then(|st| st.open.take()) else {
            self.skip("no_open_segment", l.verb);
            return;
        };
        let mut e = Event::new(EventKind::End, open.call_id, ts);
        e.reason = Some(reason);
        // How the call ended: who hung up, the transfer method, the key.
        e.tags = tags
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        out.push(e);
    }

    fn state(&mut self, l: &Line<'_>) -> &mut CallState {
        let st = self.calls.entry(l.call_id.to_string()).or_default();
        st.last_epoch = st.last_epoch.max(l.epoch);
        st
    }

    fn open_mut(&mut self, l: &Line<'_>) -> Option<&mut Open> {
        let st = self.calls.get_mut(l.call_id)?;
        st.last_epoch = st.last_epoch.max(l.epoch);
        st.open.as_mut()
    }

    fn skip(&mut self, reason: &'static str, verb: &str) {
        let known = self.skipped.contains_key(&(reason, verb.to_string()));
        let unknown_verbs = || {
            self.skipped
                .keys()
                .filter(|(r, _)| *r == "unknown_verb")
                .count()
        };
        let printable = verb.len() <= 32 && verb.bytes().all(|b| b.is_ascii_graphic());
        let verb = if known
            || (printable && (reason != "unknown_verb" || unknown_verbs() < MAX_UNKNOWN_VERBS))
        {
            verb
        } else {
            "(other)"
        };
        *self.skipped.entry((reason, verb.to_string())).or_default() += 1;
    }

    /// Forgets calls quiet for long (their visit numbers are no longer needed: a uniqueid is not
    /// reused), so following a log for months keeps memory flat.
    fn sweep(&mut self, now_epoch: i64) {
        self.calls.retain(|_, st| {
            let limit = if st.open.is_some() {
                2 * FORGET_AFTER_S
            } else {
                FORGET_AFTER_S
            };
            now_epoch - st.last_epoch < limit
        });
    }
}
