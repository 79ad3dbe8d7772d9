# shellcheck shell=bash disable=SC2154 # counter, name and port_offset are set by the caller
# Sourced by bench/instructions.sh and bench/syscalls.sh, which count what
# PgBouncer and sluice do per transaction under a tool (callgrind, strace).
# The caller sets counter (the tool's command), name (its own name, which
# also names its Postgres instance, pg-NAME, stopped at exit) and port_offset
# (the poolers listen that far above Postgres), and passes its arguments.  Afterwards: sluices (the binaries to measure, from --sluice,
# default build/sluice), root (the checkout, also the working directory),
# pgbin, owner (the harness's unprivileged user), a database bench with
# pgbench's tables and the password in PGPASSWORD, and work, a fresh
# directory that owner can read, holding pgbouncer.ini and sluice.ini for
# the same database on port.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root" || exit 1

sluices=()
while [ $# -gt 0 ]; do
  case $1 in
  --sluice)
    sluices+=("$(realpath "$2")")
    shift 2
    ;;
  *)
    echo "usage: bench/$name.sh [--sluice PATH]..." >&2
    exit 2
    ;;
  esac
done
[ ${#sluices[@]} -gt 0 ] || sluices=("$root/build/sluice")
for s in "${sluices[@]}"; do
  [ -x "$s" ] || { echo "$name.sh: no sluice binary at $s" >&2; exit 1; }
done
for tool in "$counter" pgbouncer; do
  command -v "$tool" >/dev/null || { echo "$name.sh: $tool missing" >&2; exit 1; }
done

export SLUICE_PG_NAME=pg-$name
trap 'tests/harness/pg.sh stop >/dev/null 2>&1 || true' EXIT
tests/harness/pg.sh start >/dev/null
# shellcheck source=/dev/null
. ".run/$SLUICE_PG_NAME.env"
pgbin=$SLUICE_TEST_PGBIN
owner=$SLUICE_TEST_PGSUPER
"$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$SLUICE_TEST_PGSOCKET" -p "$SLUICE_TEST_PGPORT" \
  -U "$owner" -d postgres <<'SQL'
SET client_min_messages = warning;
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE bench LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench') \gexec
ALTER ROLE bench PASSWORD 'bench-secret';
SELECT 'CREATE DATABASE bench OWNER bench'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'bench') \gexec
SQL
export PGPASSWORD=bench-secret PGSSLMODE=disable
"$pgbin/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$SLUICE_TEST_PGPORT" -U bench bench >/dev/null 2>&1

work=$(mktemp -d "/tmp/sluice-$name.XXXXXX")
chmod 755 "$work"
port=$((SLUICE_TEST_PGPORT + port_offset))
printf '"bench" "bench-secret"\n' >"$work/userlist.txt"
# Both poolers on `port`, one at a time, in transaction mode with a pool of 20.
# The test cluster offers TLS; PgBouncer does not use it towards servers by
# default, so sluice is told not to either.  Both reach Postgres through its
# Unix socket, where it trusts them: a SCRAM login to the server costs one
# PBKDF2 (some 25 million instructions in PgBouncer, which derives it anew
# for every server connection), and the number of server connections a pooler
# opens varies with timing between the two runs whose difference is taken:
# over TCP one extra connection in the longer run added 5,000 instructions to
# PgBouncer's figure per transaction, all of it at 4,800 transactions.
cat >"$work/pgbouncer.ini" <<CONF
[databases]
bench = host=$SLUICE_TEST_PGSOCKET port=$SLUICE_TEST_PGPORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 300
log_connections = 0
log_disconnections = 0
CONF
cat >"$work/sluice.ini" <<CONF
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_file = $work/userlist.txt
auth_type = scram-sha-256
pool_mode = transaction
default_pool_size = 20
max_client_conn = 300
log_level = warn
workers = 1
server_tls_sslmode = disable
connect_rate_per_ip = 0
[databases]
bench = host=$SLUICE_TEST_PGSOCKET port=$SLUICE_TEST_PGPORT dbname=bench
CONF
chown -R "$owner:$owner" "$work"
