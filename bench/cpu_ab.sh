#!/bin/bash
# CPU time per transaction of two or more sluice builds, side by side: the
# builds take turns, round after round, so that the machine's drift falls on
# all of them alike.  bench/run.sh compares sluice with PgBouncer; this
# compares a change with what came before it.
#
#   bench/cpu_ab.sh --sluice OLD --sluice NEW [--sluice ...]
#
# Environment: CPU_AB_CLIENTS (default 256), CPU_AB_ROUNDS (5), CPU_AB_SECONDS
# (10).  Each run: a fresh sluice (workers = 1, pool 20, bench/counts_setup.sh)
# serving `pgbench -n -S -c CLIENTS -j 2 -T SECONDS`; sluice's user and system
# time (/proc/PID/stat) over the whole pgbench run, divided by the
# transactions pgbench reports.  The logins are in it, the same for every
# build.  Prints each run, then the median of each build.  Run as root.
set -eu

clients=${CPU_AB_CLIENTS:-256} rounds=${CPU_AB_ROUNDS:-5} seconds=${CPU_AB_SECONDS:-10}
counter=pgbench name=cpu_ab port_offset=1100
# shellcheck source=bench/counts_setup.sh
. "$(dirname "$0")/counts_setup.sh"
[ ${#sluices[@]} -ge 2 ] || { echo "cpu_ab.sh: give two --sluice builds or more" >&2; exit 2; }
hz=$(getconf CLK_TCK)

cpu_ticks() { # user and system ticks of PID
  awk '{print $14, $15}' "/proc/$1/stat"
}

# One run of build $1: prints "cpu_us user_us" per transaction.
run_one() {
  local bin=$1 pid u0 s0 u1 s1 txns
  cp "$bin" "$work/sluice" && chown "$owner" "$work/sluice"
  runuser -u "$owner" -- "$work/sluice" "$work/sluice.ini" 2>"$work/sluice.log" &
  for _ in $(seq 100); do
    pid=$(pgrep -P $! -x sluice || true)
    [ -n "$pid" ] && "$pgbin/psql" -X -h 127.0.0.1 -p "$port" -U bench -Atc 'select 1' bench \
      >/dev/null 2>&1 && break
    sleep 0.1
  done
  [ -n "$pid" ] || { tail -n 3 "$work/sluice.log" >&2; exit 1; }
  read -r u0 s0 < <(cpu_ticks "$pid")
  "$pgbin/pgbench" -n -S -c "$clients" -j 2 -T "$seconds" -h 127.0.0.1 -p "$port" -U bench \
    bench >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
  read -r u1 s1 < <(cpu_ticks "$pid")
  kill -INT "$pid"
  wait || true
  txns=$(awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}' \
    "$work/pgbench.log")
  awk -v c=$((u1 + s1 - u0 - s0)) -v u=$((u1 - u0)) -v t="$txns" -v hz="$hz" \
    'BEGIN {printf "%.2f %.2f\n", c * 1e6 / hz / t, u * 1e6 / hz / t}'
}

declare -A all=()
printf '%-6s %-50s %12s %12s\n' round sluice "cpu µs/txn" "user µs/txn"
for round in $(seq "$rounds"); do
  for s in "${sluices[@]}"; do
    read -r cpu user < <(run_one "$s")
    all[$s]="${all[$s]:-} $cpu"
    printf '%-6s %-50s %12s %12s\n' "$round" "$s" "$cpu" "$user"
  done
done
for s in "${sluices[@]}"; do
  # shellcheck disable=SC2086 # one number per word
  printf 'median %-50s %12s\n' "$s" "$(printf '%s\n' ${all[$s]} | sort -n |
    awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')"
done
rm -rf "$work"
