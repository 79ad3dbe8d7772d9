#!/bin/bash
# Instructions per transaction, counted by callgrind: the one CPU figure that
# the load of a shared two-core machine does not move.  bench/run.sh measures
# CPU time, which other work on the machine shifts by 20 % or more between
# runs; this counts the user-space instructions each pooler executes per
# transaction, PgBouncer's and sluice's, in the same run.
#
#   bench/instructions.sh [--clients 1|256] [--builtin tpcb-like] [--keep DIR]
#                         [--sluice PATH]...
#
# Each --sluice adds a binary to measure (default build/sluice; several: e.g.
# two commits side by side).  --clients 1 measures one client (issue 19's
# figure: `-c 1 -j 1`, `-t 500` and `-t 2500`) instead of 16; --clients 256
# (`-t 20` and `-t 60`) a queue of ~236 clients waiting for the pool's 20
# servers, where whatever walks the queue shows.  --builtin tpcb-like runs
# pgbench's default transaction (BEGIN, three UPDATEs, a SELECT, an INSERT,
# END: seven statements on one held server) instead of select-only, where
# what sluice does per statement inside a transaction shows.  --keep DIR
# keeps each run's callgrind.out there, for callgrind_annotate.  Run as root:
# Postgres (tests/harness/pg.sh, instance pg-instructions, stopped at the end)
# and the poolers run as the harness's unprivileged user.
#
# Method: every pooler runs under `valgrind --tool=callgrind` twice, once
# serving `pgbench -t 100` and once `-t 400` (16 clients, select-only, simple
# and extended protocol); the difference of the two totals, divided by the
# 16 x 300 transactions between them, is the cost of a transaction alone:
# startup, the 16 SCRAM logins and shutdown are the same in both and cancel
# out.  Kernel time (system calls) is not counted: run.sh covers that.
set -eu

clients=16 low=100 high=400 keep= builtin=select-only
args=()
while [ $# -gt 0 ]; do
  case $1 in
  --clients)
    clients=$2
    shift 2
    ;;
  --builtin)
    builtin=$2
    shift 2
    ;;
  --keep)
    mkdir -p "$2"
    keep=$(realpath "$2")
    shift 2
    ;;
  *)
    args+=("$1")
    shift
    ;;
  esac
done
case $clients in
16) ;;
# More transactions at one client, so the difference still spans 2,000.
1) low=500 high=2500 ;;
# Fewer at 256: 10,240 transactions between the two runs, under callgrind.
256) low=20 high=60 ;;
*)
  echo "instructions.sh: --clients is 1, 16 or 256" >&2
  exit 2
  ;;
esac
set -- "${args[@]+"${args[@]}"}"

counter=valgrind name=instructions port_offset=1000
# shellcheck source=bench/counts_setup.sh
. "$(dirname "$0")/counts_setup.sh"

# Total instructions (Ir) of one pooler run serving `pgbench -t $2 -M $3`.
measure() {
  local bin=$1 txns=$2 mode=$3 out=$work/callgrind.out pid i
  rm -f "$out"
  if [ "$(basename "$bin")" = pgbouncer ]; then
    set -- "$bin" "$work/pgbouncer.ini"
  else
    cp "$bin" "$work/sluice" && chown "$owner" "$work/sluice"
    set -- "$work/sluice" "$work/sluice.ini"
  fi
  runuser -u "$owner" -- valgrind --tool=callgrind --callgrind-out-file="$out" "$@" \
    >"$work/pooler.log" 2>&1 &
  pid=$!
  # Ready when it listens.  Not a login: a SCRAM login costs millions of
  # instructions, and a probe that logs in a varying number of times would
  # differ between the two runs by more than what is measured.
  for i in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/pooler.log" >&2; exit 1; }
    sleep 0.1
  done
  "$pgbin/pgbench" -n -b "$builtin" -M "$mode" -c "$clients" -j "$((clients < 2 ? 1 : 2))" -t "$txns" \
    -h 127.0.0.1 -p "$port" -U bench bench >"$work/pgbench.log" 2>&1 ||
    {
      # The port is in the kernel's ephemeral range: something else on the
      # machine may hold it, answer the probe, and keep the pooler from listening.
      cat "$work/pgbench.log" >&2
      grep -v '^==' "$work/pooler.log" | tail -n 3 >&2
      exit 1
    }
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -z "$keep" ] || cp "$out" "$keep/$(basename "$bin")-$builtin-$mode-$txns.out"
  awk '/^summary:/ {print $2}' "$out"
}

printf '%-10s %-40s %14s %10s\n' mode pooler "instr/txn" "/pgbouncer"
for mode in simple extended; do
  pgb=0
  for target in "$(command -v pgbouncer)" "${sluices[@]}"; do
    lo=$(measure "$target" "$low" "$mode")
    hi=$(measure "$target" "$high" "$mode")
    per=$(((hi - lo) / (clients * (high - low))))
    [ "$pgb" -gt 0 ] || pgb=$per
    printf '%-10s %-40s %14d %9.2fx\n' "$mode" "$target" "$per" \
      "$(awk -v a="$per" -v b="$pgb" 'BEGIN {print a / b}')"
  done
done
rm -rf "$work"
