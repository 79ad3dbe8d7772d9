#!/bin/bash
# Tenant limits benchmark (docs/tenants.md): how exact the rate limiter is,
# and what a noisy tenant does to a quiet one's latency.
#
#   bench/tenants.sh [--quick]            accuracy, then isolation
#   bench/tenants.sh isolation [--quick]  isolation only
#   bench/tenants.sh fleet [--quick]
#
# Starts its own Postgres (tests/harness/pg.sh, instance "pg-tenants") and a
# sluice from ./build in transaction mode, with one forced server login that
# the tenants share (pool_size 4), then runs bench/tenant_load:
#
#   1. accuracy: tenant "metered" (query_rate 100/s, burst 10) in a closed
#      loop on 4 connections for 60 s; accepted vs 10 + 100 x elapsed, a
#      second bucket at 2000/min (burst 200) on 4 connections for 60 s, and
#      many waiters: 100/s on 40 connections for 15 s with rate_limit_wait
#      500ms (their fair share, 0.4 s each, is within it: none refused);
#   2. isolation: the quiet tenant (2 connections, SELECT 1) alone, then next
#      to the noisy tenant at 10x its limit: 40 connections, ten times the 4
#      servers the pool has, in closed loops of either SELECT 1 (flat out: it
#      loads the CPUs as well as the pool) or pg_sleep(0.005) (it holds
#      servers, and little CPU).  With sluice three ways: plain round-robin
#      between the tenants (no keys), the quiet tenant at weight = 10, and
#      the quiet tenant at min_server_conn = 2; the same two users through
#      PgBouncer with the same forced login and pool of 4 (PgBouncer has no
#      tenants: one pool, FIFO); and the quiet client straight to Postgres
#      while the noisy tenant goes through sluice (min_server_conn = 2): what
#      the machine's own contention costs a query no pooler touches (and,
#      from SHOW WORKERS, how many servers moved between sluice's workers
#      meanwhile); and once more at min_server_conn = 2 with the noisy tenant
#      at ten times a query_rate: a tenth of the throughput it had unlimited
#      in the same round, its requests over the rate waiting for tokens, and
#      the quiet client straight to Postgres next to that held neighbour.  Each
#      case runs ISOLATION_REPEATS times (default 3), the cases interleaved
#      round by round; the table gives the medians, the spread (min..max) of
#      p99, and p99 over the quiet tenant alone on the same path.
#
# Prints markdown tables and writes bench/out/tenants.json.  About 14 minutes
# (isolation alone about 12; --quick: 5 s runs and one round, a smoke test).
#
# `fleet` measures limiter = redis instead (docs/tenants.md), against a Redis
# of its own (tests/harness/redis.sh, instance "redis-bench"):
#
#   1. accuracy: three sluice processes share tenant "metered" (100/s, burst
#      10) and tenant "metered_min" (2000/min, burst 200); each tenant runs 2
#      connections on every instance for 60 s, at the same time; accepted
#      over the fleet vs burst + rate x elapsed (target: within 5 %);
#   2. cost: one sluice, a tenant limited to 20000/s (more than the machine
#      serves, so every transaction is limited and none refused), 4
#      connections for 20 s, sluice's CPU (user + system, /proc) per
#      transaction with limiter = local and with limiter = redis, twice each,
#      alternating (target: redis <= 1.2 x local).  Redis' own CPU is shown
#      beside it.
#
# Writes bench/out/tenants-fleet.json.  About 4 minutes (--quick: 15 s and 5 s).
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd -P)
out=$root/bench/out
mkdir -p "$out"
mode=single
if [ "${1:-}" = "fleet" ] || [ "${1:-}" = "isolation" ]; then
  mode=$1
  shift
fi
accuracy_s=60
latency_s=10
cost_s=20
repeats=${ISOLATION_REPEATS:-3}
if [ "${1:-}" = "--quick" ]; then
  accuracy_s=15
  latency_s=5
  cost_s=5
  repeats=1
fi
noisy_clients=40
pgbouncer_bin=${SLUICE_BENCH_PGBOUNCER:-/usr/sbin/pgbouncer}

die() {
  echo "tenants.sh: $*" >&2
  exit 1
}

ninja -C "$root/build" sluice >/dev/null || die "building sluice failed (meson setup build first)"
cc -O2 -Wall -Wextra -o "$out/tenant_load" "$root/bench/tenant_load.c" \
  $(pkg-config --cflags --libs libpq) || die "building tenant_load failed"

SLUICE_PG_NAME=pg-tenants "$root/tests/harness/pg.sh" start >/dev/null
# shellcheck disable=SC1091
. "$root/.run/pg-tenants.env"

# A random port nothing listens on (a taken one made a run die with "no answer").
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || break
  done
  echo "$p"
}
work=$(mktemp -d /tmp/sluice-tenants.XXXXXX)
port=$(free_port)
if [ "$mode" = fleet ]; then
  # shellcheck source=bench/tenants_fleet.sh
  . "$root/bench/tenants_fleet.sh"
  exit 0
fi
cat >"$work/userlist.txt" <<'EOF'
"metered" "m-secret"
"metered_min" "m-secret"
"metered_many" "m-secret"
"quiet" "q-secret"
"noisy" "n-secret"
"admin" "admin-secret"
EOF
# PgBouncer will not run as root: it switches to postgres (-u), who must read these.
chmod 755 "$work"
chmod 644 "$work/userlist.txt"

sluice_pid=
pgbouncer_pid=
stop_pid() {
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
stop_all() {
  stop_pid "$sluice_pid"
  stop_pid "$pgbouncer_pid"
  SLUICE_PG_NAME=pg-tenants "$root/tests/harness/pg.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_all EXIT
url() { # url PORT USER PASSWORD
  echo "host=127.0.0.1 port=$1 dbname=app user=$2 password=$3"
}
wait_ready() { # wait_ready PORT PID LOG
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || die "exited before answering on port $1: $(tail -n 3 "$3")"
    if psql "$(url "$1" quiet q-secret)" -Atc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "no answer on port $1"
}

# start_sluice QUIET_KEYS [NOISY_KEYS]: a fresh sluice whose quiet tenant has
# QUIET_KEYS and noisy tenant NOISY_KEYS.
start_sluice() {
  stop_pid "$sluice_pid"
  port=$(free_port)
  cat >"$work/sluice.ini" <<EOF
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = ""
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 4
; Far above any wait here: a queue that stalls fails its clients (tenant_load
; prints the first error) instead of hanging the run for ever.
query_wait_timeout = 60s
slow_query_threshold = 0
log_level = warn
admin_users = admin
; PgBouncer does not use the test cluster's TLS towards it, nor does the direct client.
server_tls_sslmode = disable

[databases]
app = host=$SLUICE_TEST_PGHOST port=$SLUICE_TEST_PGPORT dbname=app user=app password=app-secret

[tenant.metered]
users = metered
query_rate = 100/s
query_burst = 10

[tenant.metered_min]
users = metered_min
query_rate = 2000/min
query_burst = 200

[tenant.metered_many]
users = metered_many
query_rate = 100/s
query_burst = 10
rate_limit_wait = 500ms

[tenant.quiet]
users = quiet
$1

[tenant.noisy]
users = noisy
${2:-}
EOF
  "$root/build/sluice" "$work/sluice.ini" 2>>"$work/sluice.log" &
  sluice_pid=$!
  wait_ready "$port" "$sluice_pid" "$work/sluice.log"
}

start_pgbouncer() {
  pgb_port=$(free_port)
  cat >"$work/pgbouncer.ini" <<EOF
[databases]
app = host=$SLUICE_TEST_PGHOST port=$SLUICE_TEST_PGPORT dbname=app user=app password=app-secret

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
; As for sluice; PgBouncer 1.18 takes whole seconds, no unit.
query_wait_timeout = 60
log_connections = 0
log_disconnections = 0
server_tls_sslmode = disable
EOF
  chmod 644 "$work/pgbouncer.ini"
  if [ "$(id -u)" = 0 ]; then
    "$pgbouncer_bin" -u postgres "$work/pgbouncer.ini" >>"$work/pgbouncer.log" 2>&1 &
  else
    "$pgbouncer_bin" "$work/pgbouncer.ini" >>"$work/pgbouncer.log" 2>&1 &
  fi
  pgbouncer_pid=$!
  wait_ready "$pgb_port" "$pgbouncer_pid" "$work/pgbouncer.log"
}

field() { # field NAME LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

if [ "$mode" = single ]; then
  start_sluice ""
  echo "tenant limiter accuracy: ${accuracy_s} s closed loops" >&2
  acc_s=$("$out/tenant_load" -c 4 -T "$accuracy_s" "$(url "$port" metered m-secret)")
  acc_m=$("$out/tenant_load" -c 4 -T "$accuracy_s" "$(url "$port" metered_min m-secret)")
  acc_many=$("$out/tenant_load" -c 40 -T "$((accuracy_s / 4))" "$(url "$port" metered_many m-secret)")
  accuracy() { # accuracy LINE RATE_PER_S BURST
    awk -v ok="$(field ok "$1")" -v s="$(field seconds "$1")" -v r="$2" -v b="$3" \
      'BEGIN { e = b + r * s; printf "%d %.1f %+.2f", ok, e, (ok - e) / e * 100 }'
  }
  read -r ok_s exp_s err_s <<<"$(accuracy "$acc_s" 100 10)"
  read -r ok_m exp_m err_m <<<"$(accuracy "$acc_m" 33.3333333 200)"
  read -r ok_many exp_many err_many <<<"$(accuracy "$acc_many" 100 10)"
  cat <<EOF
## Tenant limits ($(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))

| limiter run | seconds | accepted | expected (burst + rate x seconds) | error | refused | p50 / p99 ms |
|---|---|---|---|---|---|---|
| query_rate 100/s, burst 10, 4 clients | $(field seconds "$acc_s") | $ok_s | $exp_s | ${err_s}% | $(field refused "$acc_s") | $(field p50_ms "$acc_s") / $(field p99_ms "$acc_s") |
| query_rate 2000/min, burst 200, 4 clients | $(field seconds "$acc_m") | $ok_m | $exp_m | ${err_m}% | $(field refused "$acc_m") | $(field p50_ms "$acc_m") / $(field p99_ms "$acc_m") |
| query_rate 100/s, burst 10, rate_limit_wait 500ms, 40 clients | $(field seconds "$acc_many") | $ok_many | $exp_many | ${err_many}% | $(field refused "$acc_many") | $(field p50_ms "$acc_many") / $(field p99_ms "$acc_many") |

40 clients at 100/s: a fair share is one request per client every 0.4 s, within the 0.5 s
wait, so a limiter that serves waiters in order refuses none.

EOF
fi

direct="host=$SLUICE_TEST_PGHOST port=$SLUICE_TEST_PGPORT dbname=app user=app password=app-secret sslmode=disable"
declare -A noisy_sql=([cpu]="select 1" [sleep]="select pg_sleep(0.005)")

# quiet CONNINFO: the quiet tenant's 2 clients.
quiet() {
  "$out/tenant_load" -c 2 -T "$latency_s" "$1"
}
# with_noisy PORT KIND [CONNINFO]: the quiet tenant (through PORT, or at
# CONNINFO) while the noisy one runs KIND through PORT.
with_noisy() {
  local line noisy_pid
  "$out/tenant_load" -c "$noisy_clients" -T $((latency_s + 4)) -s "${noisy_sql[$2]}" \
    "$(url "$1" noisy n-secret)" >"$work/noisy.out" &
  noisy_pid=$!
  sleep 2 # let the noisy clients log in and saturate the pool before measuring
  line=$(quiet "${3:-$(url "$1" quiet q-secret)}")
  wait $noisy_pid
  echo "$line noisy_ok=$(field ok "$(cat "$work/noisy.out")")" \
    "noisy_seconds=$(field seconds "$(cat "$work/noisy.out")")"
}

# console SHOW_NAME: the console's answer through $port, fields separated by spaces.
console() {
  psql "host=127.0.0.1 port=$port dbname=sluice user=admin password=admin-secret" -AtF' ' \
    -c "SHOW $1"
}
# moves: "SENT CLOSED XACTS" of the sluice on $port: servers handed between its
# workers, servers closed for another worker (SHOW WORKERS), transactions (SHOW TOTALS).
moves() {
  console WORKERS | awk '{sent += $6; closed += $8} END {printf "%d %d ", sent, closed}'
  console TOTALS | awk '$1 == "total_xact_count" {print $2}'
}

# Each run appends "CASE LINE" to $work/runs; the cases interleave, round by round.
have_pgbouncer=0
[ -x "$pgbouncer_bin" ] && have_pgbouncer=1
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/runs"
: >"$work/moves"
for r in $(seq "$repeats"); do
  echo "isolation, round $r of $repeats: ${latency_s} s runs" >&2
  echo "direct_alone $(quiet "$direct")" >>"$work/runs"
  start_sluice ""
  echo "sluice_alone $(quiet "$(url "$port" quiet q-secret)")" >>"$work/runs"
  for kind in cpu sleep; do
    echo "sluice_rr_$kind $(with_noisy "$port" $kind)" >>"$work/runs"
  done
  start_sluice "weight = 10"
  for kind in cpu sleep; do
    echo "sluice_weight_$kind $(with_noisy "$port" $kind)" >>"$work/runs"
  done
  start_sluice "min_server_conn = 2"
  for kind in cpu sleep; do
    echo "sluice_min_$kind $(with_noisy "$port" $kind)" >>"$work/runs"
    echo "direct_$kind $(with_noisy "$port" $kind "$direct")" >>"$work/runs"
  done
  moves >>"$work/moves"
  # The same, with the noisy tenant held to a tenth of what it just did
  # unlimited: a query_rate it exceeds tenfold, its requests waiting for tokens
  # (rate_limit_wait long enough that none is refused).
  for kind in cpu sleep; do
    rate=$(awk -v c="sluice_min_$kind" '$1 == c { line = $0 } END {
      n = split(line, f, " ")
      for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
      r = int(v["noisy_ok"] / v["noisy_seconds"] / 10); print (r < 1 ? 1 : r) }' "$work/runs")
    start_sluice "min_server_conn = 2" "query_rate = $rate/s
rate_limit_wait = 60s"
    echo "sluice_rate_$kind $(with_noisy "$port" $kind) noisy_rate=$rate" >>"$work/runs"
    # The floor for that row: a client that skips the pooler, next to the same held neighbour.
    echo "direct_rate_$kind $(with_noisy "$port" $kind "$direct")" >>"$work/runs"
  done
  stop_pid "$sluice_pid"
  sluice_pid=
  if [ "$have_pgbouncer" = 1 ]; then
    start_pgbouncer
    echo "pgbouncer_alone $(quiet "$(url "$pgb_port" quiet q-secret)")" >>"$work/runs"
    for kind in cpu sleep; do
      echo "pgbouncer_$kind $(with_noisy "$pgb_port" $kind)" >>"$work/runs"
    done
    stop_pid "$pgbouncer_pid"
    pgbouncer_pid=
  fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# summary CASE: medians of p50, p99, TPS and the noisy TPS, and min and max of p99.
summary() {
  awk -v c="$1" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $1 == c {
      n++
      delete v
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      p50[n] = v["p50_ms"] + 0; p99[n] = v["p99_ms"] + 0; t[n] = v["ok"] / v["seconds"]
      nt[n] = ("noisy_ok" in v) ? v["noisy_ok"] / v["noisy_seconds"] : 0
      if (n == 1 || p99[n] < lo) lo = p99[n]
      if (n == 1 || p99[n] > hi) hi = p99[n]
    }
    END {
      if (n) printf "%.3f %.3f %.3f %.3f %.0f %.0f\n", median(p50, n), median(p99, n), lo, hi, median(t, n), median(nt, n)
    }
  ' "$work/runs"
}
row() { # row LABEL CASE ALONE_CASE
  local s a p50 p99 lo hi t nt a99
  s=$(summary "$2")
  a=$(summary "$3")
  [ -n "$s" ] || return 0
  read -r p50 p99 lo hi t nt <<<"$s"
  read -r _ a99 _ _ _ _ <<<"$a"
  printf '| %s | %s | %s | %s | %s..%s | %s | %s |\n' "$1" "$t" "$p50" "$p99" "$lo" "$hi" \
    "$(awk -v x="$p99" -v y="$a99" 'BEGIN { printf "%.2fx", x / y }')" \
    "$([ "$nt" = 0 ] && echo - || echo "$nt")"
}
rate_of() { # rate_of KIND: the median query_rate the noisy tenant was held to
  sed -n "s/^sluice_rate_$1 .*noisy_rate=//p" "$work/runs" | sort -n |
    awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : "-" }'
}
cat <<EOF
## Tenant isolation ($(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) cores, load average $load_before before and $load_after after; $repeats rounds of ${latency_s} s)

Quiet tenant: 2 clients of SELECT 1.  Noisy tenant: $noisy_clients clients (10x the pool of 4), each a
closed loop of SELECT 1 ("cpu") or of pg_sleep(0.005) ("sleep").  "At 10x its query_rate": the
noisy tenant limited to a tenth of its unlimited TPS in the same round (median limit:
cpu $(rate_of cpu)/s, sleep $(rate_of sleep)/s), its requests waiting for tokens.

| quiet tenant | TPS | p50 ms | p99 ms (median) | p99 min..max | p99 / alone | noisy TPS |
|---|---|---|---|---|---|---|
$(row "sluice, alone" sluice_alone sluice_alone)
$(row "PgBouncer, alone" pgbouncer_alone pgbouncer_alone)
$(row "direct Postgres, alone" direct_alone direct_alone)
$(for kind in cpu sleep; do
    row "sluice, noisy $kind, round-robin (no keys)" sluice_rr_$kind sluice_alone
    row "sluice, noisy $kind, quiet weight = 10" sluice_weight_$kind sluice_alone
    row "sluice, noisy $kind, quiet min_server_conn = 2" sluice_min_$kind sluice_alone
    row "sluice, noisy $kind at 10x its query_rate, quiet min_server_conn = 2" sluice_rate_$kind sluice_alone
    row "PgBouncer, noisy $kind (one pool, FIFO)" pgbouncer_$kind pgbouncer_alone
    row "direct Postgres, noisy $kind through sluice (min_server_conn = 2)" direct_$kind direct_alone
    row "direct Postgres, noisy $kind at 10x its query_rate through sluice" direct_rate_$kind direct_alone
  done)

Servers moved between sluice's workers with min_server_conn = 2 (SHOW WORKERS, every round):
$(awk '{s += $1; c += $2; x += $3} END {printf "%d handed over, %d closed for another worker, in %d transactions.", s, c, x}' "$work/moves")
EOF

{
  echo '{"runs": ['
  sed 's/.*/"&"/' "$work/runs" | paste -sd, -
  echo ']}'
} >"$out/tenants.json"
