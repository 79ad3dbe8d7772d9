#!/bin/bash
# Fault and soak run: sluice under a mixed load while Postgres is killed,
# stopped, terminated and failed over under it, Redis restarts, clients
# vanish and hostile clients probe it; at the end, nothing acknowledged may be lost, no client hung, nothing
# leaked and every error a client got must carry an SQLSTATE.
#
#   bench/soak.sh [--duration SECONDS] [--asan] [--sluice PATH]
#
# --duration S  length of the run with faults (default 600); a warm-up of
#               S/10 (5..20 s) without faults comes first
# --asan        run an AddressSanitizer + UndefinedBehaviorSanitizer build
#               (bench/out/soak-asan); any sanitizer report fails the run
# --sluice P    run the binary P, building nothing (tests/run.sh passes the
#               one it just built)
#
# Starts its own Postgres (tests/harness/pg.sh, instance "pg-soak") with a
# streaming standby ("pg-soak-standby"), a Redis (tests/harness/redis.sh,
# "redis-soak") and sluice, then bench/soak_load.py runs the clients, the fault schedule and
# the checks (bench/README.md, "Soak").  Prints a markdown table and
#
#   soak: N committed, L lost, H hung, K leaked, E errors without SQLSTATE
#
# and exits non-zero when L, H, K or E is not 0 (or an answer was wrong, a
# probe failed, sluice died or a sanitizer reported).  Output also goes to
# bench/out/soak.md, soak.json and soak-logs/.
#
# Needs: root (Postgres and sluice then run as the user sluicepg; the
# faults signal them), postgresql-15 (pgbench), redis-server,
# python3-psycopg for /usr/bin/python3, meson and ninja.
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd -P)
out=$root/bench/out
logs=$out/soak-logs
pguser=sluicepg
pg_name=pg-soak
redis_name=redis-soak
# Ports of their own, outside the tests' ranges and below Linux's ephemeral
# ports (32768-60999): neither a test cluster or Redis that other work starts
# meanwhile nor an outgoing connection may take the primary's port while the
# failover has it down, or Redis's while it restarts (they come back on it).
export SLUICE_PG_PORTS=31520-31619 SLUICE_REDIS_PORTS=31720-31819

duration=600
asan=0
sluice_bin=
while [ $# -gt 0 ]; do
  case $1 in
  --duration)
    duration=${2:?--duration needs seconds}
    shift
    ;;
  --asan) asan=1 ;;
  --sluice)
    sluice_bin=${2:?--sluice needs a path}
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "soak.sh: unknown argument $1 (try --help)" >&2
    exit 2
    ;;
  esac
  shift
done

say() {
  echo "soak.sh: $*" >&2
}

die() {
  say "$*"
  exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root: the faults signal Postgres and sluice, which run as $pguser"
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import psycopg' 2>/dev/null ||
  die "needs Debian's python3-psycopg for /usr/bin/python3"
command -v pgbench >/dev/null || die "needs pgbench (postgresql-15)"
[ -x /usr/bin/redis-server ] || die "needs redis-server (limiter = redis)"

mkdir -p "$out"
rm -rf "$logs"
mkdir -p "$logs"

if [ -z "$sluice_bin" ]; then
  # A build directory of its own, so the run does not depend on how build/
  # is configured; the sanitizer build is -O1 so that 3 minutes still mean load.
  if [ "$asan" = 1 ]; then
    dir=$out/soak-asan
    opts=(-Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Doptimization=1 -Db_lundef=false)
  else
    dir=$out/soak-build
    opts=(--buildtype=debugoptimized)
  fi
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$root" -Dtests=false "${opts[@]}" >"$logs/meson.log" 2>&1 ||
      { cat "$logs/meson.log" >&2; die "meson setup failed"; }
  fi
  say "building sluice in $dir"
  ninja -C "$dir" sluice >"$logs/ninja.log" 2>&1 || { tail -n 30 "$logs/ninja.log" >&2; die "build failed"; }
  sluice_bin=$dir/sluice
fi
[ -x "$sluice_bin" ] || die "$sluice_bin is not an executable"

if ! id -u "$pguser" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$pguser"
fi
# 500 slowloris sockets and the load, in sluice and in the load generator.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=
sluice_pid=
pg_data=
standby_data=
is_alive() {
  local line
  [ -n "$1" ] || return 1
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  line=${line##*) }
  [ "${line%% *}" != Z ]
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if is_alive "$sluice_pid"; then
    kill -KILL "$sluice_pid" 2>/dev/null || true
  fi
  # SIGCONT first: a run interrupted during the SIGSTOP fault leaves Postgres stopped.
  local pm d
  for d in "$pg_data" "$standby_data"; do
    pm=$(head -n 1 "$d/postmaster.pid" 2>/dev/null || true)
    if [ -n "$pm" ]; then
      kill -CONT "$pm" $(ps --ppid "$pm" -o pid= 2>/dev/null) 2>/dev/null || true
    fi
  done
  SLUICE_PG_NAME=$pg_name-standby "$root/tests/harness/pg.sh" stop >/dev/null 2>&1 || true
  SLUICE_PG_NAME=$pg_name "$root/tests/harness/pg.sh" stop >/dev/null 2>&1 || true
  SLUICE_REDIS_NAME=$redis_name "$root/tests/harness/redis.sh" stop >/dev/null 2>&1 || true
  [ -z "$pg_data" ] || cp "$(dirname "$pg_data")/postgres.log" "$logs/postgres.log" 2>/dev/null || true
  [ -z "$standby_data" ] || cp "$(dirname "$standby_data")/postgres.log" "$logs/postgres-standby.log" 2>/dev/null || true
  if [ -n "$work" ] && [ -d "$work" ]; then
    cp "$work"/sluice.log "$work"/sluice.ini "$logs/" 2>/dev/null || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting Postgres ($pg_name and $pg_name-standby) and Redis ($redis_name)"
# A run interrupted inside the failover fault may leave the primary's data a
# standby's: that cluster is made again, and the standby always is.
if [ -f "$root/.run/$pg_name/data/standby.signal" ]; then
  SLUICE_PG_NAME=$pg_name "$root/tests/harness/pg.sh" destroy >/dev/null 2>&1
fi
SLUICE_PG_NAME=$pg_name-standby "$root/tests/harness/pg.sh" destroy >/dev/null 2>&1 || true
SLUICE_PG_NAME=$pg_name "$root/tests/harness/pg.sh" start >/dev/null
# shellcheck disable=SC1090
. "$root/.run/$pg_name.env"
pg_data=$(cd "$root/.run/$pg_name" && pwd -P)/data
cp "$(dirname "$pg_data")/postgres.log" "$logs/postgres-before.log" 2>/dev/null || true
# The standby copies these: it asks for lost WAL again every 500 ms (not 5 s,
# while the ledger's commits wait for it), and the primary waits for no
# synchronous standby until soak_load.py has seen this one streaming.
"$SLUICE_TEST_PGBIN/psql" -X -q -h "$SLUICE_TEST_PGSOCKET" -p "$SLUICE_TEST_PGPORT" -U "$SLUICE_TEST_PGSUPER" -d postgres \
  -c "ALTER SYSTEM SET wal_retrieve_retry_interval = '500ms'" -c "ALTER SYSTEM RESET synchronous_standby_names" \
  -c "SELECT pg_reload_conf()" >/dev/null
PGPASSWORD=app-secret pgbench -i -q -s 1 -h 127.0.0.1 -p "$SLUICE_TEST_PGPORT" -U app app \
  >"$logs/pgbench-init.log" 2>&1 || { cat "$logs/pgbench-init.log" >&2; die "pgbench -i failed"; }
SLUICE_PG_NAME=$pg_name "$root/tests/harness/pg.sh" standby >/dev/null
# shellcheck disable=SC1090
. "$root/.run/$pg_name-standby.env"
standby_data=$(cd "$root/.run/$pg_name-standby" && pwd -P)/data
SLUICE_REDIS_NAME=$redis_name "$root/tests/harness/redis.sh" start >/dev/null
# shellcheck disable=SC1090
. "$root/.run/$redis_name.env"

# Runtime files under /tmp: the unprivileged user may not enter the checkout.
work=$(mktemp -d /tmp/sluice-soak.XXXXXX)
chmod 755 "$work"
chown "$pguser:$pguser" "$work"
cp "$sluice_bin" "$work/sluice"
port=$((20000 + RANDOM % 11000)) # below the ranges above
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  port=$((port + 1))
done
cat >"$work/userlist.txt" <<'EOF'
"app" "app-secret"
"admin" "admin-secret"
EOF
# The timeouts are also in soak_load.py (CFG), which derives its bounds for
# "hung" from them; default_pool_size is rewritten by the reload fault.
pg="host=127.0.0.1 port=$SLUICE_TEST_PGPORT dbname=app"
cat >"$work/sluice.ini" <<EOF
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_file = $work/userlist.txt
admin_users = admin
pool_mode = transaction
default_pool_size = 10
max_client_conn = 2000
query_wait_timeout = 8s
query_timeout = 5s
cancel_grace = 2s
idle_transaction_timeout = 3s
client_login_timeout = 10s
client_read_timeout = 2s
server_connect_timeout = 3s
server_login_retry = 1s
server_reset_timeout = 3s
server_breaker_backoff_max = 2s
auth_failure_delay_max = 5s
stats_period = 10s
slow_query_threshold = 0
log_level = info
log_connections = on
log_disconnections = on
limiter = redis
redis_url = $SLUICE_TEST_REDIS_URL
redis_key_prefix = soak-$port-$$:

[databases]
app = $pg
app_session = $pg pool_mode=session pool_size=4
app_slow = $pg query_timeout=2s pool_size=4
app_rw = host=127.0.0.1,127.0.0.1 port=$SLUICE_TEST_PGPORT,$SLUICE_TEST_STANDBY_PORT dbname=app target_session_attrs=read-write
app_rated = $pg pool_size=2
* = host=127.0.0.1 port=$SLUICE_TEST_PGPORT

# Both tenants take their tokens from Redis: the ledger's rate is never
# reached, the rated client runs into its own all the time.
[tenant.ledger]
databases = app_rw
query_rate = 100000/s

[tenant.rated]
databases = app_rated
query_rate = 20/s
query_burst = 20
rate_limit_wait = 1s
EOF
chown "$pguser:$pguser" "$work"/*

san_env=()
if [ "$asan" = 1 ]; then
  san_env=(ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
fi
(cd / && exec env "${san_env[@]}" setpriv --reuid="$pguser" --regid="$pguser" --init-groups -- \
  "$work/sluice" "$work/sluice.ini") >>"$work/sluice.log" 2>&1 &
sluice_pid=$!
for _ in $(seq 100); do
  is_alive "$sluice_pid" || { cat "$work/sluice.log" >&2; die "sluice did not start"; }
  if PGPASSWORD=app-secret psql -X -Atq -h 127.0.0.1 -p "$port" -U app -d app -c 'select 1' >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done

say "sluice $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') on port $port, Postgres on $SLUICE_TEST_PGPORT (standby $SLUICE_TEST_STANDBY_PORT), Redis on $SLUICE_TEST_REDIS_PORT; ${duration} s"
args=(--duration "$duration" --port "$port" --config "$work/sluice.ini"
  --sluice-pid "$sluice_pid" --sluice-log "$work/sluice.log"
  --pg-name "$pg_name" --pg-sh "$root/tests/harness/pg.sh" --pg-data "$pg_data"
  --pg-port "$SLUICE_TEST_PGPORT" --pg-socket "$SLUICE_TEST_PGSOCKET" --pg-super "$SLUICE_TEST_PGSUPER"
  --pg-bin "$SLUICE_TEST_PGBIN" --standby-data "$standby_data" --standby-port "$SLUICE_TEST_STANDBY_PORT"
  --standby-socket "$SLUICE_TEST_STANDBY_SOCKET" --redis-name "$redis_name" --redis-sh "$root/tests/harness/redis.sh"
  --redis-port "$SLUICE_TEST_REDIS_PORT"
  --json "$out/soak.json")
[ "$asan" = 1 ] && args+=(--asan)
rc=0
/usr/bin/python3 "$root/bench/soak_load.py" "${args[@]}" 2>"$logs/soak_load.log" | tee "$out/soak.md" || rc=$?
[ "$rc" = 0 ] || say "failed; logs in $logs (soak_load.log, sluice.log)"
exit "$rc"
