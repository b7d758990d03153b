//! `packaging/build-deb.sh` builds a .deb holding the binary, units, sysusers and tmpfiles
//! snippets, the config as a conffile, the man page and the completions, all usable.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{both_streams, run_tool, ROOT};

#[test]
fn deb_package_contents() {
    let out = run_tool(
        Command::new("cargo").args(["deb", "--version"]),
        "install cargo-deb with `cargo install cargo-deb --locked`",
    );
    assert!(
        out.status.success(),
        "`cargo deb` is not available ({}): .ci/run installs it with `cargo install cargo-deb --locked`",
        both_streams(&out).trim()
    );
    let out = run_tool(
        Command::new("bash")
            .arg(Path::new(ROOT).join("packaging/build-deb.sh"))
            .current_dir(ROOT),
        "install the Debian package `bash`",
    );
    assert!(
        out.status.success(),
        "packaging/build-deb.sh failed with {}:\n{}",
        out.status,
        both_streams(&out)
    );
    // cargo deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| Path::new(ROOT).join(l))
        .filter(|p| p.extension() == Some(OsStr::new("deb")) && p.is_file())
        .unwrap_or_else(|| panic!("build-deb.sh printed no .deb path last:\n{stdout}"));
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    assert!(
        name.starts_with(&format!("callmetrics_{}-", env!("CARGO_PKG_VERSION"))),
        "unexpected package name {name}"
    );

    let dpkg = |args: &[&OsStr]| -> String {
        let out = run_tool(
            Command::new("dpkg-deb").args(args),
            "install the Debian package `dpkg` (dpkg-dev)",
        );
        assert!(
            out.status.success(),
            "dpkg-deb {args:?} failed: {}",
            both_streams(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = dpkg(&[OsStr::new("-c"), deb.as_os_str()]);
    // `-rw-r--r-- root/root  1234 2024-01-01 00:00 ./usr/bin/callmetrics`
    let entries: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?.to_string();
            let path = l
                .split_whitespace()
                .nth(5)?
                .trim_start_matches('.')
                .to_string();
            Some((path, mode))
        })
        .collect();
    let mode_of = |alternatives: &[&str]| -> String {
        alternatives
            .iter()
            .find_map(|p| entries.iter().find(|(path, _)| path == p))
            .map_or_else(
                || panic!("the package holds none of {alternatives:?}:\n{listing}"),
                |(_, mode)| mode.clone(),
            )
    };
    assert_eq!(mode_of(&["/usr/bin/callmetrics"]), "-rwxr-xr-x");
    for unit in [
        "callmetrics.service",
        "callmetrics.socket",
        "callmetrics-admin.socket",
    ] {
        mode_of(&[
            &format!("/lib/systemd/system/{unit}"),
            &format!("/usr/lib/systemd/system/{unit}"),
        ]);
    }
    for path in [
        "/usr/lib/sysusers.d/callmetrics.conf",
        "/usr/lib/tmpfiles.d/callmetrics.conf",
        "/usr/share/man/man1/callmetrics.1.gz",
        "/usr/share/bash-completion/completions/callmetrics",
        "/usr/share/zsh/vendor-completions/_callmetrics",
        "/usr/share/fish/vendor_completions.d/callmetrics.fish",
    ] {
        assert_eq!(mode_of(&[path]), "-rw-r--r--", "{path}");
    }
    // Readable by the service user: the config holds no secrets (tokens live in `token_file`).
    assert_eq!(mode_of(&["/etc/callmetrics/agent.toml"]), "-rw-r--r--");

    let fields = dpkg(&[
        OsStr::new("-f"),
        deb.as_os_str(),
        OsStr::new("Package"),
        OsStr::new("Section"),
        OsStr::new("Priority"),
        OsStr::new("Depends"),
    ]);
    for want in ["Package: callmetrics", "Section: net", "Priority: optional"] {
        assert!(
            fields.lines().any(|l| l == want),
            "no `{want}` in the control fields:\n{fields}"
        );
    }
    // `$auto`: the shared libraries the binary links, at least the C library.
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("Depends: ") && l.contains("libc6")),
        "no Depends on libc6 in the control fields:\n{fields}"
    );
    let conffiles = dpkg(&[OsStr::new("-I"), deb.as_os_str(), OsStr::new("conffiles")]);
    assert!(
        conffiles
            .lines()
            .any(|l| l.trim() == "/etc/callmetrics/agent.toml"),
        "/etc/callmetrics/agent.toml is not a conffile: {conffiles:?}"
    );

    // What is inside is usable: the binary runs, the man page is gzip, the config is ours.
    let root = tempfile::tempdir().expect("create a temporary folder");
    dpkg(&[OsStr::new("-x"), deb.as_os_str(), root.path().as_os_str()]);
    let unpacked = |p: &str| -> PathBuf { root.path().join(p.trim_start_matches('/')) };
    let out = Command::new(unpacked("/usr/bin/callmetrics"))
        .arg("--version")
        .output()
        .expect("run the packaged binary");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("callmetrics {}", env!("CARGO_PKG_VERSION"))
    );
    let man = std::fs::read(unpacked("/usr/share/man/man1/callmetrics.1.gz")).expect("man page");
    assert_eq!(
        man.get(..2),
        Some(&[0x1f, 0x8b][..]),
        "the man page is not gzip"
    );
    assert_eq!(
        std::fs::read(unpacked("/etc/callmetrics/agent.toml")).expect("packaged config"),
        std::fs::read(Path::new(ROOT).join("config/agent.toml")).expect("config/agent.toml"),
    );
}
