#!/bin/bash
# sluice benchmark: direct Postgres, PgBouncer and sluice in one run.
#
#   bench/run.sh [--quick] [--keep-logs] [--workers LIST] [--ref REV | --sluice PATH]
#
# Starts a throwaway Postgres 15, PgBouncer and sluice with equal settings
# (transaction pooling, pool size 20, SCRAM clients, TCP on 127.0.0.1), then
# runs each scenario against the three targets in turn, so that drift on a
# shared machine hits all three alike, and ends with an idle-client test on the
# two poolers.  Everything started here is stopped on exit.
#
# Output, in bench/out/: results.md (also printed), results.json,
# tps_p99.png, runs.jsonl (one line per run, what the report is built from)
# and logs/ (pgbench stdout/stderr, Postgres, PgBouncer and sluice logs).
#
# --quick      a smoke run of about two minutes: short runs, scale 1, 1,000
#              idle clients; the figures are noisy, the failures are real
# --keep-logs  keep pgbench's per-transaction logs (bench/out/logs/*.<pid>)
# --ref REV    benchmark sluice as committed at REV (git archive into
#              bench/out/src-ref), not the working tree: the figures then
#              name one commit even while the tree is being edited
# --sluice P   benchmark the sluice binary P as it is, building nothing
# --workers L  sluice worker counts to sweep (default "1 2 auto", auto = one
#              per core; also SLUICE_BENCH_WORKERS): "sluice" is always
#              workers = 1, every other count is target sluice_wN, run in the
#              throughput scenarios (select_c64, select_c256, extended_c64)
#              and reported with its TPS per pooler core
#
# SLUICE_BENCH_IDLE_N sets the number of idle clients (default 10,000; 1,000
# with --quick).  The descriptor limits are raised to fit, as far as the hard
# limit allows (the script says so and stops when it cannot); past 25,000
# clients they connect to several loopback addresses (127.0.0.1, .2, ...),
# because one source and destination address pair has only about 28,000
# ephemeral ports.
#
# Needs: root (Postgres and PgBouncer then run as the user sluicepg) or a
# user who may run them; postgresql-15, pgbouncer, libpq-dev, pkg-config,
# python3, gnuplot-nox, meson and ninja for sluice itself.
set -euo pipefail
# SLUICE_BENCH_TRACE=1: trace every command with a timestamp, to see where
# the time of a run goes.
if [ -n "${SLUICE_BENCH_TRACE:-}" ]; then
  PS4='+ $EPOCHREALTIME '
  set -x
fi

# C: $EPOCHREALTIME and awk must print a decimal point.
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd -P)
bench=$root/bench
out=$bench/out
logs=$out/logs
pgbin=${SLUICE_BENCH_PGBIN:-/usr/lib/postgresql/15/bin}
pgbouncer_bin=${SLUICE_BENCH_PGBOUNCER:-/usr/sbin/pgbouncer}
pguser=sluicepg
command_line="bench/run.sh${*:+ $*}"

mode=full
keep_logs=0
ref=
sluice_bin=
workers_list=${SLUICE_BENCH_WORKERS:-1 2 auto}
while [ $# -gt 0 ]; do
  case $1 in
  --quick) mode=quick ;;
  --workers)
    workers_list=${2:?--workers needs a list such as "1 2 auto"}
    shift
    ;;
  --keep-logs) keep_logs=1 ;;
  --ref)
    ref=${2:?--ref needs a revision}
    shift
    ;;
  --sluice)
    sluice_bin=${2:?--sluice needs a path}
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "run.sh: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
  esac
  shift
done

# Per run: once all clients are logged in, a warmup before the measured
# window, and a tail after it so that pgbench's disconnects stay out of it.
if [ "$mode" = quick ]; then
  warmup=0.5 duration=2 tail=0.5 scale=1 idle_n=1000 idle_timeout=60
else
  # idle_timeout bounds the worst case: PgBouncer derives the SCRAM keys at
  # every login (about 3 ms of CPU), which takes it 2 minutes for 10,000
  # clients on a quiet machine and much longer on a loaded one.
  warmup=2 duration=8 tail=1 scale=10 idle_n=10000 idle_timeout=180
fi
idle_n=${SLUICE_BENCH_IDLE_N:-$idle_n}
# SCRAM logins run at a few hundred a second on a loaded machine.
idle_timeout=$((idle_timeout > idle_n / 50 ? idle_timeout : idle_n / 50))
# The same in microseconds, for the shell's integer arithmetic.
read -r warmup_us duration_us tail_us < <(awk -v w="$warmup" -v d="$duration" -v t="$tail" \
  'BEGIN { printf "%d %d %d\n", w * 1e6, d * 1e6, t * 1e6 }')
pool_size=20
max_client_conn=$((idle_n + 1000 > 20000 ? idle_n + 1000 : 20000))
# Loopback addresses the poolers listen on and the idle clients spread over.
nhosts=$(((idle_n + 24999) / 25000))
listen_hosts=127.0.0.1
for ((h = 2; h <= nhosts; h++)); do listen_hosts+=",127.0.0.$h"; done

# Worker counts swept besides workers = 1 (the "sluice" target), deduplicated.
sweep_workers=()
for w in $workers_list; do
  [ "$w" = auto ] && w=$(nproc)
  [[ $w =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: bad worker count $w" >&2; exit 2; }
  [ "$w" = 1 ] && continue
  [[ " ${sweep_workers[*]} " == *" $w "* ]] || sweep_workers+=("$w")
done
sweep_scenarios=" select_c64 select_c256 extended_c64 "
declare -A sweep_pid=() sweep_port=()

# name, clients, pgbench options.  Ordered as in analyze.py's report.
scenarios=(
  "select_c1 1 -S -M simple"
  "select_c16 16 -S -M simple"
  "select_c64 64 -S -M simple"
  "select_c256 256 -S -M simple"
  "extended_c64 64 -S -M extended"
  "extended_c256 256 -S -M extended"
  "prepared_c64 64 -S -M prepared"
  "tpcb_c16 16 -M simple"
  "storm_c16 16 -S -M simple -C"
)

say() {
  echo "run.sh: $*" >&2
}

die() {
  say "$*"
  exit 1
}

is_root() {
  [ "$(id -u)" -eq 0 ]
}

# Runs a command as the user that owns Postgres and the poolers.  setpriv
# execs in place, where runuser would fork and wait: see spawn_as_pg.
as_pg() {
  if is_root; then
    (cd / && exec setpriv --reuid="$pguser" --regid="$pguser" --init-groups -- "$@")
  else
    (cd / && exec "$@")
  fi
}

# Starts a daemon in the background as that user; its pid is left in
# $spawned.  The subshell execs, so the pid is the daemon's, not a wrapper's.
spawn_as_pg() {
  if is_root; then
    (cd / && exec setpriv --reuid="$pguser" --regid="$pguser" --init-groups -- "$@") &
  else
    (cd / && exec "$@") &
  fi
  spawned=$!
}

# The probes below use shell builtins only.  With pgbench, Postgres and a
# pooler saturating two cores, every fork waits for a CPU, often for a good
# part of a second: a CPU sample taken by a forked sed would be that far from
# the timestamp it is paired with.

# A zombie still has a /proc entry; it counts as dead.
is_alive() {
  local line
  [ -n "$1" ] || return 1
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  line=${line##*) }
  [ "${line%% *}" != Z ]
}

hz=$(getconf CLK_TCK)

# Sets $cpu to the user+system CPU of process $1 in microseconds (-1 when
# it is not running) and $at to the time of the reading, in seconds.
# /proc/PID/stat of the main thread sums all threads, which matters for
# sluice's workers.
read_cpu() {
  local line f
  at=$EPOCHREALTIME
  cpu=-1
  is_alive "$1" || return 0
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
  # After "pid (comm) ", utime and stime are the 12th and 13th fields.
  read -r -a f <<<"${line##*) }"
  cpu=$(((f[11] + f[12]) * 1000000 / hz))
}

# Sets $rss to VmRSS of process $1 in kB and $rss_anon to its RssAnon (the
# heap and stacks, without the pages of code and libraries it has touched),
# or -1.  Tried three times: one reading in a full run once came back empty
# from a live process.
read_rss() {
  local key value rest
  rss=-1 rss_anon=-1
  for _ in 1 2 3; do
    is_alive "$1" || return 0
    {
      while read -r key value rest; do
        case $key in
        VmRSS:) rss=$value ;;
        RssAnon:)
          rss_anon=$value
          return 0
          ;;
        esac
      done <"/proc/$1/status"
    } 2>/dev/null || true
  done
}

# Sleeps until the time $1, in microseconds since the epoch.
sleep_until_us() {
  local left frac
  left=$(($1 - ${EPOCHREALTIME/./}))
  if [ "$left" -gt 0 ]; then
    printf -v frac '%06d' $((left % 1000000))
    sleep "$((left / 1000000)).$frac"
  fi
}

# Local ports of the established TCP connections that process $1 holds to
# port $2, one a line: its socket inodes matched against /proc/net/tcp.
# (ss -p would find the same, but walks every process's descriptors.)
ports_to() {
  find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null |
    awk -v want="$(printf '%04X' "$2")" '
      function hex(s,   i, n) {
        n = 0
        for (i = 1; i <= length(s); i++)
          n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
        return n
      }
      FNR == NR { gsub(/[^0-9]/, ""); mine[$0] = 1; next }
      FNR > 1 && $4 == "01" && ($10 in mine) {
        split($3, r, ":")
        if (r[2] == want) { split($2, l, ":"); print hex(l[2]) }
      }' - /proc/net/tcp
}

# Server connections of one process (a pooler, or pgbench for the direct
# target): its established TCP connections to Postgres, matched by port
# against pg_stat_activity so that only live backends of database bench
# count.  Both poolers keep idle server connections open all run, so a plain
# count of pg_stat_activity would mix the two.
server_conns() {
  local pid=$1 ports
  is_alive "$pid" || {
    echo -1
    return
  }
  ports=$(ports_to "$pid" "$pg_port" | paste -sd, -) || true
  if [ -z "$ports" ]; then
    echo 0
    return
  fi
  timeout 10 "$pgbin/psql" -X -A -t -h "$sock" -p "$pg_port" -U "$pguser" -d postgres -c \
    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'bench' AND client_port IN ($ports)" \
    2>/dev/null || echo -1
}

max() {
  if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi
}

# ---------------------------------------------------------------- cleanup

pg_started=0
pgbouncer_pid=
sluice_pid=
job_pid=
work=

stop_pid() {
  local pid=$1 i
  is_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    is_alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$job_pid"
  stop_pid "$sluice_pid"
  stop_pid "$pgbouncer_pid"
  for w in "${sweep_workers[@]}"; do stop_pid "${sweep_pid[$w]:-}"; done
  if [ "$pg_started" = 1 ]; then
    as_pg "$pgbin/pg_ctl" stop -D "$work/data" -m immediate -w -t 30 >/dev/null 2>&1 || true
  fi
  if [ -n "$work" ] && [ -d "$work" ]; then
    mkdir -p "$logs"
    for f in postgres.log pgbouncer.log sluice.log pgbouncer.ini sluice.ini "$work"/sluice_w*; do
      f=${f##*/}
      if [ -f "$work/$f" ]; then cp "$work/$f" "$logs/" || true; fi
    done
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

started=$EPOCHREALTIME
mkdir -p "$out"
rm -rf "$logs" "$out/runs.jsonl" "$out"/results.* "$out"/tps_p99.*
mkdir -p "$logs"

# N idle clients need N descriptors in the client and in each pooler; the
# daemons inherit these limits through setpriv (sluice also raises its soft
# limit to the hard one itself).  Raising the hard limit needs root with
# CAP_SYS_RESOURCE; a container may not grant it.
fd_need=$((idle_n + 1024 > 65536 ? idle_n + 1024 : 65536))
ulimit -Hn "$fd_need" 2>/dev/null || true
ulimit -n "$fd_need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((idle_n + 200)) ] ||
  die "open file limit $(ulimit -n) (hard limit $(ulimit -Hn)) is too low for $idle_n idle clients; lower SLUICE_BENCH_IDLE_N or raise the hard limit"

[ -x "$pgbin/postgres" ] || die "no Postgres 15 in $pgbin"
[ -x "$pgbouncer_bin" ] || die "no pgbouncer at $pgbouncer_bin"
command -v gnuplot >/dev/null || say "gnuplot missing (apt-get install gnuplot-nox): no chart"

if is_root && ! id -u "$pguser" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$pguser"
fi
is_root || pguser=$(id -un)

# sluice is built in a build directory of the benchmark's own, so that the
# figures do not depend on how build/ was configured; debugoptimized is -O2
# like Debian's PgBouncer, with symbols for profiling.
build_sluice() {
  local src=$1 dir=$2
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$src" --buildtype=debugoptimized >"$logs/meson.log" 2>&1 ||
      { cat "$logs/meson.log" >&2; die "meson setup failed"; }
  fi
  ninja -C "$dir" sluice >"$logs/ninja.log" 2>&1 ||
    { tail -n 30 "$logs/ninja.log" >&2; die "building sluice failed (--ref HEAD builds the last commit instead)"; }
  sluice_bin=$dir/sluice
}

say "building sluice and idle_clients"
if [ -n "$sluice_bin" ]; then
  [ -x "$sluice_bin" ] || die "$sluice_bin is not an executable"
  sluice_bin=$(cd "$(dirname "$sluice_bin")" && pwd -P)/$(basename "$sluice_bin")
  sluice_version="binary $sluice_bin"
elif [ -n "$ref" ]; then
  commit=$(git -C "$root" rev-parse --verify "$ref^{commit}") || die "no revision $ref"
  # A fresh tree per commit; the build directory is kept while it matches.
  if [ "$(cat "$out/src-ref/.commit" 2>/dev/null)" != "$commit" ]; then
    rm -rf "$out/src-ref" "$out/build-ref"
    mkdir -p "$out/src-ref"
    git -C "$root" archive "$commit" | tar -x -C "$out/src-ref"
    echo "$commit" >"$out/src-ref/.commit"
  fi
  build_sluice "$out/src-ref" "$out/build-ref"
  sluice_version="$(git -C "$root" rev-parse --short "$commit") ($ref)"
else
  build_sluice "$root" "$out/build"
  sluice_version="$(git -C "$root" rev-parse --short HEAD)"
  if [ -n "$(git -C "$root" status --porcelain -- src include meson.build)" ]; then
    sluice_version="$sluice_version + uncommitted changes in the working tree"
    # What was measured, beyond the commit: the diff and the new files.
    {
      git -C "$root" diff HEAD -- src include meson.build
      git -C "$root" ls-files --others --exclude-standard -- src include
    } >"$logs/sluice-uncommitted.diff" 2>&1 || true
  fi
fi
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
cc -O2 -Wall -Wextra -o "$out/idle_clients" "$bench/idle_clients.c" \
  $(pkg-config --cflags --libs libpq) || die "building idle_clients failed"

# Runtime files live under /tmp: the unprivileged user may not be able to
# enter the checkout, and a Unix socket path must stay short.
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$work"
is_root && chown "$pguser:$pguser" "$work"
# A copy, so that a rebuild by someone else mid-run cannot change the binary.
cp "$sluice_bin" "$work/sluice"
sock=$work/socket
as_pg mkdir -m 0700 "$sock"

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

next_free_port() {
  local port=$1
  while ! port_is_free "$port"; do
    port=$((port + 1))
  done
  echo "$port"
}

pg_port=$(next_free_port 55432)
pgbouncer_port=$(next_free_port $((pg_port + 1)))
sluice_port=$(next_free_port $((pgbouncer_port + 1)))

say "starting Postgres on port $pg_port (data in $work/data)"
as_pg "$pgbin/initdb" -D "$work/data" -U "$pguser" -E UTF8 --locale=C --auth-local=trust \
  --auth-host=scram-sha-256 --no-sync >"$logs/initdb.log" 2>&1 ||
  { cat "$logs/initdb.log" >&2; die "initdb failed"; }
as_pg tee -a "$work/data/postgresql.conf" >/dev/null <<EOF

# Set by bench/run.sh: a throwaway cluster, tuned so that Postgres is not
# what varies between runs (no fsync, no checkpoints or autovacuum mid-run).
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$sock'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 8GB
password_encryption = 'scram-sha-256'
EOF
as_pg tee "$work/data/pg_hba.conf" >/dev/null <<EOF
local all all              trust
host  all all 127.0.0.1/32 scram-sha-256
EOF
as_pg "$pgbin/pg_ctl" start -D "$work/data" -l "$work/postgres.log" -w -t 60 >/dev/null ||
  { tail -n 20 "$work/postgres.log" >&2; die "Postgres did not start"; }
pg_started=1

"$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$pg_port" -U "$pguser" -d postgres <<'EOF'
SET client_min_messages = warning;
CREATE ROLE bench LOGIN PASSWORD 'bench-secret';
CREATE DATABASE bench OWNER bench;
EOF
say "pgbench -i -s $scale"
"$pgbin/pgbench" -i -q -s "$scale" -h "$sock" -p "$pg_port" -U bench bench \
  >"$logs/pgbench-init.log" 2>&1 || { cat "$logs/pgbench-init.log" >&2; die "pgbench -i failed"; }

# Every client below logs in over TCP with SCRAM; no TLS anywhere, and no
# SSLRequest round trip either, the same for all three targets.
export PGPASSWORD=bench-secret PGSSLMODE=disable PGCONNECT_TIMEOUT=20

as_pg tee "$work/userlist.txt" >/dev/null <<'EOF'
"bench" "bench-secret"
EOF
chmod 600 "$work/userlist.txt"
as_pg tee "$work/pgbouncer.ini" >/dev/null <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench

[pgbouncer]
listen_addr = $listen_hosts
listen_port = $pgbouncer_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = $max_client_conn
; Per-connection log lines would cost PgBouncer in the connection storm what
; sluice at log_level = warn does not pay.
log_connections = 0
log_disconnections = 0
EOF
as_pg tee "$work/sluice.ini" >/dev/null <<EOF
[sluice]
listen_addr = $listen_hosts
listen_port = $sluice_port
unix_socket_dir =
auth_file = $work/userlist.txt
auth_type = scram-sha-256
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = $max_client_conn
log_level = warn
workers = 1
; Off, as it was before its default became 50/s (burst 100): every scenario logs
; in from 127.0.0.1, the storm and the 10,000 idle clients far faster than that,
; and PgBouncer has no such limit; the figures measure pooling, as before.
; (A --ref older than 87a0bc3 does not know this key.)
connect_rate_per_ip = 0

[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
EOF

# Waits until a pooler answers a real query: a listening port alone does not
# prove that login and the server side work.
wait_ready() {
  local port=$1 pid=$2 i
  for i in $(seq 100); do
    is_alive "$pid" || return 1
    if timeout 10 "$pgbin/psql" -X -A -t -h 127.0.0.1 -p "$port" -U bench -d bench \
      -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# Both log to stderr in the foreground, to a file of the same name.
start_pgbouncer() {
  spawn_as_pg "$pgbouncer_bin" "$work/pgbouncer.ini" >>"$work/pgbouncer.log" 2>&1
  pgbouncer_pid=$spawned
  wait_ready "$pgbouncer_port" "$pgbouncer_pid"
}

start_sluice() {
  spawn_as_pg "$work/sluice" "$work/sluice.ini" >>"$work/sluice.log" 2>&1
  sluice_pid=$spawned
  wait_ready "$sluice_port" "$sluice_pid"
}

# The sweep's sluices: the same configuration with another port and worker count.
start_sluice_w() {
  local w=$1
  spawn_as_pg "$work/sluice" "$work/sluice_w$w.ini" >>"$work/sluice_w$w.log" 2>&1
  sweep_pid[$w]=$spawned
  wait_ready "${sweep_port[$w]}" "$spawned"
}

start_pgbouncer || say "PgBouncer did not start: $(tail -n 3 "$work/pgbouncer.log")"
start_sluice || say "sluice did not start: $(tail -n 3 "$work/sluice.log")"
next_port=$sluice_port
for w in "${sweep_workers[@]}"; do
  next_port=$(next_free_port $((next_port + 1)))
  sweep_port[$w]=$next_port
  sed -e "s/^listen_port = .*/listen_port = $next_port/" -e "s/^workers = .*/workers = $w/" \
    "$work/sluice.ini" | as_pg tee "$work/sluice_w$w.ini" >/dev/null
  start_sluice_w "$w" || say "sluice (workers = $w) did not start: $(tail -n 3 "$work/sluice_w$w.log")"
done

target_port() {
  case $1 in
  direct) echo "$pg_port" ;;
  pgbouncer) echo "$pgbouncer_port" ;;
  sluice) echo "$sluice_port" ;;
  sluice_w*) echo "${sweep_port[${1#sluice_w}]}" ;;
  esac
}

target_pid() {
  case $1 in
  pgbouncer) echo "$pgbouncer_pid" ;;
  sluice) echo "$sluice_pid" ;;
  sluice_w*) echo "${sweep_pid[${1#sluice_w}]:-}" ;;
  *) echo "" ;;
  esac
}

# Starts TARGET (a pooler) by name.
start_target() {
  case $1 in
  sluice_w*) start_sluice_w "${1#sluice_w}" ;;
  *) "start_$1" ;;
  esac
}

# A pooler that died in an earlier run is restarted, so that one crash costs
# one scenario, not the rest of the benchmark.  Leaves a note for the report
# in $restart_note.  Not called in a subshell: it sets the pooler's pid.
ensure_pooler() {
  local target=$1
  restart_note=
  [ "$target" = direct ] && return 0
  is_alive "$(target_pid "$target")" && return 0
  say "$target is not running; restarting it"
  if start_target "$target"; then
    restart_note="$target was not running before this run and was restarted"
  else
    restart_note="$target was not running and did not restart: $(tail -n 2 "$work/$target.log" | tr '\n' ' ')"
  fi
}

python3 - "$out/meta.json" <<EOF
import json, subprocess, sys
def sh(c):
    return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
lscpu = sh("lscpu | head -n 20")
model = [l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")]
json.dump({
    "date": sh("date"),
    "command": "$command_line",
    "mode": "$mode",
    "warmup_s": $warmup, "duration_s": $duration, "tail_s": $tail, "scale": $scale,
    "idle_clients": $idle_n, "pool_size": $pool_size,
    "sweep_workers": [${sweep_workers[*]/%/,}],
    "nproc": sh("nproc"),
    "cpu_model": model[0] if model else "unknown",
    "lscpu": lscpu,
    "kernel": sh("uname -r"),
    "loadavg_start": open("/proc/loadavg").read().strip(),
    "postgres": sh("'$pgbin/postgres' --version"),
    "pgbouncer": sh("'$pgbouncer_bin' --version | head -n 1"),
    "sluice": "$sluice_version",
}, open(sys.argv[1], "w"), indent=2)
EOF

# ---------------------------------------------------------------- runs

# Connections of process PID to PORT that are established now.
conns_to() {
  ports_to "$1" "$2" | wc -l
}

# Waits until pgbench has all its clients connected, so that the measured
# window starts after the logins: 256 SCRAM logins to Postgres take seconds
# on two cores.  Returns 1 when pgbench ended or a client aborted first (a
# refused login, say), 2 after login_wait seconds.
login_wait=60
pgbench_pid=
wait_logins() {
  local port=$1 clients=$2 err=$3 i
  for i in $(seq $((login_wait * 10))); do
    is_alive "$job_pid" || return 1
    grep -q "aborted\|error" "$err" && return 1
    pgbench_pid=$(pgrep -P "$job_pid" pgbench | head -n 1) || true
    if [ -n "$pgbench_pid" ] && [ "$(conns_to "$pgbench_pid" "$port")" -ge "$clients" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 2
}

# The storm's clients, in PROCS pgbench processes of one thread each (the
# log files, PREFIX.PID, do not collide), all at once; returns the last
# non-zero status.  In one process of two threads, pgbench spends more time
# in its own SCRAM proofs than the poolers in theirs: libpq computes each
# PBKDF2 through OpenSSL 3, whose lookups take a process-wide lock, and perf
# showed 57 % of pgbench's time in pthread_rwlock_(rd)lock/unlock.  The
# faster a pooler answers, the more often the two threads compute at once,
# so the storm measured pgbench's lock (sluice and PgBouncer both ~215
# connections/s, with pgbench at 1.8 cores against sluice and 0.75 against
# PgBouncer).  Separate processes share no lock.
storm_pgbench() {
  local port=$1 clients=$2 procs=$3 total=$4 prefix=$5 k rc=0
  local pids=()
  shift 5
  for k in $(seq "$procs"); do
    timeout -k 5 $((total + 30)) "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U bench \
      -c $((clients / procs)) -j 1 -T "$total" -l --log-prefix="$prefix" "$@" bench \
      >>"$prefix.out" 2>>"$prefix.err" &
    pids+=($!)
  done
  for k in "${pids[@]}"; do
    wait "$k" || rc=$?
  done
  return "$rc"
}

# Connections to Postgres of every pgbench writing PREFIX's logs (the direct storm's).
storm_server_conns() {
  local prefix=$1 pid c n=0
  for pid in $(pgrep -f -- "^$pgbin/pgbench .*--log-prefix=$prefix "); do
    c=$(server_conns "$pid")
    [ "$c" -ge 0 ] && n=$((n + c))
  done
  echo "$n"
}

# One pgbench run against one target.  The pooler's CPU and the clock are
# read at the start and end of the measured window, and the report counts
# only transactions that completed inside it, so logins and disconnects stay
# out of all figures (except in the storm, where logins are the point).
#
# pgbench's -T clock includes its logins, whose time varies from one target
# to another by seconds.  So -T leaves room for the slowest login phase, and
# pgbench is stopped with SIGINT once the window and a tail have passed.
# SIGINT loses what pgbench had not yet written of its log (the last 4 kB or
# so per thread); the tail keeps those lines outside the window, and
# analyze.py checks that each thread's log reaches past the window's end.
# A storm (-C) has no login phase to wait for and ends by itself.
run_pgbench() {
  local scenario=$1 target=$2 clients=$3
  shift 3
  local port pid name prefix jobs total rc=0 note cpu0 cpu1 t1 t2 t1_us conns=-1 c k
  local storm=0 stopped=0 login_rc=0 t0 tl cpu at rss load
  pgbench_pid=
  ensure_pooler "$target"
  note=$restart_note
  port=$(target_port "$target")
  pid=$(target_pid "$target")
  name=${scenario}_$target
  prefix=$logs/$name
  jobs=$((clients < 2 ? clients : 2))
  case " $* " in *" -C "*) storm=1 ;; esac
  # Whole seconds for -T; the phases may be fractions.
  total=$(((warmup_us + duration_us + tail_us + 999999) / 1000000))
  [ "$storm" = 1 ] || total=$((total + login_wait + 10))

  t0=$EPOCHREALTIME
  # timeout: a hang in a target costs this run, not the whole benchmark.
  if [ "$storm" = 1 ]; then
    : >"$prefix.out"
    : >"$prefix.err"
    storm_pgbench "$port" "$clients" "$jobs" "$total" "$prefix" "$@" &
  else
    timeout -k 5 $((total + 30)) "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U bench \
      -c "$clients" -j "$jobs" -T "$total" -l --log-prefix="$prefix" "$@" bench \
      >"$prefix.out" 2>"$prefix.err" &
  fi
  job_pid=$!
  if [ "$storm" = 0 ]; then
    wait_logins "$port" "$clients" "$prefix.err" || login_rc=$?
    case $login_rc in
    1) note="${note:+$note; }pgbench stopped or a client aborted before all $clients had connected" ;;
    2) note="${note:+$note; }not all $clients clients connected within $login_wait s" ;;
    esac
  fi
  tl=$EPOCHREALTIME
  sleep_until_us $((${tl/./} + warmup_us))
  read_cpu "$pid"
  cpu0=$cpu t1=$at t1_us=${at/./}
  # Server connections: the most seen at a third and two thirds into the
  # window.  For the direct target they are pgbench's own connections.
  for k in 1 2; do
    sleep_until_us $((t1_us + duration_us * k / 3))
    if [ -z "$pid" ] && [ "$storm" = 1 ]; then
      c=$(storm_server_conns "$prefix") || c=-1
    elif [ -z "$pid" ]; then
      c=$(server_conns "${pgbench_pid:-$(pgrep -P "$job_pid" pgbench | head -n 1)}") || c=-1
    else
      c=$(server_conns "$pid") || c=-1
    fi
    conns=$(max "$conns" "${c:--1}")
  done
  # The window ends on time even when the probes above were slow.
  sleep_until_us $((t1_us + duration_us))
  read_cpu "$pid"
  cpu1=$cpu t2=$at
  read_rss "$pid"
  # The 1-minute load average, kept in runs.jsonl only: it mixes this run's
  # own processes (256 backends are 256 runnable tasks) with other work.
  read -r load _ </proc/loadavg
  if [ "$storm" = 0 ]; then
    sleep_until_us $((${t2/./} + tail_us))
    if is_alive "$job_pid" && [ -n "$pgbench_pid" ] && is_alive "$pgbench_pid"; then
      kill -INT "$pgbench_pid" 2>/dev/null && stopped=1
    fi
  fi
  wait "$job_pid" || rc=$?
  job_pid=
  # 130: our SIGINT, relayed by timeout as pgbench's exit status.
  if [ "$stopped" = 1 ] && [ "$rc" = 130 ]; then
    rc=0
  fi
  if [ -n "$pid" ] && ! is_alive "$pid"; then
    note="${note:+$note; }$target exited during the run: $(tail -n 2 "$work/$target.log" | tr '\n' ' ')"
  fi
  python3 "$bench/analyze.py" run --jsonl "$out/runs.jsonl" --scenario "$scenario" \
    --target "$target" --clients "$clients" --log-prefix "$prefix" --err-file "$prefix.err" \
    --t1 "$t1" --t2 "$t2" --cpu0 "$cpu0" --cpu1 "$cpu1" --rss-kb "$rss" \
    --server-conns "$conns" --rc "$rc" --note "$note" --t0 "$t0" --tl "$tl" --te "$EPOCHREALTIME" --load "$load" --stopped "$stopped" ||
    say "analyze.py failed for $name"
  if [ "$keep_logs" = 0 ]; then
    rm -f "$prefix".[0-9]*
  fi
}

# The value of NAME=value in idle_clients' report line, or -1.
field() {
  local re="(^| )$1=([^ ]*)"
  if [[ $2 =~ $re ]]; then
    echo "${BASH_REMATCH[2]}"
  else
    echo -1
  fi
}

# Idle clients against one pooler: RSS before, open them all, RSS and server
# connections while they are held, then let them go.
#
# The pooler is restarted first, so "RSS before" is a fresh process that has
# done one login (wait_ready's).  Measured on the pooler that had served all
# the pgbench runs, as until December 2026, the growth missed whatever the
# idle clients took from memory those runs had freed but the heap kept (256
# clients' logins and buffers): 0.72 KB per sluice client that way, 1.18 KB
# by the growth of a fresh process (issue 19).
run_idle() {
  local target=$1 port pid rc=0 rss0 rss1=-1 anon0 anon1=-1 cpu0 cpu1=-1 conns=-1 deadline
  local ready done_line ok failed seconds held cpu at rss rss_anon
  stop_pid "$(target_pid "$target")"
  ensure_pooler "$target"
  port=$(target_port "$target")
  pid=$(target_pid "$target")
  read_rss "$pid"
  read_cpu "$pid"
  rss0=$rss anon0=$rss_anon cpu0=$cpu
  timeout -k 5 $((idle_timeout + 120)) "$out/idle_clients" -S -n "$idle_n" -p 64 \
    -t "$idle_timeout" -H "$listen_hosts" "host=127.0.0.1 port=$port dbname=bench user=bench" \
    >"$logs/idle_$target.out" 2>"$logs/idle_$target.err" &
  job_pid=$!
  deadline=$((EPOCHSECONDS + idle_timeout + 30))
  while is_alive "$job_pid" && ! grep -qs '^ready' "$logs/idle_$target.out" &&
    [ "$EPOCHSECONDS" -lt "$deadline" ]; do
    sleep 0.5
  done
  if grep -q '^ready' "$logs/idle_$target.out"; then
    # Let the pooler finish whatever the last logins left behind.
    sleep 1
    read_rss "$pid"
    read_cpu "$pid"
    rss1=$rss anon1=$rss_anon cpu1=$cpu
    conns=$(server_conns "$pid") || conns=-1
  fi
  stop_pid "$job_pid"
  wait "$job_pid" || rc=$?
  job_pid=
  ready=$(grep '^ready' "$logs/idle_$target.out" || true)
  done_line=$(grep '^done' "$logs/idle_$target.out" || true)
  ok=$(field ok "$ready")
  failed=$(field failed "$ready")
  seconds=$(field seconds "$ready")
  held=$(field held "$done_line")
  python3 "$bench/analyze.py" idle --jsonl "$out/runs.jsonl" --target "$target" \
    --requested "$idle_n" --ok "$ok" --held "$held" --failed "$failed" --seconds "$seconds" \
    --rss0 "$rss0" --rss1 "$rss1" --anon0 "$anon0" --anon1 "$anon1" --cpu0 "$cpu0" --cpu1 "$cpu1" --server-conns "$conns" \
    --rc "$rc" --err-file "$logs/idle_$target.err" || say "analyze.py failed for idle_$target"
}

targets=(direct pgbouncer sluice)
# For working on one case: SLUICE_BENCH_ONLY="select_c64 storm_c16" runs
# only those scenarios (and SLUICE_BENCH_IDLE=0 skips the idle test).
only=${SLUICE_BENCH_ONLY:-}
say "$mode run: ${#scenarios[@]} scenarios x 3 targets, ${warmup}s warmup + ${duration}s measured"
i=0
for spec in "${scenarios[@]}"; do
  read -r scenario clients options <<<"$spec"
  if [ -n "$only" ] && [[ " $only " != *" $scenario "* ]]; then
    continue
  fi
  # The first target rotates from scenario to scenario, so that none always
  # runs right after a heavy run of another.
  for k in 0 1 2; do
    target=${targets[$(((i + k) % 3))]}
    # shellcheck disable=SC2086 # the options are several words on purpose
    run_pgbench "$scenario" "$target" "$clients" $options
  done
  if [[ $sweep_scenarios == *" $scenario "* ]]; then
    for w in "${sweep_workers[@]}"; do
      # shellcheck disable=SC2086
      run_pgbench "$scenario" "sluice_w$w" "$clients" $options
    done
  fi
  i=$((i + 1))
done

if [ "${SLUICE_BENCH_IDLE:-1}" != 0 ]; then
  say "idle clients: $idle_n per pooler"
  run_idle pgbouncer
  run_idle sluice
fi

ended=$EPOCHREALTIME
python3 - "$out/meta.json" "$started" "$ended" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
meta["wall_s"] = round(float(sys.argv[3]) - float(sys.argv[2]), 1)
meta["loadavg_end"] = open("/proc/loadavg").read().strip()
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
python3 "$bench/analyze.py" report "$out"
say "done in $(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.0f", b - a }') s; results in $out/results.md"
