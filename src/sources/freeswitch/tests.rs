use super::mapping::{event_time, Mapper};
use super::wire::{plain_event, url_decode, url_encode, FrameBuffer, WireError};
use crate::event::{EndReason, EventKind};

/// A plain event body as `switch_event_serialize` writes it.
fn body(headers: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (n, v) in headers {
        s.push_str(&format!("{n}: {}\n", url_encode(v)));
    }
    s.push('\n');
    s
}

fn cc(action: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        ("Event-Name", "CUSTOM"),
        ("Core-UUID", "0f3c1c58-4d6a-4b8e-9c1e-2a6f9a8b7c6d"),
        ("Event-Date-Timestamp", "1796119200123456"),
        ("Event-Subclass", "callcenter::info"),
        ("CC-Queue", "support@default"),
        ("CC-Action", action),
        ("CC-Member-UUID", "6b7f2c9e-1111-2222-3333-444455556666"),
    ];
    h.extend_from_slice(extra);
    plain_event(body(&h).as_bytes()).unwrap()
}

fn map(headers: &[(String, String)]) -> (Vec<crate::event::Event>, Mapper) {
    let mut m = Mapper::new("fs1");
    let mut out = Vec::new();
    m.event(headers, &mut out);
    (out, m)
}

#[test]
fn frames_split_on_content_length_whatever_the_reads() {
    let ev = body(&[("Event-Name", "CUSTOM"), ("CC-Queue", "a b:c")]);
    let wire = format!(
        "Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\nContent-Length: {}\nContent-Type: text/event-plain\n\n{ev}Content-Type: text/disconnect-notice\nContent-Length: 13\n\nDisconnected.",
        ev.len()
    );
    // Byte by byte: a frame is handed out only once all of it is there.
    let mut b = FrameBuffer::default();
    let mut frames = Vec::new();
    for byte in wire.as_bytes() {
        b.extend(std::slice::from_ref(byte));
        while let Some(f) = b.next_frame().unwrap() {
            frames.push(f);
        }
    }
    let types: Vec<&str> = frames
        .iter()
        .map(super::wire::Frame::content_type)
        .collect();
    assert_eq!(
        types,
        [
            "auth/request",
            "command/reply",
            "text/event-plain",
            "text/disconnect-notice"
        ]
    );
    assert_eq!(frames[1].header("reply-text"), Some("+OK accepted"));
    let h = plain_event(&frames[2].body).unwrap();
    assert_eq!(h[1], ("CC-Queue".to_string(), "a b:c".to_string()));
    assert_eq!(frames[3].body, b"Disconnected.");
    assert_eq!(b.pending(), 0);
}

#[test]
fn bad_lengths_and_endless_heads_are_errors() {
    let mut b = FrameBuffer::default();
    b.extend(b"Content-Length: lots\n\n");
    assert_eq!(
        b.next_frame(),
        Err(WireError::BadLength("lots".to_string()))
    );
    let mut b = FrameBuffer::default();
    b.extend(&vec![b'a'; super::wire::MAX_HEAD_BYTES + 1]);
    assert_eq!(b.next_frame(), Err(WireError::HeadTooLong));
}

#[test]
fn url_decoding_matches_switch_url_decode() {
    assert_eq!(url_decode("callcenter%3A%3Ainfo"), "callcenter::info");
    assert_eq!(url_decode("a+b%20c"), "a+b c");
    assert_eq!(url_decode("100%"), "100%");
    assert_eq!(url_decode("%zz%41"), "%zzA");
    assert_eq!(url_decode("Jos%C3%A9"), "José");
    let raw = "sip:1000@example.com; tag=\"x#y\"\n";
    assert_eq!(url_decode(&url_encode(raw)), raw);
}

#[test]
fn caller_actions_map_to_start_answer_and_end() {
    let (s, _) = map(&cc("member-queue-start", &[]));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, EventKind::Start);
    assert_eq!(s[0].call_id, "fs1:6b7f2c9e-1111-2222-3333-444455556666");
    assert_eq!(s[0].queue.as_deref(), Some("support@default"));
    // Microseconds to milliseconds, truncated.
    assert_eq!(s[0].ts_ms, 1_796_119_200_123);
    let (r, _) = map(&cc("member-queue-resume", &[]));
    assert_eq!(r[0].kind, EventKind::Start);
    let (a, _) = map(&cc("bridge-agent-start", &[("CC-Agent", "1001@default")]));
    assert_eq!(
        (a[0].kind, a[0].agent.as_deref()),
        (EventKind::Answer, Some("1001@default"))
    );
    let cases: [(&[(&str, &str)], EndReason); 7] = [
        (
            &[
                ("CC-Cause", "Terminated"),
                ("CC-Hangup-Cause", "NORMAL_CLEARING"),
            ],
            EndReason::Completed,
        ),
        (
            &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "TIMEOUT")],
            EndReason::Timeout,
        ),
        (
            &[
                ("CC-Cause", "Cancel"),
                ("CC-Cancel-Reason", "NO_AGENT_TIMEOUT"),
            ],
            EndReason::Timeout,
        ),
        (
            &[
                ("CC-Cause", "Cancel"),
                ("CC-Cancel-Reason", "EXIT_WITH_KEY"),
            ],
            EndReason::Exit,
        ),
        // The caller hung up: the channel is going down.
        (
            &[
                ("CC-Cause", "Cancel"),
                ("CC-Cancel-Reason", "BREAK_OUT"),
                ("Answer-State", "hangup"),
                ("Hangup-Cause", "NORMAL_CLEARING"),
            ],
            EndReason::Abandoned,
        ),
        // No channel headers at all: taken for a hang-up.
        (
            &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "BREAK_OUT")],
            EndReason::Abandoned,
        ),
        // Still up (uuid_transfer out of the queue): transferred.
        (
            &[
                ("CC-Cause", "Cancel"),
                ("CC-Cancel-Reason", "BREAK_OUT"),
                ("Answer-State", "answered"),
            ],
            EndReason::Transferred,
        ),
    ];
    for (extra, want) in cases {
        let (e, m) = map(&cc("member-queue-end", extra));
        assert_eq!(e.len(), 1, "{extra:?}: {:?}", m.skipped());
        assert_eq!(
            (e[0].kind, e[0].reason),
            (EventKind::End, Some(want)),
            "{extra:?}"
        );
    }
}

#[test]
fn other_actions_and_broken_events_are_skipped_and_counted() {
    let mut m = Mapper::new("fs1");
    let mut out = Vec::new();
    for h in [
        cc("agent-status-change", &[]),
        cc("agent-state-change", &[]),
        cc("members-count", &[]),
        cc("bridge-agent-fail", &[]),
        cc("agent-uuid-get", &[]),
        cc("member-queue-frobnicate", &[]),
        cc(
            "member-queue-end",
            &[("CC-Cause", "Cancel"), ("CC-Cancel-Reason", "NONE")],
        ),
        cc("member-queue-end", &[("CC-Cause", "Whatever")]),
    ] {
        m.event(&h, &mut out);
    }
    let mut no_member = cc("member-queue-start", &[]);
    no_member.retain(|(n, _)| n != "CC-Member-UUID");
    m.event(&no_member, &mut out);
    let mut no_time = cc("member-queue-start", &[]);
    no_time.retain(|(n, _)| n != "Event-Date-Timestamp");
    assert_eq!(m.event(&no_time, &mut out), None);
    let mut other = cc("member-queue-start", &[]);
    other[3].1 = "conference::maintenance".into();
    m.event(&other, &mut out);
    assert!(out.is_empty(), "{out:?}");
    let got: Vec<(&str, &str, u64)> = m
        .skipped()
        .iter()
        .map(|((r, a), n)| (*r, a.as_str(), *n))
        .collect();
    assert_eq!(
        got,
        [
            ("agent_or_count", "agent-state-change", 1),
            ("agent_or_count", "agent-status-change", 1),
            ("agent_or_count", "agent-uuid-get", 1),
            ("agent_or_count", "bridge-agent-fail", 1),
            ("agent_or_count", "members-count", 1),
            ("bad_time", "member-queue-start", 1),
            ("missing_header", "member-queue-start", 1),
            ("not_callcenter", "conference::maintenance", 1),
            ("unknown_action", "member-queue-frobnicate", 1),
            ("unknown_cancel_reason", "member-queue-end", 1),
            ("unknown_cause", "member-queue-end", 1),
        ]
    );
}

#[test]
fn event_times_outside_the_accepted_range_are_none() {
    let t = |v: &str| event_time(&[("Event-Date-Timestamp".to_string(), v.to_string())]);
    assert_eq!(t("1796119200000000"), Some(1_796_119_200_000));
    // Seconds where microseconds belong: before 2000.
    assert_eq!(t("1796119200"), None);
    assert_eq!(t("-5"), None);
    assert_eq!(t("x"), None);
}
