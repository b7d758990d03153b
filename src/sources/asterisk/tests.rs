//! Each verb's mapping and the odd cases of real `queue_log` files, line by line.

use super::*;
use crate::event::{EndReason, Event, EventKind};

fn map_with(opts: Options, text: &str) -> (Vec<Event>, Mapper) {
    let mut m = Mapper::new(opts);
    let mut out = Vec::new();
    for l in text.lines() {
        m.line(l.as_bytes(), &mut out);
    }
    (out, m)
}

fn map(text: &str) -> (Vec<Event>, Mapper) {
    map_with(Options::default(), text)
}

/// (kind, call id, ts in s, queue or agent or reason) of each event, for compact assertions.
fn brief(evs: &[Event]) -> Vec<(EventKind, String, i64, String)> {
    evs.iter()
        .map(|e| {
            let what = match e.kind {
                EventKind::Start => e.queue.clone().unwrap_or_default(),
                EventKind::Answer => e.agent.clone().unwrap_or_default(),
                _ => e
                    .reason
                    .map(EndReason::name)
                    .unwrap_or_default()
                    .to_string(),
            };
            (e.kind, e.call_id.clone(), e.ts_ms / 1000, what)
        })
        .collect()
}

fn ev(kind: EventKind, id: &str, s: i64, what: &str) -> (EventKind, String, i64, String) {
    (kind, id.to_string(), s, what.to_string())
}

use EventKind::{Answer, End, Start};

#[test]
fn answered_and_completed_by_the_caller_or_the_agent() {
    let (evs, m) = map("100|u1|sales|NONE|ENTERQUEUE||5551234|1\n\
         112|u1|sales|SIP/alice|CONNECT|12|u1.2|3\n\
         300|u1|sales|SIP/alice|COMPLETECALLER|12|188|1\n\
         200|u2|sales|NONE|ENTERQUEUE|||1\n\
         205|u2|sales|Agent/7|CONNECT|5|u2.1|2\n\
         260|u2|sales|Agent/7|COMPLETEAGENT|5|55|1");
    assert_eq!(
        brief(&evs),
        [
            ev(Start, "asterisk:u1", 100, "sales"),
            ev(Answer, "asterisk:u1", 112, "SIP/alice"),
            ev(End, "asterisk:u1", 300, "completed"),
            ev(Start, "asterisk:u2", 200, "sales"),
            ev(Answer, "asterisk:u2", 205, "Agent/7"),
            ev(End, "asterisk:u2", 260, "completed"),
        ]
    );
    assert_eq!(evs[0].ts_ms, 100_000, "whole seconds become milliseconds");
    assert!(evs[0].tags.is_empty(), "no caller data is kept");
    assert!(m.skipped().is_empty());
}

#[test]
fn unanswered_ends_by_verb() {
    let (evs, _) = map("10|a|q|NONE|ENTERQUEUE||x|1\n20|a|q|NONE|ABANDON|1|1|10\n\
         10|t|q|NONE|ENTERQUEUE||x|1\n40|t|q|NONE|EXITWITHTIMEOUT|1|1|30\n\
         10|k|q|NONE|ENTERQUEUE||x|1\n15|k|q|NONE|EXITWITHKEY|5|1|1|5\n\
         10|e|q|NONE|ENTERQUEUE||x|1\n10|e|q|NONE|EXITEMPTY|1|1|0\n\
         10|w|q|NONE|ENTERQUEUE||x|1\n18|w|q|NONE|WITHDRAW|1|1|8|info");
    let ends: Vec<_> = evs.iter().filter(|e| e.kind == End).collect();
    let reasons: Vec<_> = ends.iter().map(|e| e.reason.unwrap()).collect();
    use EndReason::{Abandoned, Exit, Timeout};
    assert_eq!(reasons, [Abandoned, Timeout, Exit, Exit, Exit]);
    let (evs, _) = map_with(
        Options {
            withdraw: WithdrawAs::Callback,
            ..Options::default()
        },
        "10|w|q|NONE|ENTERQUEUE||x|1\n18|w|q|NONE|WITHDRAW|1|1|8|",
    );
    assert_eq!(evs[1].reason, Some(EndReason::Callback));
}

#[test]
fn transfers_in_every_layout_end_transferred() {
    let text = "1|b|q|NONE|ENTERQUEUE||x|1\n2|b|q|SIP/a|CONNECT|1|z|1\n9|b|q|SIP/a|BLINDTRANSFER|200|default|1|7|1\n\
                1|o|q|NONE|ENTERQUEUE||x|1\n2|o|q|SIP/a|CONNECT|1|z|1\n9|o|q|SIP/a|ATTENDEDTRANSFER|200|default|1|7|1\n\
                1|r|q|NONE|ENTERQUEUE||x|1\n2|r|q|SIP/a|CONNECT|1|z|1\n9|r|q|SIP/a|ATTENDEDTRANSFER|BRIDGE|b-1|1|7|1\n\
                1|p|q|NONE|ENTERQUEUE||x|1\n2|p|q|SIP/a|CONNECT|1|z|1\n9|p|q|SIP/a|ATTENDEDTRANSFER|APP|Dial|1|7|1\n\
                1|l|q|NONE|ENTERQUEUE||x|1\n2|l|q|SIP/a|CONNECT|1|z|1\n9|l|q|SIP/a|ATTENDEDTRANSFER|LINK|SIP/x-1|SIP/y-2|1|7|1";
    let (evs, m) = map(text);
    let ends: Vec<_> = evs.iter().filter(|e| e.kind == End).collect();
    assert_eq!(ends.len(), 5);
    assert!(ends
        .iter()
        .all(|e| e.reason == Some(EndReason::Transferred) && e.ts_ms == 9000));
    let method = |e: &Event| {
        e.tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        ends.iter().map(|e| method(e)).collect::<Vec<_>>(),
        [
            "transfer=blind",
            "transfer=attended,transfer_method=extension",
            "transfer=attended,transfer_method=bridge",
            "transfer=attended,transfer_method=app",
            "transfer=attended,transfer_method=link",
        ]
    );
    assert!(m.skipped().is_empty());
}

#[test]
fn overflow_into_a_second_queue_in_the_same_second_gives_two_segments() {
    let (evs, _) = map("50|o|first|NONE|ENTERQUEUE||x|1\n\
         50|o|first|NONE|EXITWITHTIMEOUT|1|1|0\n\
         50|o|second|NONE|ENTERQUEUE||x|1\n\
         58|o|second|SIP/b|CONNECT|8|z|1\n\
         90|o|second|SIP/b|COMPLETEAGENT|8|32|1");
    assert_eq!(
        brief(&evs),
        [
            ev(Start, "asterisk:o", 50, "first"),
            ev(End, "asterisk:o", 50, "timeout"),
            ev(Start, "asterisk:o#2", 50, "second"),
            ev(Answer, "asterisk:o#2", 58, "SIP/b"),
            ev(End, "asterisk:o#2", 90, "completed"),
        ]
    );
}

#[test]
fn a_visit_left_open_is_closed_when_the_call_enters_again() {
    let (evs, _) = map("50|o|first|NONE|ENTERQUEUE||x|1\n50|o|second|NONE|ENTERQUEUE||x|1");
    assert_eq!(
        brief(&evs),
        [
            ev(Start, "asterisk:o", 50, "first"),
            ev(End, "asterisk:o", 50, "transferred"),
            ev(Start, "asterisk:o#2", 50, "second"),
        ]
    );
}

#[test]
fn a_queue_run_twice_by_one_channel_gives_two_segments() {
    let (evs, _) = map(
        "10|c|q|NONE|ENTERQUEUE||x|1\n30|c|q|NONE|EXITWITHTIMEOUT|1|1|20\n\
         40|c|q|NONE|ENTERQUEUE||x|1\n45|c|q|SIP/a|CONNECT|5|z|1\n60|c|q|SIP/a|COMPLETECALLER|5|15|1",
    );
    let ids: Vec<_> = evs.iter().map(|e| e.call_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "asterisk:c",
            "asterisk:c",
            "asterisk:c#2",
            "asterisk:c#2",
            "asterisk:c#2"
        ]
    );
}

#[test]
fn abandon_after_an_agent_answered_stays_answered() {
    let (evs, _) =
        map("10|x|q|NONE|ENTERQUEUE||x|1\n14|x|q|SIP/a|CONNECT|4|z|1\n16|x|q|NONE|ABANDON|1|1|4");
    assert_eq!(evs[2].reason, Some(EndReason::Completed));
}

#[test]
fn agentdump_and_syscompat_exit_with_a_tag() {
    let (evs, _) = map(
        "1|d|q|NONE|ENTERQUEUE||x|1\n2|d|q|SIP/a|CONNECT|1|z|1\n3|d|q|SIP/a|AGENTDUMP|\n\
         1|s|q|NONE|ENTERQUEUE||x|1\n3|s|q|SIP/a|SYSCOMPAT|",
    );
    assert_eq!(evs[2].reason, Some(EndReason::Exit));
}

#[test]
fn a_did_line_tags_the_next_start_only() {
    let (evs, m) = map(
        "9|v|NONE|NONE|DID|18005550100\n10|v|q|NONE|ENTERQUEUE||x|1\n\
         20|v|q|NONE|EXITEMPTY|1|1|10\n30|v|r|NONE|ENTERQUEUE||x|1",
    );
    assert_eq!(evs[0].tags, [("did".into(), "18005550100".into())]);
    assert!(evs[2].tags.is_empty());
    assert!(m.skipped().is_empty());
}

#[test]
fn pseudo_ids_member_lines_and_unknown_verbs_are_counted_not_fatal() {
    let (evs, m) = map("1|NONE|NONE|NONE|QUEUESTART|\n\
         2|MANAGER|q|SIP/a|ADDMEMBER|\n\
         3|REALTIME|q|SIP/a|PAUSE|lunch\n\
         4|CLI|q|SIP/a|REMOVEMEMBER|\n\
         5|NONE|q|SIP/a|CONFIGRELOAD|\n\
         6|u9|q|SIP/a|RINGNOANSWER|15000\n\
         7|u9|q|SIP/a|FROBNICATE|1\n\
         8|u9|q|SIP/a|CONNECT|1|z|1\n\
         # a comment\n\
         garbage\n\
         x|u|q|a|ENTERQUEUE");
    assert!(evs.is_empty());
    let got: Vec<_> = m
        .skipped()
        .iter()
        .map(|((r, v), n)| (*r, v.as_str(), *n))
        .collect();
    assert_eq!(
        got,
        [
            ("bad_time", "-", 1),
            ("comment", "-", 1),
            ("member_or_config", "RINGNOANSWER", 1),
            ("no_open_segment", "CONNECT", 1),
            ("pseudo_call_id", "ADDMEMBER", 1),
            ("pseudo_call_id", "CONFIGRELOAD", 1),
            ("pseudo_call_id", "PAUSE", 1),
            ("pseudo_call_id", "QUEUESTART", 1),
            ("pseudo_call_id", "REMOVEMEMBER", 1),
            ("too_few_fields", "-", 1),
            ("unknown_verb", "FROBNICATE", 1),
        ]
    );
    assert_eq!(m.lines(), 11);
}

#[test]
fn unknown_verbs_are_counted_in_bounded_space() {
    let text: String = (0..200).fold(String::new(), |mut s, i| {
        s.push_str(&format!("1|u|q|a|VERB{i}|\n"));
        s
    });
    let (_, m) = map(&text);
    assert_eq!(m.skipped().len(), mapping::MAX_UNKNOWN_VERBS + 1);
    assert_eq!(m.skipped().values().sum::<u64>(), 200);
}

#[test]
fn the_source_name_namespaces_call_ids() {
    let (evs, _) = map_with(
        Options {
            source: "pbx2".into(),
            ..Options::default()
        },
        "1|u|q|NONE|ENTERQUEUE||x|1",
    );
    assert_eq!(evs[0].call_id, "pbx2:u");
}
