#!/bin/bash
# Builds the libFuzzer targets (clang, ASan + UBSan, in build-fuzz) and runs
# each for a bounded time: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 20 seconds, every target).  docs/fuzzing.md describes the targets.
#
# Each target starts from its seeds in tests/fuzz/corpus/<target>, copied to
# build-fuzz/fuzz-corpus/<target> so that what the fuzzer adds never lands in
# the repository.  A crash, leak, sanitizer report, timeout (-timeout) or
# memory blow-up (-rss_limit_mb) fails the run; the input that caused it is
# kept in build-fuzz/fuzz-artifacts/<target>/.  Running it again starts over
# from the seeds, so two runs do the same work.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd -P)
cd "$root"

seconds=${1:-20}
case $seconds in
'' | *[!0-9]* | 0)
  echo "usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
  ;;
esac
shift || true
targets=${*:-startup frames scram config auth_file hba}

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is needed (tests/harness/deps.sh installs it)" >&2
  exit 1
fi
build="build-fuzz"
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Dtests=false \
    -Dbuildtype=debugoptimized >/dev/null
fi
meson compile -C "$build" >/dev/null

# The fuzzers abort on the first report; a leak counts like a crash.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

status=0
summary=""
for t in $targets; do
  exe=$build/tests/fuzz/fuzz_$t
  seeds=tests/fuzz/corpus/$t
  if [ ! -x "$exe" ] || [ ! -d "$seeds" ]; then
    echo "fuzz: unknown target '$t'" >&2
    exit 2
  fi
  work=$build/fuzz-corpus/$t
  artifacts=$build/fuzz-artifacts/$t
  log=$build/fuzz-$t.log
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts"
  cp "$seeds"/* "$work"/
  rc=0
  # stdin is /dev/null: nothing a target opens may wait on a terminal.
  "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" </dev/null >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
    result="ok"
  else
    result="FAILED (exit $rc; log $log; input in $artifacts/)"
    status=1
    grep -E '^(==[0-9]+==|SUMMARY|.*invariant failed|.*runtime error)' "$log" | head -n 20 >&2 ||
      tail -n 20 "$log" >&2
  fi
  line=$(printf '%-10s %12s runs in %ss, corpus %s files: %s' "$t" "${runs:-?}" "$seconds" \
    "$(find "$work" -type f | wc -l)" "$result")
  echo "fuzz: $line"
  summary="$summary$line"$'\n'
done
printf '\nfuzz summary:\n%s' "$summary"
exit "$status"
