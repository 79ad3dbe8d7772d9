# shellcheck shell=bash
# `bench/tenants.sh fleet`: limiter = redis, sourced by bench/tenants.sh once
# Postgres runs and tenant_load is built (it sets root, out, work, port,
# accuracy_s, cost_s and the SLUICE_TEST_PG* variables).  See the header of
# bench/tenants.sh for what it measures.

export SLUICE_REDIS_NAME=redis-bench
"$root/tests/harness/redis.sh" start >/dev/null
# shellcheck disable=SC1091
. "$root/.run/redis-bench.env"
redis_url=$SLUICE_TEST_REDIS_URL
redis_pid=$(cat "$root/.run/redis-bench/redis.pid")

cat >"$work/userlist.txt" <<'EOF'
"metered" "m-secret"
"metered_min" "m-secret"
"limited" "l-secret"
EOF

# fleet_ini FILE PORT LIMITER PREFIX
fleet_ini() {
  cat >"$1" <<EOF
[sluice]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir = ""
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 4
query_wait_timeout = 0
slow_query_threshold = 0
log_level = warn
limiter = $3
redis_url = $redis_url
redis_key_prefix = $4

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

[tenant.limited]
users = limited
query_rate = 20000/s
EOF
}

pids=()
fleet_stop() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
stop_fleet_all() {
  fleet_stop
  SLUICE_PG_NAME=pg-tenants "$root/tests/harness/pg.sh" stop >/dev/null 2>&1 || true
  "$root/tests/harness/redis.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_fleet_all EXIT

conninfo() { # conninfo PORT USER PASSWORD
  echo "host=127.0.0.1 port=$1 dbname=app user=$2 password=$3"
}

# start_node N LIMITER PREFIX: sluice N on port+N, waits until it answers
start_node() {
  local p=$((port + $1))
  fleet_ini "$work/s$1.ini" "$p" "$2" "$3"
  "$root/build/sluice" "$work/s$1.ini" 2>"$work/s$1.log" &
  pids+=($!)
  for _ in $(seq 100); do
    if psql "$(conninfo "$p" limited l-secret)" -Atc 'select 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  cat "$work/s$1.log" >&2
  echo "tenants.sh: sluice $1 did not start" >&2
  exit 1
}

get() { # get NAME LINE
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# CPU of a process (user + system, all threads) in microseconds.
cpu_us() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"
}

# ---- 1. accuracy over the fleet ----
prefix="bench-$$-$(date +%s):"
for n in 1 2 3; do
  start_node "$n" redis "$prefix"
done
# Every node beats in Redis once connected: start when all three are there.
for _ in $(seq 100); do
  live=$(redis-cli -p "$SLUICE_TEST_REDIS_PORT" zcard "${prefix}instances")
  [ "$live" = 3 ] && break
  sleep 0.1
done
echo "fleet accuracy: 3 instances, ${accuracy_s} s" >&2
for n in 1 2 3; do
  "$out/tenant_load" -c 2 -T "$accuracy_s" "$(conninfo $((port + n)) metered m-secret)" \
    >"$work/sec$n.out" &
  "$out/tenant_load" -c 2 -T "$accuracy_s" "$(conninfo $((port + n)) metered_min m-secret)" \
    >"$work/min$n.out" &
done
wait_loads() {
  local pid
  for pid in $(jobs -p); do
    case " ${pids[*]} " in *" $pid "*) continue ;; esac
    wait "$pid"
  done
}
wait_loads
fleet_stop
# Redis trouble during the run (timeouts on a loaded machine) shows in the nodes' logs.
grep -h "redis:" "$work"/s[123].log >&2 || true

# sum_runs GLOB RATE BURST -> "accepted seconds expected error% refused"
sum_runs() {
  cat $1 | awk -v r="$2" -v b="$3" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      ok += v["ok"]; refused += v["refused"]; if (v["seconds"] > s) s = v["seconds"] }
    END { e = b + r * s; printf "%d %.3f %.1f %+.2f %d", ok, s, e, (ok - e) / e * 100, refused }'
}
read -r f_ok f_s f_exp f_err f_ref <<<"$(sum_runs "$work/sec*.out" 100 10)"
read -r m_ok m_s m_exp m_err m_ref <<<"$(sum_runs "$work/min*.out" 33.3333333 200)"

# ---- 2. CPU per limited transaction, local vs redis ----
declare -A cpu_tx redis_cpu_tx
for round in 1 2; do
  for lim in local redis; do
    start_node 0 "$lim" "bench-$$-cost-$round:"
    r0=$(cpu_us "$redis_pid")
    c0=$(cpu_us "${pids[0]}")
    line=$("$out/tenant_load" -c 4 -T "$cost_s" "$(conninfo "$port" limited l-secret)")
    c1=$(cpu_us "${pids[0]}")
    r1=$(cpu_us "$redis_pid")
    fleet_stop
    ok=$(get ok "$line")
    [ "$(get refused "$line")" = 0 ] || echo "tenants.sh: $lim: some were refused: $line" >&2
    cpu_tx[$lim]="${cpu_tx[$lim]:-} $(awk -v c=$((c1 - c0)) -v n="$ok" 'BEGIN { printf "%.2f", c / n }')"
    redis_cpu_tx[$lim]="${redis_cpu_tx[$lim]:-} $(awk -v c=$((r1 - r0)) -v n="$ok" 'BEGIN { printf "%.3f", c / n }')"
    echo "cost $lim round $round: $line cpu_us=$((c1 - c0)) redis_cpu_us=$((r1 - r0))" >&2
  done
done
mean() { echo "$1" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }'; }
local_us=$(mean "${cpu_tx[local]}")
redis_us=$(mean "${cpu_tx[redis]}")
ratio=$(awk -v a="$redis_us" -v b="$local_us" 'BEGIN { printf "%.2f", a / b }')

cat <<EOF
## Tenant limits shared by a fleet ($(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1))

| fleet run (3 instances, 2 clients each) | seconds | accepted | expected (burst + rate x seconds) | error | refused |
|---|---|---|---|---|---|
| query_rate 100/s, burst 10 | $f_s | $f_ok | $f_exp | ${f_err}% | $f_ref |
| query_rate 2000/min, burst 200 | $m_s | $m_ok | $m_exp | ${m_err}% | $m_ref |

| limited transaction (20000/s, never refused; 4 clients, ${cost_s} s, 2 runs each) | sluice CPU us/tx (runs) | mean | Redis CPU us/tx |
|---|---|---|---|
| limiter = local | ${cpu_tx[local]# } | $local_us | - |
| limiter = redis | ${cpu_tx[redis]# } | $redis_us | ${redis_cpu_tx[redis]# } |
| ratio redis / local | | $ratio | |
EOF

cat >"$out/tenants-fleet.json" <<EOF
{"fleet_per_second": "$f_ok $f_s $f_exp $f_err", "fleet_per_minute": "$m_ok $m_s $m_exp $m_err",
 "cpu_us_per_tx_local": "${cpu_tx[local]# }", "cpu_us_per_tx_redis": "${cpu_tx[redis]# }",
 "ratio": "$ratio"}
EOF
