#!/usr/bin/env bash
# A benchmark figure, not a test: ingest and query times of the amd64 binary run natively next to
# the arm64 (and armhf) binary run under qemu-user on the same machine.
#
#   packaging/bench-cross.sh [--profile release] [--calls 25000] [--queries 20]
#
# Takes the binaries cargo built in that profile (target/PROFILE/callmetrics and
# target/TRIPLE/PROFILE/callmetrics; build them first, e.g. with packaging/build-deb.sh). For each:
# starts `callmetrics run` on the local default in a fresh folder, times `send` of CALLS complete
# calls (start, answer, end, wrapup: 4 events each, over one connection, spread over the last 50
# minutes, 8 queues, 40 agents), then times `metrics --json --window 1h --by agent` QUERIES times
# (each a CLI process: under qemu that includes emulating the CLI's start). Prints events/s and ms
# per query. qemu-user translates every instruction, so the arm64 figure is a floor for real arm64
# hardware, not a prediction of it.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release calls=25000 queries=20
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --calls) calls="$2"; shift 2 ;;
    --queries) queries="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT

now="$(date +%s%3N)"
awk -v n="$calls" -v now="$now" 'BEGIN {
  for (i = 0; i < n; i++) {
    s = now - 3000000 + int(i * 2400000 / n); a = s + 1000 + (i * 7919) % 60000
    e = a + 30000 + (i * 104729) % 240000; w = e + (i * 31) % 30000
    printf "{\"type\":\"start\",\"call_id\":\"b%d\",\"queue\":\"q%d\",\"ts\":%.0f}\n", i, i % 8, s
    printf "{\"type\":\"answer\",\"call_id\":\"b%d\",\"agent\":\"a%d\",\"ts\":%.0f}\n", i, i % 40, a
    printf "{\"type\":\"end\",\"call_id\":\"b%d\",\"ts\":%.0f}\n", i, e
    printf "{\"type\":\"wrapup\",\"call_id\":\"b%d\",\"ts\":%.0f}\n", i, w
  }
}' >"$work/events.jsonl"
events=$((calls * 4))

bench() { # label, binary, emulator…
  local label=$1 bin="$PWD/$2"
  shift 2
  test -x "$bin" || { echo "$label: no binary at $bin (build it first)" >&2; return 0; }
  local dir="$work/$label"
  mkdir "$dir"
  (cd "$dir" && exec "$@" "$bin" run >"$dir/log" 2>&1) &
  pid=$!
  until (cd "$dir" && "$@" "$bin" status >/dev/null 2>&1); do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; echo "$label: the daemon exited" >&2; exit 1; }
    sleep 0.2
  done
  local t0 t1 t2
  t0=$(date +%s%N)
  (cd "$dir" && "$@" "$bin" send "$work/events.jsonl" >/dev/null)
  t1=$(date +%s%N)
  for _ in $(seq 1 "$queries"); do
    (cd "$dir" && "$@" "$bin" metrics --json --window 1h --by agent >/dev/null)
  done
  t2=$(date +%s%N)
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  awk -v l="$label" -v e="$events" -v i="$(((t1 - t0) / 1000))" -v q="$(((t2 - t1) / 1000))" -v n="$queries" \
    'BEGIN { printf "%-28s send %d events: %7.0f events/s   metrics --json --by agent: %7.1f ms a query\n", l, e, e / (i / 1e6), q / n / 1000 }'
}

dir=$profile
[ "$profile" = dev ] && dir=debug
bench "amd64 (native)" "target/$dir/callmetrics"
bench "arm64 (qemu-aarch64)" "target/aarch64-unknown-linux-gnu/$dir/callmetrics" qemu-aarch64 -L /usr/aarch64-linux-gnu
bench "armhf (qemu-arm)" "target/armv7-unknown-linux-gnueabihf/$dir/callmetrics" qemu-arm -L /usr/arm-linux-gnueabihf
