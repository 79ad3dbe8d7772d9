#!/bin/bash
# Failover through sluice (docs/topology.md): a primary and a streaming
# standby (tests/harness/pg.sh), sluice in front with
#   rw = host=127.0.0.1,127.0.0.1 port=PRIMARY,STANDBY target_session_attrs=read-write
# and writers that each open a connection and INSERT, over and over.  The
# primary is killed with kill -9, the standby promoted with pg_ctl promote,
# and nothing else is touched: no reload, no configuration change.
#
#   bench/failover.sh [RUNS]     (default 3)
#
# Prints per run: the time from pg_ctl promote (its start and its return)
# to the first successful write, from the kill to it, and the errors the
# writers saw after the kill, grouped by message.  Needs a built sluice in build/ and Postgres 15
# (tests/harness/deps.sh).  Everything started here is stopped on exit.
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd -P)
runs=${1:-3}
writers=4
name="pg-bench-failover"
sluice=$root/build/sluice
pg=$root/tests/harness/pg.sh
work=$(mktemp -d /tmp/sluice-failover.XXXXXX)
sluice_pid=
writer_pids=()

[ -x "$sluice" ] || { echo "failover.sh: build sluice first (meson setup build && ninja -C build)" >&2; exit 1; }

cleanup() {
  for p in "${writer_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "$sluice_pid" ] || kill -INT "$sluice_pid" 2>/dev/null || true
  SLUICE_PG_NAME=$name-standby "$pg" destroy >/dev/null 2>&1 || true
  SLUICE_PG_NAME=$name "$pg" destroy >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { echo "$EPOCHREALTIME"; }

# One writer: a new connection and one INSERT per try, each logged as
# "TIME ok" or "TIME err MESSAGE" (the first line libpq or Postgres gave).
writer() {
  local url=$1 log=$2 psql=$3 msg
  while :; do
    if msg=$("$psql" -X -q -v VERBOSITY=verbose "$url" -c "INSERT INTO failover_t VALUES (1)" 2>&1); then
      echo "$(now) ok" >>"$log"
    else
      msg=$(echo "$msg" | grep -m1 -E 'ERROR|FATAL|error' | sed -E 's/.*(ERROR|FATAL): *//; s/port [0-9]+/port N/g; s/in [0-9]+ ms/in N ms/')
      echo "$(now) err $msg" >>"$log"
    fi
  done
}

run_once() {
  local n=$1 env sport pport port url psql t_kill t_promote t_promoted first
  SLUICE_PG_NAME=$name-standby "$pg" destroy >/dev/null 2>&1 || true
  SLUICE_PG_NAME=$name "$pg" destroy >/dev/null 2>&1 || true
  env=$(SLUICE_PG_NAME=$name "$pg" start)
  pport=$(echo "$env" | sed -n "s/^SLUICE_TEST_PGPORT='\(.*\)'/\1/p")
  psql=$(echo "$env" | sed -n "s/^SLUICE_TEST_PGBIN='\(.*\)'/\1/p")/psql
  sport=$(SLUICE_PG_NAME=$name "$pg" standby | sed -n "s/^SLUICE_TEST_STANDBY_PORT='\(.*\)'/\1/p")
  port=$(free_port)
  printf '"app" "app-secret"\n' >"$work/userlist.txt"
  cat >"$work/sluice.ini" <<EOF
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_file = $work/userlist.txt
log_level = warn
server_connect_timeout = 2s
server_breaker_backoff = 200ms
server_breaker_backoff_max = 1s
[databases]
rw = host=127.0.0.1,127.0.0.1 port=$pport,$sport dbname=app target_session_attrs=read-write
EOF
  "$sluice" "$work/sluice.ini" >"$work/sluice-$n.log" 2>&1 &
  sluice_pid=$!
  url="postgres://app:app-secret@127.0.0.1:$port/rw"
  for _ in $(seq 100); do "$psql" -X -q "$url" -c "CREATE TABLE IF NOT EXISTS failover_t (x int)" 2>/dev/null && break; sleep 0.1; done
  # The standby must have replayed the table before the primary dies.
  for _ in $(seq 100); do
    [ "$("$psql" -X -qAt "postgres://app:app-secret@127.0.0.1:$sport/app" -c "SELECT to_regclass('failover_t') IS NOT NULL" 2>/dev/null)" = t ] && break
    sleep 0.1
  done
  : >"$work/w-$n.log"
  writer_pids=()
  for _ in $(seq "$writers"); do
    writer "$url" "$work/w-$n.log" "$psql" &
    writer_pids+=($!)
  done
  sleep 2
  t_kill=$(now)
  SLUICE_PG_NAME=$name "$pg" kill
  sleep 1
  t_promote=$(now)
  SLUICE_PG_NAME=$name "$pg" promote
  t_promoted=$(now)
  first=
  for _ in $(seq 600); do
    first=$(awk -v t="$t_promote" '$1 > t && $2 == "ok" {print $1; exit}' "$work/w-$n.log")
    [ -n "$first" ] && break
    sleep 0.1
  done
  sleep 1
  for p in "${writer_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${writer_pids[@]}" 2>/dev/null || true
  writer_pids=()
  kill -INT "$sluice_pid" 2>/dev/null || true
  wait "$sluice_pid" 2>/dev/null || true
  sluice_pid=
  echo "### run $n"
  if [ -z "$first" ]; then
    echo "no successful write within 60 s of the promotion"
  else
    awk -v k="$t_kill" -v p="$t_promote" -v d="$t_promoted" -v f="$first" 'BEGIN {
      printf "pg_ctl promote took %.0f ms (-w: until the standby accepts writes)\n", (d - p) * 1000
      printf "pg_ctl promote started -> first successful write: %.0f ms\n", (f - p) * 1000
      printf "pg_ctl promote returned -> first successful write: %.0f ms\n", (f - d) * 1000
      printf "kill -9 -> first successful write: %.0f ms\n", (f - k) * 1000 }'
  fi
  awk -v k="$t_kill" '$1 < k && $2 == "ok" {b++} $1 >= k && $2 == "ok" {a++}
    END {printf "writes ok: %d before the kill, %d after\n", b, a}' "$work/w-$n.log"
  echo "errors seen by the writers (count, message):"
  awk -v k="$t_kill" '$1 >= k && $2 == "err" {$1 = ""; $2 = ""; sub(/^  /, ""); print}' "$work/w-$n.log" |
    sort | uniq -c | sort -rn | head -8
  echo
}

for n in $(seq "$runs"); do run_once "$n"; done
