#!/usr/bin/env bash
# Runs the fuzz targets one at a time and prints, per target, the executions, the rate and the
# crashes found.
#
#   fuzz/run.sh --smoke [TARGET...]   each target for 40 s (CI)
#   fuzz/run.sh [TARGET...]           each target for 10 000 000 executions
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install --locked cargo-fuzz`). New corpus
# entries go to fuzz/target/work/TARGET (not committed); the seeds in fuzz/corpus/TARGET are only
# read. A crash stops its target, leaves the input in fuzz/artifacts/TARGET/ and makes the script
# exit 1 after the other targets have run. The table is also written to fuzz/target/last-run.md.
#
# Built without a sanitizer: the crate forbids unsafe code, so AddressSanitizer would mostly
# watch the dependencies' unsafe code at about half the rate; overflow checks and debug
# assertions stay on (cargo fuzz's default).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
if [[ "${1:-}" == "--smoke" ]]; then
  mode=smoke
  shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(json_line msgpack_frame control_message config_text)
fi
case $mode in
  smoke) limit=(-max_total_time="${FUZZ_SMOKE_SECS:-40}") ;;
  full) limit=(-runs="${FUZZ_RUNS:-10000000}") ;;
esac

fuzz=(cargo +nightly fuzz)
# One build of every target, before any of them runs.
"${fuzz[@]}" build --sanitizer none

mkdir -p fuzz/target
table=fuzz/target/last-run.md
{
  echo "| target | executions | exec/s | crashes | seconds |"
  echo "|---|---:|---:|---:|---:|"
} > "$table"
failed=0
for t in "${targets[@]}"; do
  work="fuzz/target/work/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="fuzz/target/$t.log"
  echo "== $t ($mode: ${limit[*]})"
  start=$(date +%s)
  set +e
  "${fuzz[@]}" run --sanitizer none "$t" "$work" "fuzz/corpus/$t" -- \
    "${limit[@]}" -timeout=10 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
    >"$log" 2>&1
  rc=$?
  set -e
  secs=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  crashes=0
  if [[ $rc -ne 0 ]]; then
    crashes=1
    failed=1
    grep -E "panicked|SUMMARY|Test unit written" "$log" || tail -n 20 "$log"
  fi
  echo "$t: ${runs:-?} executions, ${rate:-?} exec/s, $crashes crashes, ${secs}s"
  echo "| $t | ${runs:-?} | ${rate:-?} | $crashes | $secs |" >> "$table"
done
echo
cat "$table"
exit $failed
