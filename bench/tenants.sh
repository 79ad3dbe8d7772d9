#!/bin/bash
# Tenant limits benchmark (docs/tenants.md): how exact the rate limiter is,
# and what a noisy tenant does to a quiet one's latency.
#
#   bench/tenants.sh [--quick]
#   bench/tenants.sh fleet [--quick]
#
# Starts its own Postgres (tests/harness/pg.sh, instance "pg-tenants") and a
# sluice from ./build in transaction mode, with one forced server login that
# two tenants share (pool_size 4), then runs bench/tenant_load:
#
#   1. accuracy: tenant "metered" (query_rate 100/s, burst 10) in a closed
#      loop on 4 connections for 60 s; accepted vs 10 + 100 x elapsed, and a
#      second bucket at 2000/min (burst 200) on 4 connections for 60 s;
#   2. the quiet tenant (2 connections, SELECT 1) alone for 20 s, then again
#      while the noisy tenant runs 50 connections of SELECT 1 flat out.
#
# Prints a markdown table and writes bench/out/tenants.json.  About 3 minutes
# (--quick: 15 s and 5 s runs, for a smoke test).
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
if [ "${1:-}" = "fleet" ]; then
  mode=fleet
  shift
fi
accuracy_s=60
latency_s=20
cost_s=20
if [ "${1:-}" = "--quick" ]; then
  accuracy_s=15
  latency_s=5
  cost_s=5
fi

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

work=$(mktemp -d /tmp/sluice-tenants.XXXXXX)
port=$((20000 + RANDOM % 20000))
if [ "$mode" = fleet ]; then
  # shellcheck source=bench/tenants_fleet.sh
  . "$root/bench/tenants_fleet.sh"
  exit 0
fi
cat >"$work/userlist.txt" <<'EOF'
"metered" "m-secret"
"metered_min" "m-secret"
"quiet" "q-secret"
"noisy" "n-secret"
EOF
cat >"$work/sluice.ini" <<EOF
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = ""
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 4
query_wait_timeout = 0
slow_query_threshold = 0
log_level = warn

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

[tenant.quiet]
users = quiet

[tenant.noisy]
users = noisy
EOF
"$root/build/sluice" "$work/sluice.ini" 2>"$work/sluice.log" &
sluice_pid=$!
stop_all() {
  kill $sluice_pid 2>/dev/null || true
  wait $sluice_pid 2>/dev/null || true
  SLUICE_PG_NAME=pg-tenants "$root/tests/harness/pg.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_all EXIT
url() {
  echo "host=127.0.0.1 port=$port dbname=app user=$1 password=$2"
}
for _ in $(seq 100); do
  if psql "$(url quiet q-secret)" -Atc 'select 1' >/dev/null 2>&1; then
    break
  fi
  sleep 0.1
done

field() { # field NAME LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

echo "tenant limiter accuracy: ${accuracy_s} s closed loops" >&2
acc_s=$("$out/tenant_load" -c 4 -T "$accuracy_s" "$(url metered m-secret)")
acc_m=$("$out/tenant_load" -c 4 -T "$accuracy_s" "$(url metered_min m-secret)")
echo "quiet tenant alone: ${latency_s} s" >&2
alone=$("$out/tenant_load" -c 2 -T "$latency_s" "$(url quiet q-secret)")
echo "quiet tenant next to 50 noisy clients: ${latency_s} s" >&2
"$out/tenant_load" -c 50 -T $((latency_s + 4)) "$(url noisy n-secret)" >"$work/noisy.out" &
noisy_pid=$!
sleep 2 # let the noisy clients log in and saturate the pool before measuring
shared=$("$out/tenant_load" -c 2 -T "$latency_s" "$(url quiet q-secret)")
wait $noisy_pid
noisy=$(cat "$work/noisy.out")

accuracy() { # accuracy LINE RATE_PER_S BURST
  awk -v ok="$(field ok "$1")" -v s="$(field seconds "$1")" -v r="$2" -v b="$3" \
    'BEGIN { e = b + r * s; printf "%d %.1f %+.2f", ok, e, (ok - e) / e * 100 }'
}
read -r ok_s exp_s err_s <<<"$(accuracy "$acc_s" 100 10)"
read -r ok_m exp_m err_m <<<"$(accuracy "$acc_m" 33.3333333 200)"

cat <<EOF
## Tenant limits ($(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))

| limiter run | seconds | accepted | expected (burst + rate x seconds) | error | refused |
|---|---|---|---|---|---|
| query_rate 100/s, burst 10, 4 clients | $(field seconds "$acc_s") | $ok_s | $exp_s | ${err_s}% | $(field refused "$acc_s") |
| query_rate 2000/min, burst 200, 4 clients | $(field seconds "$acc_m") | $ok_m | $exp_m | ${err_m}% | $(field refused "$acc_m") |

| quiet tenant (2 clients, SELECT 1) | TPS | p50 ms | p99 ms |
|---|---|---|---|
| alone | $(awk -v n="$(field ok "$alone")" -v s="$(field seconds "$alone")" 'BEGIN{printf "%.0f", n/s}') | $(field p50_ms "$alone") | $(field p99_ms "$alone") |
| next to 50 noisy clients (pool of 4) | $(awk -v n="$(field ok "$shared")" -v s="$(field seconds "$shared")" 'BEGIN{printf "%.0f", n/s}') | $(field p50_ms "$shared") | $(field p99_ms "$shared") |
| (the noisy tenant meanwhile) | $(awk -v n="$(field ok "$noisy")" -v s="$(field seconds "$noisy")" 'BEGIN{printf "%.0f", n/s}') | $(field p50_ms "$noisy") | $(field p99_ms "$noisy") |
EOF

cat >"$out/tenants.json" <<EOF
{"accuracy_per_second": "$acc_s", "accuracy_per_minute": "$acc_m",
 "quiet_alone": "$alone", "quiet_with_noisy": "$shared", "noisy": "$noisy"}
EOF
