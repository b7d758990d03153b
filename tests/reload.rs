//! `callmetrics reload` applies new limits to connections already open, and a broken config is
//! refused with the old one kept.

mod support;

use serde_json::json;
use support::{cli, now_ms, Daemon};

#[test]
fn reload_changes_limits_live_and_refuses_a_broken_config() {
    let d = Daemon::start("");
    let mut conn = d.json_conn();
    let event =
        |id: &str| json!({"type":"start","call_id":id,"queue":"q","ts":now_ms()}).to_string();
    let long_id = "a-call-id-of-thirty-two-bytes-xx";
    assert_eq!(conn.request(&event(long_id))["ok"], json!(true));

    d.rewrite_config("[limits]\nmax_string_bytes = 16\n");
    let out = cli(["reload", "--socket", &d.control_arg()]);
    assert!(
        out.status.success(),
        "reload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = conn.request(&event(&format!("{long_id}-2")));
    assert_eq!(reply["ok"], json!(false), "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or("")
            .contains("max_string_bytes"),
        "{reply}"
    );
    assert_eq!(conn.request(&event("short"))["ok"], json!(true));

    d.rewrite_config("[limits]\nmax_string_bytez = 16\n");
    let out = cli(["reload", "--socket", &d.control_arg()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a broken config must be refused"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_string_bytez") && err.contains("old one stays"),
        "{err}"
    );
    // The limits of the last good config still hold.
    assert_eq!(
        conn.request(&event(&format!("{long_id}-3")))["ok"],
        json!(false)
    );
}
