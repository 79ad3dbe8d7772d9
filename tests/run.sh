#!/bin/bash
# README command 2: installs what is missing, builds, starts a throwaway
# Postgres 15 cluster and a throwaway Redis (for limiter = redis), runs every
# test (unit and integration) and stops both again.  Arguments go to `meson test`, e.g. `tests/run.sh --suite unit`
# or `tests/run.sh --suite integration pgbench`.
#
# The tests get a cluster of their own (.run/pg-test), so a run neither counts
# the backends of the quickstart's sluice nor stops the quickstart's Postgres.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"

# How long each phase took, so that a slow CI run says where its time went.
phase_start=$SECONDS
phase_done() {
  echo "run.sh: $1 took $((SECONDS - phase_start)) s" >&2
  phase_start=$SECONDS
}

tests/harness/deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
meson compile -C build
phase_done "packages and the build"

export SLUICE_PG_NAME=pg-test
export SLUICE_REDIS_NAME=redis-test
# test_topology.c makes pg-test's standby (pg-test-standby) and its own pair.
trap 'tests/harness/pg.sh stop; SLUICE_PG_NAME=pg-test-standby tests/harness/pg.sh stop; tests/harness/redis.sh stop' EXIT
tests/harness/pg.sh start >/dev/null
set -a
# shellcheck source=/dev/null
. .run/pg-test.env
set +a
# Without a Redis the shared-limiter tests skip; everything else still runs.
if tests/harness/redis.sh start >/dev/null; then
  set -a
  # shellcheck source=/dev/null
  . .run/redis-test.env
  set +a
else
  echo "run.sh: no Redis; the limiter = redis tests will skip" >&2
fi

status=0
meson test -C build --print-errorlogs --num-processes 2 "$@" || status=$?
phase_done "meson test"

# With no arguments the whole suite runs a second time against an
# AddressSanitizer + UndefinedBehaviorSanitizer build (DESIGN §9): any memory
# error or UB aborts sluice, which fails the test that triggered it.
if [ "$#" -eq 0 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debug
  fi
  meson compile -C build-asan
  ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 || status=$?
  phase_done "the ASan+UBSan build and its meson test"
  # Then each libFuzzer target for 20 seconds from its seeds (docs/fuzzing.md),
  # enough to catch a parser change that breaks on a known input or nearby.
  tests/fuzz/run.sh 20 || status=$?
  phase_done "fuzzing"
  # Then a 60 s fault and soak run of the binary built above (bench/README.md,
  # "Soak"): Postgres killed and stopped, clients gone, hostile probes, and at
  # the end nothing lost, hung or leaked.  It signals Postgres, so root only.
  if [ "$(id -u)" -eq 0 ]; then
    bench/soak.sh --duration 60 --sluice build/sluice || status=$?
    phase_done "bench/soak.sh"
  else
    echo "run.sh: bench/soak.sh skipped (needs root)" >&2
  fi
fi
exit "$status"
