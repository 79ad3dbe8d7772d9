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

# One throwaway Postgres and Redis per test pass, NAME and NAME-asan: the
# plain and the sanitizer passes run at the same time (below), and a test
# counts the backends of its own cluster.  test_topology.c makes NAME's
# standby (NAME-standby) and a pair of its own (NAME-fo).
stop_servers() {
  local name
  for name in pg-test pg-test-asan; do
    SLUICE_PG_NAME=$name tests/harness/pg.sh stop
    SLUICE_PG_NAME=$name-standby tests/harness/pg.sh stop
    SLUICE_REDIS_NAME=redis-${name#pg-} tests/harness/redis.sh stop
  done
}
trap stop_servers EXIT

# Starts the cluster and the Redis of one pass and exports their variables.
# Without a Redis the shared-limiter tests skip; everything else still runs.
servers_for() {
  export SLUICE_PG_NAME=pg-$1 SLUICE_REDIS_NAME=redis-$1
  tests/harness/pg.sh start >/dev/null
  set -a
  # shellcheck source=/dev/null
  . ".run/pg-$1.env"
  set +a
  if tests/harness/redis.sh start >/dev/null; then
    set -a
    # shellcheck source=/dev/null
    . ".run/redis-$1.env"
    set +a
  else
    echo "run.sh: no Redis; the limiter = redis tests will skip" >&2
  fi
}

status=0
if [ "$#" -ne 0 ]; then
  (servers_for test && meson test -C build --print-errorlogs --num-processes 2 "$@") || status=$?
  phase_done "meson test"
  exit "$status"
fi

# With no arguments the whole suite runs twice, against the build above and
# against an AddressSanitizer + UndefinedBehaviorSanitizer build (DESIGN §9):
# any memory error or UB aborts sluice, which fails the test that triggered
# it.  The two passes run at once, each with its own servers: the integration
# tests mostly wait on sockets, so together they take little longer than the
# sanitizer pass alone (on the 2-core CI machine, 531 and 820 s one after the
# other, 1022 s at once).  The plain pass prints as it goes; the sanitizer pass's output
# follows it once both are done (in full in build-asan/meson-logs/).
if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Dbuildtype=debug
fi
meson compile -C build-asan
phase_done "the ASan+UBSan build"
asan_out=build-asan/meson-logs/run-sh-output.txt
mkdir -p build-asan/meson-logs
(
  servers_for test-asan
  ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3
) >"$asan_out" 2>&1 &
asan_pid=$!
(servers_for test && meson test -C build --print-errorlogs --num-processes 2) || status=$?
asan_status=0
wait "$asan_pid" || asan_status=$?
echo "run.sh: the ASan+UBSan pass:" >&2
cat "$asan_out"
[ "$asan_status" -eq 0 ] || status=$asan_status
phase_done "meson test, plain and ASan+UBSan at once"
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
exit "$status"
