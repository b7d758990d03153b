#!/usr/bin/env bash
# The amd64, arm64 and armhf packages, built and checked (run by .ci/run before the test suite):
#
#   packaging/test-cross.sh                        # arm64 and armhf in the cross-test profile
#   packaging/test-cross.sh --profile release      # the shipped profile (slower to build)
#
# 1. Builds the three .debs with packaging/build-deb.sh (amd64 in the release profile, as the
#    package test of `cargo test` does, so that build is shared).
# 2. Inspects each with dpkg-deb: the Architecture field, the architecture of the binary (`file`),
#    the units, the config as a conffile, the man page.
# 3. Runs each packaged binary, arm64 and armhf under qemu-user: `callmetrics run` on the local
#    default in a fresh folder, `send` of tests/fixtures/cross/calls.jsonl (times relative to now,
#    made absolute here once for all three), `metrics --json` by queue, agent, channel and all;
#    `kill -9`, a restart, and the same figures again. Every architecture's figures must equal
#    amd64's, byte for byte, and amd64's counts must match the fixture's own.
#
# Needs the Debian packages gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross
# libc6-dev-armhf-cross qemu-user file dpkg-dev, `rustup target add aarch64-unknown-linux-gnu
# armv7-unknown-linux-gnueabihf` and cargo-deb. Prints how long each build took.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

profile="cross-test"
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a Cargo profile name}"; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see packaging/test-cross.sh --help)" >&2; exit 2 ;;
  esac
done

fail() {
  echo "test-cross: FAILED: $*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null || fail "$1 is missing; install the Debian package $2 (apt-get install $2)"
}
need qemu-aarch64 qemu-user
need qemu-arm qemu-user
need file file
need dpkg-deb dpkg-dev
need perl perl
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
test -d /usr/aarch64-linux-gnu/lib || fail "/usr/aarch64-linux-gnu/lib is missing; install libc6-dev-arm64-cross"
test -d /usr/arm-linux-gnueabihf/lib || fail "/usr/arm-linux-gnueabihf/lib is missing; install libc6-dev-armhf-cross"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then kill -9 "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. Build --------------------------------------------------------------------------------

# arch: Debian architecture, Rust target (empty: this machine), profile, `file` description,
# the emulator that runs it.
archs=(amd64 arm64 armhf)
declare -A triple=([amd64]="" [arm64]=aarch64-unknown-linux-gnu [armhf]=armv7-unknown-linux-gnueabihf)
declare -A prof=([amd64]=release [arm64]="$profile" [armhf]="$profile")
declare -A elf=(
  [amd64]="ELF 64-bit LSB pie executable, x86-64"
  [arm64]="ELF 64-bit LSB pie executable, ARM aarch64"
  [armhf]="ELF 32-bit LSB pie executable, ARM, EABI5"
)
declare -A runner=(
  [amd64]=""
  [arm64]="qemu-aarch64 -L /usr/aarch64-linux-gnu"
  [armhf]="qemu-arm -L /usr/arm-linux-gnueabihf"
)
declare -A deb
for a in "${archs[@]}"; do
  args=(--profile "${prof[$a]}")
  [ -n "${triple[$a]}" ] && args+=(--target "${triple[$a]}")
  start=$(date +%s)
  out="$(packaging/build-deb.sh "${args[@]}")" || fail "packaging/build-deb.sh ${args[*]} failed"
  echo "test-cross: $a package built in $(($(date +%s) - start)) s (profile ${prof[$a]})"
  # cargo deb prints the path last: relative to the crate, or absolute under a CARGO_TARGET_DIR.
  deb[$a]="$(printf '%s\n' "$out" | awk 'NF { last = $0 } END { print last }')"
  case "${deb[$a]}" in /*) ;; *) deb[$a]="$root/${deb[$a]}" ;; esac
  test -f "${deb[$a]}" || fail "build-deb.sh ${args[*]} printed no package path last: $out"
done

# --- 2. Inspect ------------------------------------------------------------------------------

for a in "${archs[@]}"; do
  d="${deb[$a]}"
  case "$(basename "$d")" in
    callmetrics_*_"$a".deb) ;;
    *) fail "$d: the package's name does not end in _$a.deb" ;;
  esac
  got="$(dpkg-deb -f "$d" Architecture)"
  [ "$got" = "$a" ] || fail "$d: Architecture is '$got', not $a"
  depends="$(dpkg-deb -f "$d" Depends)"
  case "$depends" in
    *libc6*) ;;
    *) fail "$d: Depends ('$depends') does not name libc6" ;;
  esac
  x="$work/unpacked-$a"
  dpkg-deb -x "$d" "$x"
  desc="$(file -b "$x/usr/bin/callmetrics")"
  case "$desc" in
    "${elf[$a]}"*) ;;
    *) fail "$d: usr/bin/callmetrics is '$desc', not '${elf[$a]}'" ;;
  esac
  case "$desc" in
    *", stripped"*) ;;
    *) fail "$d: usr/bin/callmetrics is not stripped: $desc" ;;
  esac
  for unit in callmetrics.service callmetrics.socket callmetrics-admin.socket; do
    test -s "$x/lib/systemd/system/$unit" || test -s "$x/usr/lib/systemd/system/$unit" ||
      fail "$d: no $unit"
  done
  cmp -s "$x/etc/callmetrics/agent.toml" config/agent.toml ||
    fail "$d: etc/callmetrics/agent.toml is missing or differs from config/agent.toml"
  dpkg-deb -I "$d" conffiles | grep -qx /etc/callmetrics/agent.toml ||
    fail "$d: /etc/callmetrics/agent.toml is not a conffile"
  case "$(file -b "$x/usr/share/man/man1/callmetrics.1.gz")" in
    "gzip compressed data"*) ;;
    *) fail "$d: no gzip man page at usr/share/man/man1/callmetrics.1.gz" ;;
  esac
  echo "test-cross: $a package: $(basename "$d"), binary $(stat -c %s "$x/usr/bin/callmetrics") bytes, $desc" | cut -c1-160
done

# --- 3. Run ----------------------------------------------------------------------------------

# The fixture's times are milliseconds relative to now: 40 to 15 minutes ago, well inside the
# 1h window and past the 2 min wrapup timeout, so every call is folded and nothing depends on
# the minute the query runs in (no call is open: the real-time figures are zero).
now="$(date +%s%3N)"
perl -pe 's/"ts":(-\d+)/"\"ts\":" . ('"$now"' + $1)/ge' tests/fixtures/cross/calls.jsonl >"$work/calls.jsonl"
lines=$(wc -l <"$work/calls.jsonl")

cli() { # arch, folder, arguments…
  local a=$1 dir=$2
  shift 2
  (cd "$dir" && ${runner[$a]} "$work/unpacked-$a/usr/bin/callmetrics" "$@")
}
start_daemon() { # arch, folder
  local a=$1 dir=$2
  (cd "$dir" && exec ${runner[$a]} "$work/unpacked-$a/usr/bin/callmetrics" run >>"$dir/daemon.log" 2>&1) &
  daemon_pid=$!
  for _ in $(seq 1 300); do
    if cli "$a" "$dir" status >/dev/null 2>&1; then return 0; fi
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$dir/daemon.log" >&2; fail "$a: the daemon exited at start"; }
    sleep 0.2
  done
  cat "$dir/daemon.log" >&2
  fail "$a: the daemon did not answer status within 60 s"
}
# Waits until every call is folded (all handled calls counted), then writes the figures.
figures() { # arch, folder, output file
  local a=$1 dir=$2 out=$3 all=""
  for _ in $(seq 1 150); do
    all="$(cli "$a" "$dir" metrics --json --window 1h --by all)" || true
    case "$all" in
      *'"handled":'"$want_handled"','*) break ;;
    esac
    sleep 0.2
  done
  case "$all" in
    *'"handled":'"$want_handled"','*) ;;
    *) cat "$dir/daemon.log" >&2; fail "$a: the figures did not settle at $want_handled handled calls within 30 s: $all" ;;
  esac
  {
    echo "$all"
    for by in queue agent channel; do cli "$a" "$dir" metrics --json --window 1h --by "$by"; done
  } >"$out"
}

# Counted from the fixture itself: every call ends once, answered calls end (and are handled).
want_offered=$(grep -c '"type":"end"' "$work/calls.jsonl")
want_handled=$(grep -c '"type":"answer"' "$work/calls.jsonl")
want_abandoned=$(grep -c '"reason":"abandoned"' "$work/calls.jsonl")
want_overflow=$(grep -c '"reason":"timeout"' "$work/calls.jsonl")

for a in "${archs[@]}"; do
  dir="$work/run-$a"
  mkdir "$dir"
  start_daemon "$a" "$dir"
  replies="$(cli "$a" "$dir" send "$work/calls.jsonl")" || fail "$a: send exited with an error: $replies"
  oks=$(printf '%s\n' "$replies" | grep -cx '{"ok":true}' || true)
  [ "$oks" = "$lines" ] || fail "$a: $oks of $lines events acknowledged: $replies"
  figures "$a" "$dir" "$work/figures-$a.json"

  kill -9 "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
  start_daemon "$a" "$dir"
  figures "$a" "$dir" "$work/figures-$a-restarted.json"
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""

  cmp -s "$work/figures-$a.json" "$work/figures-$a-restarted.json" || {
    diff "$work/figures-$a.json" "$work/figures-$a-restarted.json" >&2 || true
    fail "$a: the figures after kill -9 and a restart differ from those before"
  }
  echo "test-cross: $a: $lines events acknowledged, figures settled, the same after kill -9 and a restart"
done

all_amd64="$(head -n 1 "$work/figures-amd64.json")"
for want in "offered:$want_offered" "answered:$want_handled" "handled:$want_handled" \
  "abandoned:$want_abandoned" "overflow:$want_overflow"; do
  case "$all_amd64" in
    *"\"${want%%:*}\":${want#*:},"*) ;;
    *) fail "amd64: the overall row does not have ${want%%:*} = ${want#*:} (counted in the fixture): $all_amd64" ;;
  esac
done
for a in arm64 armhf; do
  cmp -s "$work/figures-amd64.json" "$work/figures-$a.json" || {
    diff "$work/figures-amd64.json" "$work/figures-$a.json" >&2 || true
    fail "$a: metrics --json differs from amd64's"
  }
done
echo "test-cross: ok: arm64 and armhf figures equal amd64's (offered $want_offered, handled $want_handled, abandoned $want_abandoned, overflow $want_overflow)"
