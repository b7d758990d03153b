//! The units pass `systemd-analyze verify` (their man page resolving) and score at most 2.0 in
//! `systemd-analyze security`.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::support::{cli, BIN};
use crate::{both_streams, run_tool, ROOT, SYSTEMD_PKG};

#[test]
fn units_verify_and_score_well() {
    let dir = tempfile::tempdir().expect("create a temporary folder");
    let service = dir.path().join("callmetrics.service");
    let socket = dir.path().join("callmetrics.socket");
    let unit = std::fs::read_to_string(Path::new(ROOT).join("systemd/callmetrics.service"))
        .expect("read systemd/callmetrics.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/callmetrics "),
        "the service no longer starts /usr/bin/callmetrics:\n{unit}"
    );
    std::fs::write(&service, unit.replace("/usr/bin/callmetrics", BIN)).expect("write the unit");
    std::fs::copy(Path::new(ROOT).join("systemd/callmetrics.socket"), &socket)
        .expect("copy systemd/callmetrics.socket");
    let admin = dir.path().join("callmetrics-admin.socket");
    let admin_unit =
        std::fs::read_to_string(Path::new(ROOT).join("systemd/callmetrics-admin.socket"))
            .expect("read systemd/callmetrics-admin.socket");
    std::fs::write(&admin, &admin_unit).expect("write the admin socket unit");
    // The admin socket comes up as the service user's alone, under the name the daemon takes it by.
    for line in [
        "ListenStream=/run/callmetrics/admin.sock",
        "FileDescriptorName=admin",
        "SocketUser=callmetrics",
        "SocketMode=0600",
        "Service=callmetrics.service",
    ] {
        assert!(
            admin_unit.lines().any(|l| l.trim() == line),
            "callmetrics-admin.socket lacks `{line}`:\n{admin_unit}"
        );
    }
    assert_eq!(
        callmetrics::systemd::ADMIN_FD_NAME,
        "admin",
        "the daemon takes the admin socket by another name than the unit gives it"
    );
    for (line, what) in [
        (
            "Sockets=callmetrics.socket callmetrics-admin.socket",
            "inherits both socket units",
        ),
        (
            "Requires=callmetrics.socket callmetrics-admin.socket",
            "requires both socket units",
        ),
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "the service no longer {what} (`{line}`):\n{unit}"
        );
    }

    // `Documentation=man:callmetrics(1)` must resolve: the man page this binary generates.
    let man = dir.path().join("man");
    let out = cli([
        OsStr::new("generate"),
        OsStr::new("--out"),
        man.join("man1").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "callmetrics generate failed: {}",
        both_streams(&out)
    );
    assert!(man.join("man1/callmetrics.1").is_file(), "no man page");

    let out = run_tool(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&service)
            .arg(&socket)
            .arg(&admin)
            .env("MANPATH", &man),
        SYSTEMD_PKG,
    );
    let text = both_streams(&out);
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("callmetrics")).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify exited with {} and says about our units:\n{}\n(all its output:\n{text})",
        out.status,
        ours.join("\n")
    );

    let out = run_tool(
        Command::new("systemd-analyze")
            .arg("security")
            .arg("--offline=true")
            .arg(&service),
        SYSTEMD_PKG,
    );
    let text = both_streams(&out);
    let prefix = "Overall exposure level for callmetrics.service: ";
    let level: f64 = text
        .lines()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}X` in systemd-analyze security's output:\n{text}"));
    println!("systemd-analyze security: exposure level {level}");
    assert!(
        level <= 2.0,
        "exposure level {level} > 2.0; the weak points:\n{}",
        text.lines()
            .filter(|l| l.contains('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
