#!/bin/bash
# System calls per transaction, counted by strace: PgBouncer and sluice in one
# run, 1 client and 16, simple and extended protocol, select-only (or tpcb-like).
#
#   bench/syscalls.sh [--builtin tpcb-like] [--sluice PATH]...   (default: build/sluice)
#
# --builtin tpcb-like counts pgbench's default transaction (seven statements
# on one held server) instead of select-only.
#
# Run as root: Postgres (tests/harness/pg.sh, instance pg-syscalls, stopped at
# the end) and the poolers run as the harness's unprivileged user.
#
# Method: each pooler runs under `strace -f -c` twice, serving `pgbench -t 100`
# and `-t 1100` per client; the difference of the two counts over the
# transactions between them is the cost of a transaction alone (start,
# logins and shutdown cancel out).  At one client the figures are exact (a
# transaction is the same sequence every time); with 16 clients they depend
# on how many clients one loop turn serves, which strace's slowdown and the
# machine's load move: compare them within one run only.  The wake-ups of a
# pooler are its epoll_wait calls.  Times are not reported: on a shared
# machine they are noise, counts are not.
set -eu

builtin=select-only
args=()
while [ $# -gt 0 ]; do
  case $1 in
  --builtin)
    builtin=$2
    shift 2
    ;;
  *)
    args+=("$1")
    shift
    ;;
  esac
done
set -- "${args[@]+"${args[@]}"}"

counter=strace name=syscalls port_offset=2000
# shellcheck source=bench/counts_setup.sh
. "$(dirname "$0")/counts_setup.sh"

# strace -c table of one pooler run serving `pgbench -c $2 -t $3 -M $4`:
# lines "syscall calls".
measure() {
  local bin=$1 clients=$2 txns=$3 mode=$4 out=$work/strace.out pid i
  rm -f "$out"
  if [ "$(basename "$bin")" = pgbouncer ]; then
    set -- "$bin" "$work/pgbouncer.ini"
  else
    cp "$bin" "$work/sluice" && chown "$owner" "$work/sluice"
    set -- "$work/sluice" "$work/sluice.ini"
  fi
  # setpriv execs in place: the pid is strace's, whose only child is the pooler.
  setpriv --reuid="$owner" --regid="$owner" --init-groups -- \
    strace -f -c -o "$out" "$@" >"$work/pooler.log" 2>&1 &
  pid=$!
  for i in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/pooler.log" >&2; exit 1; }
    sleep 0.1
  done
  "$pgbin/pgbench" -n -b "$builtin" -M "$mode" -c "$clients" -j "$((clients < 2 ? 1 : 2))" -t "$txns" \
    -h 127.0.0.1 -p "$port" -U bench bench >"$work/pgbench.log" 2>&1 ||
    { cat "$work/pgbench.log" >&2; exit 1; }
  # SIGTERM to the pooler, not to strace: strace then writes its table.
  kill -TERM "$(pgrep -P "$pid")"
  wait "$pid" || true
  awk '$NF != "total" && $(NF-1) ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ {print $NF, $4}' "$out"
}

per_txn() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
lo, hi, n = sys.argv[1], sys.argv[2], float(sys.argv[3])
def parse(text):
    d = {}
    for line in text.splitlines():
        name, calls = line.split()
        d[name] = int(calls)
    return d
a, b = parse(lo), parse(hi)
d = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
groups = {
    "epoll_wait": ["epoll_wait"],
    "recv": ["recvfrom", "recvmsg", "read"],
    "send": ["sendto", "sendmsg", "writev", "write"],
    "epoll_ctl": ["epoll_ctl"],
}
row = {g: sum(d.get(k, 0) for k in ks) for g, ks in groups.items()}
named = {k for ks in groups.values() for k in ks}
row["other"] = sum(v for k, v in d.items() if k not in named)
row["total"] = sum(d.values())
print(" ".join("%9.2f" % row[k] for k in ("epoll_wait", "recv", "send", "epoll_ctl", "other",
                                           "total")))
PY
}

printf '%-9s %-7s %-36s %9s %9s %9s %9s %9s %9s\n' mode clients pooler epoll_wait recv send \
  epoll_ctl other total
for mode in simple extended; do
  for clients in 1 16; do
    for target in "$(command -v pgbouncer)" "${sluices[@]}"; do
      low=$(measure "$target" "$clients" 100 "$mode")
      high=$(measure "$target" "$clients" 1100 "$mode")
      printf '%-9s %-7s %-36s %s\n' "$mode" "$clients" "$target" \
        "$(per_txn "$low" "$high" $((clients * 1000)))"
    done
  done
done
rm -rf "$work"
